"""SwinUNETR (MONAI): patch embedding, four patch mergings; defaults feature_size 48.

ROI rule: every axis a multiple of patch_size**5 (32). MONAI 1.6.1 dropped `img_size`: the input
size is free up to that divisibility. The forward returns one logit tensor (B, out_channels, *roi).
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from petclick.core.errors import InputError
from petclick.networks.spec import NetworkSpec, register_network

DEFAULTS: dict[str, Any] = {
    "feature_size": 48,
    "patch_size": 2,
    "depths": (2, 2, 2, 2),
    "num_heads": (3, 6, 12, 24),
    "window_size": 7,
    "norm_name": "instance",
    "drop_rate": 0.0,
    "attn_drop_rate": 0.0,
    "dropout_path_rate": 0.0,
    "normalize": True,
    "use_checkpoint": False,
    "use_v2": False,
    "downsample": "merging",
    "use_flash_attention": False,
}


def build(in_channels: int, out_channels: int, kw: dict[str, Any]) -> nn.Module:
    from monai.networks.nets import SwinUNETR

    if int(kw["feature_size"]) % 12 != 0:
        raise InputError("network swinunetr", f"feature_size must be a multiple of 12, got {kw['feature_size']}")
    accepted = inspect.signature(SwinUNETR.__init__).parameters
    args = {k: v for k, v in kw.items() if k in accepted}
    return SwinUNETR(in_channels=in_channels, out_channels=out_channels, spatial_dims=3, **args)


def roi_divisors(kw: dict[str, Any]) -> tuple[int, int, int]:
    return (int(kw["patch_size"]) ** 5,) * 3


SPEC = register_network(NetworkSpec("swinunetr", DEFAULTS, build, roi_divisors))
