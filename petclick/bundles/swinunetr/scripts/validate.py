"""SwinUNETR: validate this bundle's trained repeats on its fold (official metrics):
python scripts/validate.py run --config_file=configs/hyper_parameters.yaml"""

from petclick.training.evaluate import cli

if __name__ == "__main__":
    cli()
