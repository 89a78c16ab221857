"""RLDS data: opening and indexing datasets, RRD sampling, the tf.data pipeline, the embedded dataset."""

# config.data.cache values (rrd_jax/data/cache.py); here, free of tensorflow, for config checks.
CACHE_KINDS = ("none", "host", "device")
