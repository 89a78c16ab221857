"""Layer 0, util: what every layer needs and nothing of RRD: one-sentence user errors (exit 2),
crash-safe JSON files, progress lines and bars, and a quiet first screen.

errors.py       UserError and the exit-2 entry point wrapper (run_app)
files.py        JSON written to a temporary file, fsynced and renamed into place
progress.py     progress bar on a terminal, 'step 300/10000 (3%, ..., ETA ...)' lines in a log
quiet_start.py  drops the two lines TensorFlow's import prints on every start
"""
