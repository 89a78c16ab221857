"""Prints BENCHMARKS.md's result tables (markdown), made from the summaries in benchmarks/results/.

python -m benchmarks.report [--only NAME[,NAME]] [--results DIR] [--check [FILE]]

One table per benchmark that has a summary file, each headed by where its figures come from
(file, commit, machine, command). It prints; it does not rewrite BENCHMARKS.md. With --check it
also compares: the exit status is 1, and the missing rows go to stderr, when FILE (default
BENCHMARKS.md) lacks a row of these tables (whitespace aside). main(argv) returns that status.

A summary file is one benchmark run (the JSON its command wrote, plus a "provenance" object:
commit, command, machine) or several runs merged under "runs": {key: run}. JSON only: no jax or
tensorflow import, so it runs anywhere.
"""

import argparse
import json
import math
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results")
MINUS = "\u2212"


# --- numbers ---------------------------------------------------------------------------------

def fixed(x, decimals):
  """x with `decimals` decimals, thousands separated, a typographic minus; None is a dash."""
  if x is None:
    return "–"
  return f"{x:,.{decimals}f}".replace("-", MINUS)


def decimals_for(x):
  """Decimals that show x to 3 significant digits (none for |x| >= 100)."""
  return 0 if not x else max(0, 2 - math.floor(math.log10(abs(x))))


def sig(x):
  return fixed(x, decimals_for(x)) if x is not None else fixed(None, 0)


def pm(mean, std):
  """mean ± std, both with the decimals of the larger (at most 3)."""
  places = min(3, decimals_for(max(abs(mean), std)))
  return f"{fixed(mean, places)} ± {fixed(std, places)}"


def per_seed(values):
  return " / ".join(sig(v) for v in values)


def pearson(x):
  return fixed(x, 3)


def steps(n):
  return f"{n / 1000:g}k"


# --- files -----------------------------------------------------------------------------------

def runs(doc):
  """(key, run) pairs: the merged runs of a summary file, or ("", the file) for a single run."""
  return list(doc["runs"].items()) if "runs" in doc else [("", doc)]


def source_lines(name, doc):
  """Where a table's figures come from: file, then commit, machine and command per run."""
  lines = [f"Source: `benchmarks/results/{name}`"]
  for key, run in runs(doc):
    prov = run.get("provenance", {})
    label = f"`{key}`: " if key else ""
    more = "".join(f" ({field}: " + ", ".join(f"{k} `{v}`" for k, v in commits.items()) + ")"
                   for field, commits in prov.items() if field.endswith("_commits"))
    lines.append(f"- {label}commit `{prov.get('commit', 'not recorded')}`{more}, "
                 f"{prov.get('machine', 'machine not recorded')}; "
                 f"`{prov.get('command', 'command not recorded')}`")
  return lines


def markdown(header, rows):
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def pick(figures, keys):
  """The first of `keys` that `figures` holds (benchmarks renamed some), else None."""
  return next((figures[k] for k in keys if k in figures), None)


# --- tables ----------------------------------------------------------------------------------

CURVE_HEADER = ["config", "commit", "at 1,000", "at 5,000", "at the end (update)",
                "best (update)"]


def curve_row(name, commit, curve):
  """Held-out within-episode Pearson along a training curve: at 1,000, 5,000, the end, best."""
  at = {point["step"]: point["within_pearson"] for point in curve}
  best, end = max(at, key=at.get), max(at)
  return [name, f"`{commit}`", pearson(at.get(1000)), pearson(at.get(5000)),
          f"{pearson(at[end])} ({end:,})", f"{pearson(at[best])} ({best:,})"]


def generalisation(doc):
  rows = []
  for _, run in runs(doc):
    prov, result = run.get("provenance", {}), run["generalisation"]
    commits = prov.get("config_commits", {})
    for name, config in result["configs"].items():
      rows.append(curve_row(f"`{name}`", commits.get(name, prov.get("commit", "?")),
                            config["curve"]))
  return CURVE_HEADER, rows


def mlp_ceiling(doc):
  result = doc["mlp_ceiling"]
  commit = doc.get("provenance", {}).get("commit", "?")
  name = "state MLP on block-in-state data, supervised on the per-step rewards"
  return CURVE_HEADER, [curve_row(name, commit, result["curve"])]


