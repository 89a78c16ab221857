"""Layer 3, data: RLDS datasets opened, indexed, sampled and streamed.

rlds.py         open an RLDS/TFDS dataset directory, index its episodes for random access
sampling.py     RRD episode and step-index sampling (docs/ALGORITHM.md)
returns.py      return definitions: each episode's target return and per-step true reward
pipeline.py     tf.data pipelines: decode only the sampled frames, batches for the device
cache.py        frame caches on the host or the device (data.cache)
shards.py       how data.cache=device splits episodes over devices
source.py       from a config to an opened dataset (or mixture) with its return definition
describe.py     a dataset's features, counts and return distribution (rrd-inspect)
scenes.py       the embedded dataset's episodes, numpy only
embedded.py     the embedded dataset as a TFDS builder
libero_hdf5.py  native LIBERO HDF5 demos into LIBERO-layout RLDS (rrd-convert-libero)
"""
