"""Config at the bottom: one name per concept in both config files, old names still load (saved
config.json files and --config overrides) with one deprecation line, and validation by kind."""

import copy
import json
import os
import subprocess
import sys

import pytest

from rrd_jax.config import loading, schema
from rrd_jax.run import lifecycle
from rrd_jax.util.errors import UserError
from tests.helpers import ROOT, tiny_config
from tests.rl_helpers import online_config

SHARED = ("seed", "kind", "train.log_every_steps", "eval.every_steps", "eval.episodes",
          "optim.learning_rate", "optim.grad_clip_norm", "checkpoint.dir",
          "checkpoint.every_steps", "checkpoint.keep", "checkpoint.save_final",
          "checkpoint.overwrite", "rrd.sample_size", "rrd.episodes_per_batch", "rrd.loss_form")


def _get(config, key):
  for part in key.split("."):
    config = config[part]
  return config


@pytest.mark.parametrize("key", SHARED)
def test_both_config_files_name_the_same_concepts_alike(key):
  offline = loading.load_config()
  online = online_config(ROOT, "hopper")
  _get(offline, key)  # raises if either file lacks the field
  _get(online, key)
  assert (offline.kind, online.kind) == ("reward_model", "agent")


def test_redundant_knobs_are_gone():
  offline, online = loading.load_config(), online_config(ROOT, "hopper")
  assert "restore" not in offline.checkpoint
  assert "bias_correction" not in online.rrd and "learning_rate" not in online.rrd
  for old in ("log_every", "eval_every", "eval_batches", "eval_episodes"):
    assert old not in offline.train


def _old_offline_record(config):
  """config as a config.json written before the renames (old field names, no kind)."""
  tree = json.loads(config.to_json_best_effort())
  del tree["kind"]
  tree["train"]["log_every"] = tree["train"].pop("log_every_steps")
  tree["train"]["eval_every"] = tree["eval"]["every_steps"]
  tree["train"]["eval_batches"] = tree["eval"]["batches"]
  tree["train"]["eval_episodes"] = tree["eval"]["episodes"]
  del tree["eval"]
  tree["checkpoint"]["restore"] = "best"
  return tree


def test_upgrade_maps_an_old_reward_model_config(capsys):
  config = tiny_config("/data", **{"train.log_every_steps": 7, "eval.every_steps": 9})
  old = _old_offline_record(config)
  upgraded = schema.upgrade(copy.deepcopy(old), "old/config.json")
  assert upgraded == json.loads(config.to_json_best_effort())
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "old/config.json" in err[0] and "train.log_every -> " in err[0]
  assert "checkpoint.restore dropped" in err[0]
  schema.upgrade(upgraded)  # today's names: nothing to say
  assert capsys.readouterr().err == ""
  # a config saved before model.augment existed trained without augmentation
  del old["model"]["augment"], old["model"]["augment_pad"]
  assert schema.upgrade(old)["model"]["augment"] == "none"


@pytest.mark.parametrize("kind", ["reward_model", "agent"])
def test_upgrade_gives_a_config_saved_before_any_added_field_all_of_them(kind):
  """Inner modules read every field directly, so an old config.json must come out of `upgrade`
  with each field added since, at the value that reproduces the old run."""
  config = (loading.load_config(variant="mixture") if kind == "reward_model"
            else online_config(ROOT, "hopper"))
  tree = json.loads(config.to_json_best_effort())
  for key in schema.ADDED[kind]:
    parent, leaf = tree, key.split(".")
    for part in leaf[:-1]:
      parent = parent[part]
    del parent[leaf[-1]]
  for component in tree.get("data", {}).get("mixture", {}).values():
    del component["success"]
  upgraded = schema.upgrade(tree)
  for key, value in schema.ADDED[kind].items():
    assert _get(upgraded, key) == value, key
  assert all(c["success"] == "reward" for c in upgraded.get("data", {}).get("mixture", {}).values())


def test_old_override_names_are_fields_of_no_kind():
  """--config.OLD=... is renamed before the config file is loaded (its kind unknown): safe only
  while no old name of either kind is a field of either shipped config."""
  configs = (loading.load_config(), online_config(ROOT, "hopper"))
  for table in schema.RENAMED.values():
    for old in table:
      for config in configs:
        with pytest.raises(KeyError):
          _get(config, old)
  assert schema.upgrade_key("train.eval_every") == "eval.every_steps"
  assert schema.upgrade_key("rrd.learning_rate") == "optim.learning_rate"
  assert schema.upgrade_key("rrd.sample_size") == "rrd.sample_size"


