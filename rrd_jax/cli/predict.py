"""rrd-predict --workdir RUN --out OUT [--dataset_dir D] [--checkpoint best|latest|STEP]: every
step's predicted reward and each episode's predicted return (rrd_jax/infer/predict.py writes them)."""

from absl import flags

from rrd_jax.infer.predict import predict_dataset
from rrd_jax.util.errors import run_app, UserError


def define_run_flags(out_help):
  """Flags shared by the tools that apply a trained run to a dataset (predict, relabel)."""
  return {
      "workdir": flags.DEFINE_string("workdir", None, "Training run directory (holds config.json)."),
      "dataset_dir": flags.DEFINE_string("dataset_dir", "",
                                         "RLDS dataset; default: the run's training dataset."),
      "out": flags.DEFINE_string("out", None, out_help),
      "batch_size": flags.DEFINE_integer(
          "batch_size", 0, "Steps per forward pass; 0 = the run's train.predict_batch_size."),
      "checkpoint": flags.DEFINE_string(
          "checkpoint", "", "Which checkpoint: best (lowest held-out eval/loss), latest or a step "
          "number; default: best when the run kept one (it had held-out episodes), else latest."),
  }


def required_run_flags(run_flags):
  if not run_flags["workdir"].value or not run_flags["out"].value:
    raise UserError("--workdir and --out are required")
  return {k: v.value for k, v in run_flags.items()}


def main():
  run_flags = define_run_flags("Output directory.")
  plot = flags.DEFINE_bool("plots", True, "Write PNG plots to OUT/plots/.")

  def run(argv):
    del argv
    values = required_run_flags(run_flags)
    predict_dataset(values["workdir"], values["out"], values["dataset_dir"], values["batch_size"],
                    values["checkpoint"], plot.value)

  run_app(run)



if __name__ == "__main__":
  main()
