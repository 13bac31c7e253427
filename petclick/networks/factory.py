"""Build petclick's segmentation networks from a name and YAML keyword arguments.

Every bundle gets its network here, so training, inference and checkpoint loading build the same
module from the self-describing checkpoint's ``{"network": {"name", "kwargs"}}`` entry. Each network
is one module with a NetworkSpec (petclick.networks.spec); this module looks specs up by name:

* ``segresnet`` (petclick.networks.segresnet, MONAI ``SegResNetDS``): in ``train()`` mode with
  ``dsdepth > 1`` a **list** of logit tensors, full resolution first (deep supervision); in
  ``eval()`` mode (or ``dsdepth == 1``) one tensor ``(B, out_channels, *roi)``.
* ``dints`` (petclick.networks.dints, MONAI ``DiNTS``) and ``swinunetr`` (petclick.networks.swinunetr):
  always one tensor ``(B, out_channels, *roi)``.

All outputs are logits (no sigmoid/softmax). :func:`as_list` turns either form into a list.
With ``organ_classes`` (YAML ``network.organ_head``) every output carries that many organ channels
after the ``out_channels`` lesion channels (petclick.networks.organ_head).
A new network: a module that registers its NetworkSpec, imported below, plus its bundle's YAML.
"""

from __future__ import annotations

import copy
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from petclick.core.errors import InputError
# the built-in networks register their specs on import, in this order (the order errors list them)
from petclick.networks import segresnet as _segresnet  # noqa: F401, I001
from petclick.networks import dints as _dints  # noqa: F401
from petclick.networks import swinunetr as _swinunetr  # noqa: F401
from petclick.networks.spec import NETWORKS, NetworkSpec

#: The registered network names (`network.name` in YAML).
NETWORK_NAMES = NETWORKS.names()
#: The ``autopet`` defaults of each network (every value can be overridden from YAML).
DEFAULT_KWARGS: dict[str, Mapping[str, Any]] = {name: spec.defaults for name, spec in NETWORKS.items()}


def check_name(name: str) -> str:
    """Return the canonical (lower-case) network name or raise InputError listing the known ones."""
    return NETWORKS.canonical(name, "network")


def network_spec(name: str) -> NetworkSpec:
    """The NetworkSpec of `name` (InputError listing the known names otherwise)."""
    return NETWORKS.get(name, "network")


def _tuples(value: Any) -> Any:
    """YAML gives lists; MONAI wants tuples for sequences (blocks_down, depths, norm args)."""
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def network_kwargs(name: str, **kwargs: Any) -> dict[str, Any]:
    """Defaults of `name` updated by `kwargs`; unknown keys raise InputError naming the accepted ones."""
    spec = network_spec(name)
    merged = copy.deepcopy(dict(spec.defaults))
    unknown = sorted(set(kwargs) - set(merged))
    if unknown:
        raise InputError(f"network {spec.name}", f"unknown keyword(s) {unknown}; accepted: {', '.join(sorted(merged))}")
    merged.update({k: _tuples(v) for k, v in kwargs.items()})
    return merged


def build_network(name: str, in_channels: int, out_channels: int, *, organ_classes: int = 0,
                  **kwargs: Any) -> nn.Module:
    """Build network `name` with `in_channels` inputs (CT, PET, click channels) and `out_channels`
    logit channels; `kwargs` come from YAML and override the network's defaults. `organ_classes` > 0
    adds an organ head: that many more output channels, after the lesion ones (one code path for
    every network: the output convolutions get the extra channels; see organ_head.py).

    For ``dints`` pass ``arch_code`` (a dict as :func:`petclick.networks.load_arch_code` returns)
    or ``arch_code_path`` (a file written by ``save_arch_code``); without either the default
    ladder topology (:func:`petclick.networks.dints_arch.default_arch_code`) is used.

    Returns the module; see this module's docstring for what its forward returns.
    """
    spec = network_spec(name)
    if int(in_channels) < 1 or int(out_channels) < 1:
        raise InputError(f"network {spec.name}",
                         f"in_channels and out_channels must be >= 1, got {in_channels}, {out_channels}")
    if int(organ_classes) < 0 or int(organ_classes) == 1:
        raise InputError(f"network {spec.name}", f"organ_classes must be 0 (no organ head) or >= 2, got {organ_classes}")
    return spec.build(int(in_channels), int(out_channels) + int(organ_classes), network_kwargs(spec.name, **kwargs))


def as_list(outputs: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """The network output as a list of tensors, full resolution first (deep supervision or not)."""
    if isinstance(outputs, torch.Tensor):
        return [outputs]
    if isinstance(outputs, (list, tuple)) and all(isinstance(o, torch.Tensor) for o in outputs) and outputs:
        return list(outputs)
    raise TypeError(f"expected a tensor or a non-empty list of tensors, got {type(outputs).__name__}")


def resolve_network_kwargs(name: str, kwargs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Kwargs to store in a self-describing checkpoint (for dints, ``arch_code_path`` is read and
    inlined as ``arch_code``, so the checkpoint rebuilds without the file)."""
    return network_spec(name).resolve_kwargs(dict(kwargs or {}))