def accelerator(doc):
  """Per-shape figures in one column per shape; the device cache and seed command below them."""
  summary = doc["accelerator"]["summary"]
  shapes = sorted({k.split(".")[1] for k in summary if k.startswith(("step.", "stream."))})
  pair = lambda fmt, part, a, b: [f"{fmt(summary.get(f'{part}.{shape}.{a}'))} / "
                                  f"{fmt(summary.get(f'{part}.{shape}.{b}'))}" for shape in shapes]
  two = lambda x: fixed(x, 2)
  rows = [
      ["JAX float32 / bfloat16 steps/s",
       *pair(sig, "step", "steps_per_s.jax_float32", "steps_per_s.jax_bfloat16")],
      ["PyTorch eager / compiled steps/s",
       *pair(sig, "step", "steps_per_s.torch_eager", "steps_per_s.torch_compile")],
      ["JAX speedup vs eager / vs compile (float32)",
       *pair(two, "step", "speedup_vs_eager.float32", "speedup_vs_compile.float32")],
      ["stream: delivered / consumed frames/s",
       *pair(sig, "stream", "delivered_frames_per_s", "consumed_frames_per_s")],
      ["stream: data wait", *[two(summary.get(f"stream.{shape}.training_data_wait_fraction"))
                              for shape in shapes]],
  ]
  whole = [["device cache / ceiling steps/s (fraction)",
            f"{sig(summary.get('device_cache.cache_steps_per_s'))} / "
            f"{sig(summary.get('device_cache.ceiling_steps_per_s'))} "
            f"({two(summary.get('device_cache.fraction_of_ceiling'))})"],
           ["seed command wall s, streaming / device-cached",
            f"{sig(summary.get('seed_command.streaming.wall_s'))} / "
            f"{sig(summary.get('seed_command.device_cached.wall_s'))}"]]
  rows += [row + [""] * (len(shapes) - 1) for row in whole]
  return ["figure", *[f"`{shape}`" for shape in shapes]], rows


DEVICE_CACHE = (
    ("cache_steps_per_s", "steps/s, device cache"),
    ("ceiling_steps_per_s", "steps/s, ceiling (the same scanned update on one fixed device batch)"),
    ("fraction_of_ceiling", "fraction of the ceiling"),
    ("stream_steps_per_s", "steps/s, tf.data stream (decodes only the sampled frames)"),
    ("cache_speedup_vs_stream", "device cache / stream"),
    ("sample_gather_ms_per_step", "ms per step of the in-jit data path alone"),
)


def device_cache(doc):
  return ["figure", "value"], [[label, sig(doc.get(key))] for key, label in DEVICE_CACHE]


REWARD_STEP_SHAPES = (("seed_1x32_256px", "seed shape: 1 episode × 32 steps, 256²"),
                      ("default_8x32_64px", "default: 8 × 32, 64²"),
                      ("default_8x32_128px", "default: 8 × 32, 128²"))


def reward_step(doc):
  """Per shape: the three medians (s/step) and JAX's speed relative to each PyTorch form."""
  shapes = doc["reward_step"]["shapes"]
  rows = [[label, sig(s["jax_step_s_median"]), sig(s["torch_step_s_median"]),
           sig(s["torch_compile_step_s_median"]), f"**{fixed(s['speedup'], 2)}**",
           f"**{fixed(s['speedup_vs_compile'], 2)}**",
           sig(s["equivalence"]["max_grad_rel_error"])]
          for name, label in REWARD_STEP_SHAPES if name in shapes for s in [shapes[name]]]
  return ["batch", "JAX s/step", "PyTorch eager s/step", "`torch.compile` s/step",
          "JAX / eager speed", "JAX / compile speed", "max gradient rel. error"], rows


