"""Small 2D MONAI classifiers for the tracer of a PET (the learned alternative to the MIP rule).

Input: two channels, the coronal and the sagittal maximum-intensity projections resized to one
size (petclick.runtime.tracer_model builds them); output: one logit per tracer. BIRTH (autoPET IV)
runs one ResNet per projection and joins them with an MLP; here one ResNet sees both projections
as channels (one backbone, half the weights, the same information once both are resized to one
grid). A new architecture is one TRACER_NETWORKS entry: name -> builder(in_channels, classes, kwargs).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from torch import nn

from petclick.core.errors import InputError
from petclick.core.registry import Registry

Builder = Callable[[int, int, Mapping[str, Any]], nn.Module]
TRACER_NETWORKS: Registry[Builder] = Registry("tracer network")


def _resnet(in_channels: int, classes: int, kw: Mapping[str, Any]) -> nn.Module:
    from monai.networks.nets import ResNet

    return ResNet(block=kw.get("block", "basic"), layers=list(kw.get("layers", (1, 1, 1, 1))),
                  block_inplanes=list(kw.get("block_inplanes", (8, 16, 32, 64))), spatial_dims=2,
                  n_input_channels=in_channels, num_classes=classes, conv1_t_size=int(kw.get("conv1_size", 7)),
                  conv1_t_stride=int(kw.get("conv1_stride", 2)))


def _densenet(in_channels: int, classes: int, kw: Mapping[str, Any]) -> nn.Module:
    from monai.networks.nets import DenseNet

    return DenseNet(spatial_dims=2, in_channels=in_channels, out_channels=classes,
                    init_features=int(kw.get("init_features", 8)), growth_rate=int(kw.get("growth_rate", 8)),
                    block_config=tuple(kw.get("block_config", (2, 2, 2))))


TRACER_NETWORKS.register("resnet", _resnet)
TRACER_NETWORKS.register("densenet", _densenet)
KNOWN_KWARGS = {"resnet": {"block", "layers", "block_inplanes", "conv1_size", "conv1_stride"},
                "densenet": {"init_features", "growth_rate", "block_config"}}


def build_tracer_network(name: str, in_channels: int, classes: int, **kwargs: Any) -> nn.Module:
    """The 2D classifier `name` (resnet | densenet, MONAI) with its keyword settings; unknown names or
    keywords raise InputError."""
    key = TRACER_NETWORKS.canonical(name, "tracer network")
    unknown = sorted(set(kwargs) - KNOWN_KWARGS[key])
    if unknown:
        raise InputError("tracer network", f"unknown keyword(s) {unknown} for {key}; known: {sorted(KNOWN_KWARGS[key])}")
    return TRACER_NETWORKS.get(key)(in_channels, classes, kwargs)
