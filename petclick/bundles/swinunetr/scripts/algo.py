"""Auto3DSeg algorithm of this template: all logic is petclick's (petclick.auto3dseg.algo)."""

from petclick.auto3dseg.algo import PetclickBundleAlgo


class SwinunetrAlgo(PetclickBundleAlgo):
    """SwinUNETR: the network and its per-preset defaults are in configs/hyper_parameters.yaml."""
