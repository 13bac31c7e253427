"""SegResNet-DS: train this bundle's fold, every repeat (seed) in one process:
python scripts/train.py run --config_file=configs/hyper_parameters.yaml [--training#num_epochs=5]"""

from petclick.training.loop import cli

if __name__ == "__main__":
    cli()
