"""rrd-inspect DATASET_DIR [--plot hist.png]: describe an RLDS dataset before training a reward model
on it, ending with a ready-to-paste rrd-train command (rrd_jax/data/describe.py)."""

from absl import flags

from rrd_jax.data import rlds
from rrd_jax.data.describe import inspect_dataset
from rrd_jax.util.errors import run_app, UserError


def main():
  dataset_dir = flags.DEFINE_string("dataset_dir", None,
                                    "RLDS dataset version directory (holds dataset_info.json).")
  plot = flags.DEFINE_string("plot", "", "Write length and return histograms to this PNG file.")
  defaults = rlds.FeatureKeys()
  key_flags = {
      "reward": flags.DEFINE_string("reward_key", None,
                                    f"Step reward feature (default {defaults.reward})."),
      "instruction": flags.DEFINE_string(
          "instruction_key", None,
          f"Step instruction feature (default {defaults.instruction} if present; '' for none)."),
      "file_path": flags.DEFINE_string(
          "file_path_key", None,
          f"Episode file-path feature (default {defaults.file_path} if present; '' for none)."),
      "proprio": flags.DEFINE_string("proprio_key", None,
                                     f"Step state feature (default {defaults.proprio})."),
      "action": flags.DEFINE_string("action_key", None,
                                    f"Step action feature (default {defaults.action})."),
  }

  def run(argv):
    del argv
    if not dataset_dir.value:
      raise UserError("a dataset directory is required: python -m rrd_jax.cli.inspect_data DATASET_DIR")
    inspect_dataset(dataset_dir.value, plot.value,
                    **{f"{name}_key": flag.value for name, flag in key_flags.items()})

  run_app(run, positional="dataset_dir")



if __name__ == "__main__":
  main()
