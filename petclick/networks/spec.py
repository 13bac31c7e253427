"""What petclick knows about one network: a NetworkSpec per network module, in one registry.

A network module (segresnet.py, dints.py, swinunetr.py) states its default keyword arguments, how
to build the module, its ROI divisors, how its kwargs are stored in a checkpoint and how a summary
reports them, then registers the spec. factory.py, roi.py and summary.py only look specs up, so a
new network is one module (plus one import line in factory.py) and its bundle's YAML; an unknown
`network.name` is an InputError listing the known names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from torch import nn

from petclick.core.registry import Registry

Kwargs = dict[str, Any]


def _same(kwargs: Kwargs) -> Kwargs:
    return dict(kwargs)


def _summary_same(model: nn.Module, kwargs: Kwargs) -> Kwargs:
    return dict(kwargs)


@dataclass(frozen=True)
class NetworkSpec:
    """One network: `build(in_channels, out_channels, kwargs)` gets the defaults merged with YAML kwargs."""

    name: str
    defaults: Mapping[str, Any]                                 # the autopet values of every kwarg
    build: Callable[[int, int, Kwargs], nn.Module]
    roi_divisors: Callable[[Kwargs], tuple[int, int, int]]      # per-axis multiple of every ROI axis
    resolve_kwargs: Callable[[Kwargs], Kwargs] = _same          # YAML kwargs -> what a checkpoint stores
    summary_kwargs: Callable[[nn.Module, Kwargs], Kwargs] = _summary_same  # kwargs as a summary shows them
    deep_supervision: Callable[[Kwargs], bool] = field(default=lambda kw: False)


#: Every network petclick builds, by `network.name`.
NETWORKS: Registry[NetworkSpec] = Registry("network name")


def register_network(spec: NetworkSpec) -> NetworkSpec:
    """Register a network module's spec under its name."""
    return NETWORKS.register(spec.name, spec)
