"""DiNTS architecture search of this bundle's fold (TopologySearch); writes the arch code and points
configs/hyper_parameters.yaml at it, so train.py then trains the searched topology:
python scripts/search.py run --config_file=configs/hyper_parameters.yaml [--search#num_epochs=20]"""

from petclick.training.dints_search import cli

if __name__ == "__main__":
    cli()
