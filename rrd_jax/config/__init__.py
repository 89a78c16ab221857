"""Layer 1, config: what a config may say and how it is read.

schema.py   the allowed values of every enumerated field, one validator per config file, and the
            upgrade of old field names (the one place a saved config.json is upgraded)
loading.py  a config file (path or shipped name) with --config.FIELD overrides; a run's config.json
inputs.py   ModelInputs: which per-step inputs a reward model reads
"""
