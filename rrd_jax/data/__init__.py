"""RLDS data: opening and indexing datasets, RRD sampling, the tf.data pipeline, the embedded dataset."""
