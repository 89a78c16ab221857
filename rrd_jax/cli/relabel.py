"""rrd-relabel --workdir RUN --dataset_dir D --out OUT [--replace_reward]: a copy of an RLDS dataset
with the learned reward added to every step (rrd_jax/infer/relabel.py writes it)."""

from absl import flags

from rrd_jax.cli.predict import define_run_flags, required_run_flags
from rrd_jax.infer.relabel import relabel_dataset
from rrd_jax.util.errors import run_app


def main():
  run_flags = define_run_flags("Output dataset version directory.")
  replace_reward = flags.DEFINE_bool("replace_reward", False,
                                     "Also overwrite the dataset's reward field.")

  def run(argv):
    del argv
    values = required_run_flags(run_flags)
    relabel_dataset(values["workdir"], values["dataset_dir"], values["out"], replace_reward.value,
                    values["batch_size"], values["checkpoint"])

  run_app(run)



if __name__ == "__main__":
  main()