def load(doc):
  result = doc["load"]
  theirs = result["theirs_ttfs_s"]
  rows = [
      ["time to first step, s: second run (compilation cache filled)", sig(result["ours_ttfs_s"]),
       sig(theirs), sig(result["ttfs_ratio"])],
      ["time to first step, s: first run (cold cache)", sig(result["ours_first_run_ttfs_s"]),
       sig(theirs), sig(result["first_run_ttfs_ratio"])],
      ["peak RSS, GB", sig(result["ours_peak_rss_gb"]), sig(result["theirs_peak_rss_gb"]),
       sig(result["rss_ratio"])],
      ["RSS projected for LIBERO-10 at 256², GB", "–",
       sig(result["theirs_projected_rss_gb_256px_libero10"]), "–"],
  ]
  return ["figure", "rrd_jax", "decode-everything design", "ratio"], rows


SAC = (  # label, keys (newest name first), accelerator only
    ("JAX SAC updates/s (fused scan, 50 per call)", ("jax_updates_per_s",), False),
    ("PyTorch eager updates/s (NumPy-sampled batches)",
     ("torch_eager_updates_per_s", "torch_updates_per_s"), False),
    ("PyTorch eager updates/s, replay buffer on the device", ("torch_eager_device_updates_per_s",),
     False),
    ("PyTorch `torch.compile` updates/s", ("torch_compile_updates_per_s",), False),
    ("JAX speedup vs eager", ("speedup_vs_eager", "speedup"), False),
    ("JAX speedup vs eager, buffer on the device", ("speedup_vs_eager_device",), False),
    ("JAX speedup vs `torch.compile`", ("speedup_vs_compile",), False),
    ("JAX RRD-SAC updates/s (reward-model update + SAC update)", ("jax_rrd_sac_updates_per_s",),
     False),
    ("env steps/s, whole loop, one Hopper RRD-SAC run", ("env_steps_per_s",), True),
)


def sac(doc):
  columns = runs(doc)
  header = ["figure"] + [f"{key} (`{run.get('provenance', {}).get('commit', '?')}`)"
                         for key, run in columns]
  rows = []
  for label, keys, accelerator_only in SAC:
    cells = []
    for _, run in columns:
      on_cpu = run["sac"].get("jax_backend", run.get("machine", {}).get("jax_backend")) == "cpu"
      cells.append("–" if accelerator_only and on_cpu else sig(pick(run["sac"], keys)))
    rows.append([label] + cells)
  return header, rows


HOPPER_KINDS = {"rrd": "rrd", "ircr": "ircr (the earlier, non-faithful form)",
                "episodic": "episodic (no redistribution)", "dense": "dense (oracle reward)"}


def hopper(doc):
  derived = doc["derived"]
  end = steps(doc["rrd"]["env_steps"])
  header = ["kind", f"eval at {end}", f"per seed at {end}", "mean of the last 3 evals",
            "best eval per seed", f"training-episode return, last 20k to {end}"]
  rows = []
  for kind, label in HOPPER_KINDS.items():
    summary, extra = doc[kind], derived[kind]
    rows.append([label, pm(summary["final_return_mean"], summary["final_return_std"]),
                 per_seed(summary["final_returns"]),
                 pm(summary["mean_return_last_3_evals"], extra["last_3_evals_std"]),
                 per_seed(extra["best_eval_per_seed"]),
                 pm(extra["train_episode_return_mean"], extra["train_episode_return_std"])])
  return header, rows


def act_on_host(doc):
  env, derived = doc["env_steps_per_s_after_warmup_mean"], doc["derived"]
  updates, wall = derived["updates_per_s_after_warmup_mean"], doc["wall_s"]
  rows = [
      ["env steps/s per member after the warm-up", sig(env["act_on_host=True"]),
       sig(env["act_on_host=False"]),
       f"{fixed(doc['env_steps_per_s_ratio_true_over_false'], 2)}×"],
      ["updates/s per member after the warm-up (True includes the actor copy)",
       sig(updates["act_on_host=True"]), sig(updates["act_on_host=False"]),
       f"{fixed(derived['updates_per_s_ratio_true_over_false'], 2)}×"],
      ["whole command, wall s (start, compilation, warm-up, eval)", sig(wall["True"]),
       sig(wall["False"]), f"{fixed(derived['wall_s_ratio_false_over_true'], 2)}×"],
  ]
  return ["figure", "act_on_host=True", "act_on_host=False", "gain from True"], rows


