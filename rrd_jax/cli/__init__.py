"""Layer 9, cli: one module per console script; each parses its flags and calls the layers below.

train.py           rrd-train
predict.py         rrd-predict
relabel.py         rrd-relabel
inspect_data.py    rrd-inspect
convert_libero.py  rrd-convert-libero
pytorch_flags.py   rrd-legacy (the PyTorch tool's command line, translated)
plot_runs.py       rrd-plot-runs
"""
