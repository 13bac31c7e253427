"""Training of petclick's bundles: config layers and presets, the data pipeline, the Dice-CE
deep-supervision loss and the one training loop (repeats, validation, checkpoints, resume, DDP).

- presets.py / config.py: `demo` and `autopet` presets, YAML merging and overrides
- data.py: the fold's MONAI transform chains and cached datasets
- loss.py, validation.py, progress.py, distributed.py: the loop's parts
- loop.py: `run(config_file, **override)`, what a bundle's scripts/train.py calls
- evaluate.py: what a bundle's scripts/validate.py calls
"""