def test_upgrade_maps_an_old_agent_config(capsys):
  config = online_config(ROOT, "hopper", **{"optim.learning_rate": 1e-3})
  tree = json.loads(config.to_json_best_effort())
  del tree["kind"]
  tree["rrd"]["learning_rate"] = tree.pop("optim")["learning_rate"]
  tree["rrd"]["bias_correction"] = True
  upgraded = schema.upgrade(tree)
  assert upgraded["kind"] == "agent"
  assert upgraded["optim"]["learning_rate"] == 1e-3 and "learning_rate" not in upgraded["rrd"]
  assert upgraded["reward"]["kind"] == "rrd_lrd"  # what bias correction meant for rrd
  assert "bias_correction" not in upgraded["rrd"]
  assert "rrd.learning_rate -> optim.learning_rate" in capsys.readouterr().err


def test_a_run_saved_with_old_names_resumes(tmp_path, capsys):
  """The workdir check compares today's config with the upgraded config.json: no refusal."""
  config = tiny_config("/data")
  workdir = str(tmp_path)
  with open(os.path.join(workdir, "config.json"), "w", encoding="utf-8") as f:
    json.dump({"config": _old_offline_record(config), "checkpoint_dir": "x"}, f)
  resumed_workdir, resume, lock = lifecycle.prepare_workdir(workdir, config, log=lambda *_: None)
  os.close(lock)
  assert (resumed_workdir, resume) == (workdir, True)
  assert "old config names" in capsys.readouterr().err
  with open(os.path.join(workdir, "metrics.jsonl"), "w", encoding="utf-8") as f:
    f.write('{"step": 2, "train/loss": 1.0}\n')  # (a run that saved nothing would give way)
  changed = tiny_config("/data", **{"eval.every_steps": 4})
  with pytest.raises(UserError, match="eval.every_steps: 3 -> 4"):
    lifecycle.prepare_workdir(workdir, changed, log=lambda *_: None)


def test_old_names_in_overrides_are_read_as_new():
  config = loading.load_config(overrides={"train.eval_every": 11, "train.log_every": 5})
  assert config.eval.every_steps == 11 and config.train.log_every_steps == 5
  argv = loading.resolve_config_argv(["rrd-train", "--config", "mujoco_rrd_sac:pendulum",
                                            "--config.rrd.learning_rate=0.01",
                                            "--config.train.log_every_steps=3"])
  assert argv[2] == os.path.join(loading.CONFIG_DIR, "mujoco_rrd_sac.py") + ":pendulum"
  assert argv[3:] == ["--config.optim.learning_rate=0.01", "--config.train.log_every_steps=3"]


@pytest.mark.slow
def test_cli_override_with_an_old_name_prints_one_note(tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "rrd_jax.cli.train", "--config", "libero_rrd",
       "--config.train.eval_every=0", "--workdir", str(tmp_path / "run")],
      cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
  notes = [l for l in result.stderr.splitlines() if l.startswith("note:")]
  assert len(notes) == 1 and "train.eval_every -> eval.every_steps" in notes[0]
  # read as the new field, which the validator then names
  assert result.returncode == 2 and "error: eval.every_steps must be >= 1, got 0" in result.stderr


def test_validate_dispatches_on_kind():
  schema.validate(loading.load_config())
  schema.validate(online_config(ROOT, "pendulum"))
  bad = online_config(ROOT, "pendulum", **{"optim.learning_rate": 0.0})
  with pytest.raises(UserError, match="optim.learning_rate must be > 0"):
    schema.validate(bad)
  with pytest.raises(UserError, match="kind must be one of reward_model, agent"):
    schema.run_kind({"kind": "other"})
  with pytest.raises(UserError, match="data.embedded_task must be one of"):
    schema.validate(loading.load_config(overrides={"data.embedded_task": "bogus"}))
  with pytest.raises(UserError, match="data.embedded_block_in_state applies to "
                                      "data.embedded_task='touch' only, got 'instructed'"):
    schema.validate(loading.load_config(variant="mlp", overrides={
        "data.embedded_task": "instructed"}))
  # a dataset_dir means nothing is generated: the embedded sizes are not checked
  schema.validate(loading.load_config(overrides={"data.dataset_dir": "/d",
                                                      "data.embedded_episodes": 0}))


