"""Training of petclick's bundles, on petclick.runtime: the data pipeline, the Dice-CE
deep-supervision loss and the one training loop (repeats, validation, checkpoints, resume, DDP).
Presets and config files: petclick.config.

- data.py: the fold's MONAI transform chains and cached datasets
- loss.py, validation.py, progress.py, distributed.py: the loop's parts
- loop.py: `run(config_file, **override)`, what a bundle's scripts/train.py calls
- evaluate.py: what a bundle's scripts/validate.py calls
"""
