"""Learning curves of online runs: python -m rrd_jax.cli.plot_runs DIR... [--out cmp.png] [--summary S.json]

Each DIR is a run's workdir, a population's workdir (its members are runs) or a directory whose
subdirectories are runs. Runs are grouped by
reward.kind (from each run's config.json; by env too when several envs appear); each group's
eval/return curve is plotted as the mean +- std over its runs (seeds) on the env steps all of them
reached, one panel per env (task) with a colour per reward kind: `plot_runs runs/hopper
runs/walker2d ...` draws a task suite. --summary writes, per group, the final mean / std / per-run returns as JSON.
"""

import argparse
import os
import sys

from rrd_jax.rl.curves import comparison_figure, find_runs, group_runs, summary
from rrd_jax.train import plots
from rrd_jax.util import files
from rrd_jax.util.errors import cli_main, UserError

def _check_output(path, figure=False):
  """Refuses, before any work, an output whose directory is missing or whose format matplotlib
  cannot write."""
  directory = os.path.dirname(os.path.abspath(path))
  if not os.path.isdir(directory):
    raise UserError(f"the directory of {path} does not exist; create it or choose another path")
  if figure:
    formats = plots.plt.figure().canvas.get_supported_filetypes()
    plots.plt.close("all")
    suffix = os.path.splitext(path)[1].lstrip(".").lower()
    if suffix not in formats:
      raise UserError(f"--out {path}: a figure is written as one of "
                      f"{', '.join(sorted(formats))} (by its suffix)")


@cli_main
def main(argv=None):
  parser = argparse.ArgumentParser(prog="python -m rrd_jax.cli.plot_runs", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("runs", nargs="+", help="run workdirs, or directories of them")
  parser.add_argument("--out", default="cmp.png", help="comparison plot (PNG)")
  parser.add_argument("--summary", default="", help="also write the per-group summary JSON here")
  parser.add_argument("--title", default="")
  args = parser.parse_args(argv)
  _check_output(args.out, figure=True)
  if args.summary:
    _check_output(args.summary)
  groups = group_runs(find_runs(args.runs))
  if not groups:
    raise UserError("none of the given runs has an evaluation in its metrics.jsonl yet")
  plots.save(comparison_figure(groups, args.title), args.out)
  result = summary(groups)
  if args.summary:
    files.write_json(args.summary, result)
  for label, row in result.items():
    print(f"{label}: {row['final_return_mean']:.1f} +- {row['final_return_std']:.1f} at "
          f"{row['env_steps']} env steps over {row['runs']} run(s)")
  print(f"Wrote {args.out}.")
  return result


if __name__ == "__main__":
  main(sys.argv[1:])