@pytest.mark.parametrize("override,message", [
    ({"seed": -1}, "seed must be an integer >= 0, got -1"),
    ({"eval.batches": 0}, "eval.batches must be >= 1, got 0"),
    ({"data.num_parallel_calls": 0}, "data.num_parallel_calls must be -1 (automatic) or >= 1"),
    ({"model.hidden_sizes": ("abc",)}, "model.hidden_sizes must be positive layer sizes"),
    ({"model.hidden_sizes": (32, 0)}, "model.hidden_sizes must be positive layer sizes"),
    ({"optim.grad_clip_norm": -1.0}, "optim.grad_clip_norm must be >= 0"),
    ({"eval.episodes": -1}, "eval.episodes must be >= 0"),
    ({"profile.server_port": 99999}, "profile.server_port must be a port in 1..65535"),
    ({"model.augment": "flip"}, "model.augment must be one of none, shift"),
    ({"optim.weight_decay": -0.1}, "optim.weight_decay must be >= 0 (0 = off), got -0.1"),
    ({"model.augment_pad": 17}, "model.augment_pad must be an integer in [0, data.image_size / 4 "
                                "= 16], got 17"),
    ({"model.low_dim_inputs": ("state", "speed")},
     "model.low_dim_inputs must be distinct names of ('state', 'action', 'delta'), got ('state', "
     "'speed')"),
    ({"model.low_dim_inputs": ("state", "state")}, "model.low_dim_inputs must be distinct names"),
    ({"model.kind": "mlp", "model.low_dim_inputs": ()},
     "model.low_dim_inputs must be distinct names of ('state', 'action', 'delta') (at least one "
     "for the mlp model), got ()"),
    ({"model.state_dims": (0, -1)}, "model.state_dims must be distinct state dimensions >= 0 such "
                                    "as (0, 1, 8, 9), or () for all, got (0, -1)"),
    ({"model.state_dims": (2, 2)}, "model.state_dims must be distinct state dimensions"),
])
def test_reward_model_values_are_checked_up_front(override, message):
  with pytest.raises(UserError) as e:
    schema.validate(loading.load_config(overrides=override))
  assert message in str(e.value)


@pytest.mark.parametrize("override,message", [
    ({"seed": -2}, "seed must be an integer >= 0"),
    ({"rrd.hidden_sizes": (64, -1)}, "rrd.hidden_sizes must be positive layer sizes"),
    ({"sac.hidden_sizes": ()}, "sac.hidden_sizes must be positive layer sizes"),
    ({"optim.grad_clip_norm": -0.5}, "optim.grad_clip_norm must be >= 0"),
    ({"rrd.sample_size": 0}, "rrd.sample_size must be >= 1"),
    ({"env.backend": "brax"}, "env.backend must be one of gymnasium, mjx"),
    ({"env.backend": "mjx"}, "env.backend mjx runs the MuJoCo tasks"),  # pendulum: not on MJX
])
def test_agent_values_are_checked_up_front(override, message):
  with pytest.raises(UserError) as e:
    schema.validate(online_config(ROOT, "pendulum", **override))
  assert message in str(e.value)


def test_a_batch_larger_than_memory_is_refused_before_any_work(tmp_path):
  from rrd_jax.cli import train  # pylint: disable=import-outside-toplevel
  config = loading.load_config(overrides={"rrd.sample_size": 10_000_000})
  with pytest.raises(UserError, match=r"needs about [0-9.]+ GiB of activations per device"):
    train.train_and_evaluate(config, str(tmp_path / "w"), log=lambda *_: None)
  assert not os.path.exists(tmp_path / "w")  # nothing created


def test_step_features_must_have_the_right_shape(tiny_dataset_dir):
  from rrd_jax.data import rlds  # pylint: disable=import-outside-toplevel
  builder = rlds.open_builder(tiny_dataset_dir)
  rlds.check_step_features(builder, rlds.FeatureKeys())
  with pytest.raises(UserError, match=r"data.reward_key: feature 'steps/action' .* one number"):
    rlds.check_step_features(builder, rlds.FeatureKeys(reward="action"))
  with pytest.raises(UserError, match=r"data.action_key: feature 'steps/language_instruction'"):
    rlds.check_step_features(builder, rlds.FeatureKeys(action="language_instruction"))
