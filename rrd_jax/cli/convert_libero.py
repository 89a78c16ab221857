"""rrd-convert-libero --input DIR_OR_FILES --output ROOT [--filter_noops] [--image_size S]: native
LIBERO HDF5 demo files into an RLDS dataset with the LIBERO RLDS features (rrd_jax/data/libero_hdf5.py)."""

from absl import flags

from rrd_jax.data.libero_hdf5 import convert, DEFAULT_NAME
from rrd_jax.util.errors import run_app, UserError


def main():
  inputs = flags.DEFINE_string(
      "input", None, "A directory of LIBERO *.hdf5 files or a comma-separated list of files.")
  output = flags.DEFINE_string("output", None,
                               "Output root; the dataset is written to OUTPUT/NAME/1.0.0.")
  image_size = flags.DEFINE_integer("image_size", 256, "Stored image side (square), in pixels.")
  filter_noops = flags.DEFINE_bool("filter_noops", False,
                                   "Drop no-op steps as OpenVLA's no_noops datasets do.")
  name = flags.DEFINE_string("name", "",
                             "TFDS dataset name; default: from the input directory's name "
                             f"(+ '_no_noops' with --filter_noops), or {DEFAULT_NAME}.")
  shard_episodes = flags.DEFINE_integer("shard_episodes", 0,
                                        "Episodes per TFRecord shard; 0 = TFDS's choice.")

  def run(argv):
    del argv
    if not inputs.value or not output.value:
      raise UserError("--input and --output are required")
    convert(inputs.value, output.value, image_size.value, filter_noops.value, name.value,
            shard_episodes.value)

  run_app(run)



if __name__ == "__main__":
  main()
