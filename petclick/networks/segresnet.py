"""SegResNetDS (MONAI, deep supervision): petclick's default network.

Defaults follow the MONAI Auto3DSeg segresnet template (init_filters 32, blocks_down (1,2,2,4,4),
dsdepth 4, instance norm). In `train()` mode with dsdepth > 1 the forward returns a list of
min(dsdepth, len(blocks_down) - 1) logit tensors, full resolution first.

ROI rule: the encoder halves the resolution len(blocks_down) - 1 times, so each axis is a multiple
of 2**(len(blocks_down) - 1) (16 for the autopet (1,2,2,4,4)); with `resolution` (anisotropic
kernels) the per-axis factors come from MONAI's scales_for_resolution, as SegResNetDS.shape_factor.
"""

from __future__ import annotations

import importlib.util
import math
import warnings
from typing import Any

import torch
from torch import nn

from petclick.networks.spec import NetworkSpec, register_network

DEFAULTS: dict[str, Any] = {
    "init_filters": 32,
    "blocks_down": (1, 2, 2, 4, 4),
    "dsdepth": 4,
    "norm": "INSTANCE",
    "act": "relu",
    "upsample_mode": "deconv",
    "resolution": None,
}


def _norm(norm: Any) -> Any:
    """INSTANCE_NVFUSER (the Auto3DSeg template's choice) needs CUDA and apex; fall back to INSTANCE."""
    name = norm[0] if isinstance(norm, (tuple, list)) else norm
    if isinstance(name, str) and name.upper() == "INSTANCE_NVFUSER":
        if not torch.cuda.is_available() or importlib.util.find_spec("apex") is None:
            warnings.warn("INSTANCE_NVFUSER needs CUDA and apex: using INSTANCE norm instead", stacklevel=3)
            return ("INSTANCE", dict(norm[1])) if isinstance(norm, (tuple, list)) and len(norm) > 1 else "INSTANCE"
    return norm


def build(in_channels: int, out_channels: int, kw: dict[str, Any]) -> nn.Module:
    from monai.networks.nets import SegResNetDS

    return SegResNetDS(
        spatial_dims=3,
        in_channels=in_channels,
        out_channels=out_channels,
        init_filters=int(kw["init_filters"]),
        blocks_down=tuple(int(b) for b in kw["blocks_down"]),
        dsdepth=int(kw["dsdepth"]),
        norm=_norm(kw["norm"]),
        act=kw["act"],
        upsample_mode=kw["upsample_mode"],
        resolution=None if kw["resolution"] is None else tuple(float(r) for r in kw["resolution"]),
    )


def roi_divisors(kw: dict[str, Any]) -> tuple[int, int, int]:
    n_down = len(kw["blocks_down"]) - 1
    if kw["resolution"] is not None:
        from monai.networks.nets.segresnet_ds import scales_for_resolution

        scales = scales_for_resolution(tuple(kw["resolution"]), n_stages=len(kw["blocks_down"]))
        return tuple(int(math.prod(int(s[a]) for s in scales[:-1])) for a in range(3))  # type: ignore[return-value]
    return (2**n_down,) * 3


def deep_supervision(kw: dict[str, Any]) -> bool:
    return min(int(kw["dsdepth"]), len(kw["blocks_down"]) - 1) > 1


SPEC = register_network(NetworkSpec("segresnet", DEFAULTS, build, roi_divisors, deep_supervision=deep_supervision))
