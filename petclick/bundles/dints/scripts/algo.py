"""Auto3DSeg algorithm of this template: petclick.training.dints_search.DintsSearchAlgo (the shared
petclick BundleAlgo plus the optional architecture-search stage before training)."""

from petclick.auto3dseg.dints_algo import DintsSearchAlgo


class DintsAlgo(DintsSearchAlgo):
    """DiNTS: the network, its per-preset defaults and the search stage are in configs/hyper_parameters.yaml."""