def suite(doc):
  rows = []
  for name, result in doc.items():
    if name == "provenance":
      continue
    rows.append([name, steps(result["env_steps"]),
                 f"{pm(result['final_mean'], result['final_std'])} "
                 f"({per_seed(result['final_per_seed'])})",
                 pm(result["last3_mean"], result["last3_std"])])
  return ["task, kind", "env steps", "final eval (per seed)", "mean of the last 3 evals"], rows


def spread(result, name):
  """mean ± std over seeds of result[name + "_mean"], the mean alone for a single seed."""
  mean, std = result[f"{name}_mean"], result[f"{name}_std"]
  return sig(mean) if result.get("seeds") == 1 else pm(mean, std)


def agent_suite(doc):
  rows = []
  for key, run in runs(doc):
    for part in run["runs"]:
      returns = "; ".join(f"{kind} {spread(r, 'final')} / {spread(r, 'last3')}"
                          for kind, r in part["returns"].items())
      rows.append([f"`{key}`", part["task"], part["backend"], f"{part['env_steps']:,}",
                   sig(part["env_steps_per_s_per_member"]), returns])
  return ["run", "task", "backend", "env steps", "env steps/s per member",
          "per kind: final eval / mean of the last 3"], rows


TABLES = {  # name: (summary file, table builder), in BENCHMARKS.md's order
    "reward_step": ("reward_step_cpu.json", reward_step),
    "load": ("load_ttfs_cpu.json", load),
    "device_cache": ("device_cache_cpu.json", device_cache),
    "sac": ("sac_quick.json", sac),
    "accelerator": ("accelerator_quick_cpu.json", accelerator),
    "agent_suite": ("agent_suite_cpu.json", agent_suite),
    "generalisation": ("generalisation_cpu.json", generalisation),
    "mlp_ceiling": ("mlp_ceiling_cpu.json", mlp_ceiling),
    "hopper_comparison": ("hopper_population_h200_200k.json", hopper),
    "act_on_host": ("act_on_host_h200.json", act_on_host),
    "suite_cpu": ("suite_cpu.json", suite),
}


# --- command line ----------------------------------------------------------------------------

def tables(names, results_dir):
  """{name: (source lines, table lines)} for the named tables whose summary file exists."""
  out = {}
  for name in names:
    filename, build = TABLES[name]
    path = os.path.join(results_dir, filename)
    if not os.path.exists(path):
      print(f"[report] {name}: {path} missing, skipped", file=sys.stderr)
      continue
    with open(path, encoding="utf-8") as f:
      doc = json.load(f)
    out[name] = (source_lines(filename, doc), markdown(*build(doc)))
  return out


def normalise(line):
  return " ".join(line.split())


def missing_rows(made, document):
  """The table rows of `made` that `document` (markdown text) lacks, separator lines aside."""
  present = {normalise(line) for line in document.splitlines() if line.lstrip().startswith("|")}
  return [(name, line) for name, (_, table) in made.items() for line in table
          if not set(line) <= set("|-") and normalise(line) not in present]


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--only", default="", help=f"comma-separated subset of {', '.join(TABLES)}")
  parser.add_argument("--results", default=RESULTS, help="the folder of summary JSONs")
  parser.add_argument("--check", nargs="?", const=os.path.join(ROOT, "BENCHMARKS.md"),
                      default=None, metavar="FILE",
                      help="exit 1 if FILE (default BENCHMARKS.md) lacks a row of these tables")
  args = parser.parse_args(argv)
  names = [n for n in args.only.split(",") if n] or list(TABLES)
  unknown = sorted(set(names) - set(TABLES))
  if unknown:
    parser.error(f"unknown table(s) {', '.join(unknown)}; choose from {', '.join(TABLES)}")
  made = tables(names, args.results)
  for name, (source, table) in made.items():
    print("\n".join([f"### {name}", "", *source, "", *table, ""]))
  if args.check is None:
    return 0
  with open(args.check, encoding="utf-8") as f:
    missing = missing_rows(made, f.read())
  for name, line in missing:
    print(f"[report] {args.check} lacks a row of {name}: {line}", file=sys.stderr)
  return 1 if missing else 0


if __name__ == "__main__":
  sys.exit(main())
