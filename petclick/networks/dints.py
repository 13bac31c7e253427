"""DiNTS (MONAI) over a TopologyInstance: a searched (or petclick's default ladder) topology.

Defaults: the Auto3DSeg dints template's training network (channel_mul 1, 12 blocks, 4 depths,
downsampling stem). Pass `arch_code` (a dict as load_arch_code returns) or `arch_code_path` (a
file written by save_arch_code); without either the default ladder topology is used. A checkpoint
stores the code inline, so it rebuilds without the file.

ROI rule: the stem resamples by 2**d (d < num_depths) and, with use_downsample, a stride-2 conv
halves once more: every axis a multiple of 2**(num_depths - 1 + use_downsample) (16 for autopet).
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import torch
from torch import nn

from petclick.networks.dints_arch import arch_code_arrays, load_arch_code, resolve_arch_code
from petclick.networks.spec import NetworkSpec, register_network

DEFAULTS: dict[str, Any] = {
    "channel_mul": 1.0,
    "num_blocks": None,  # None: from the arch code, else 12
    "num_depths": None,  # None: from the arch code, else 4
    "use_downsample": True,
    "act_name": "RELU",
    "norm_name": ("INSTANCE", {"affine": True}),
    "arch_code": None,
    "arch_code_path": None,
}


def build(in_channels: int, out_channels: int, kw: dict[str, Any]) -> nn.Module:
    from monai.networks.nets import DiNTS, TopologyInstance

    code = resolve_arch_code(kw)
    node_a, code_a, code_c = arch_code_arrays(code)
    # TopologyConstruction prints a "recommended patch multiple" line on every build: keep logs clean.
    with contextlib.redirect_stdout(io.StringIO()):
        space = TopologyInstance(
            arch_code=[code_a, code_c],
            channel_mul=float(kw["channel_mul"]),
            num_blocks=code["num_blocks"],
            num_depths=code["num_depths"],
            use_downsample=bool(kw["use_downsample"]),
            act_name=kw["act_name"],
            norm_name=kw["norm_name"],
            device="cpu",  # only the architecture code lives there (control flow); weights follow .to()
        )
    return DiNTS(
        dints_space=space,
        in_channels=in_channels,
        num_classes=out_channels,
        act_name=kw["act_name"],
        norm_name=kw["norm_name"],
        use_downsample=bool(kw["use_downsample"]),
        node_a=torch.as_tensor(node_a),
    )


def roi_divisors(kw: dict[str, Any]) -> tuple[int, int, int]:
    depths = int(resolve_arch_code(kw)["num_depths"])
    return (2 ** (depths - 1 + int(bool(kw["use_downsample"]))),) * 3


def resolve_kwargs(kw: dict[str, Any]) -> dict[str, Any]:
    """`arch_code_path` read and inlined as `arch_code` (plain lists): the checkpoint needs no file."""
    kw = dict(kw)
    if kw.get("arch_code_path") is not None:
        kw["arch_code"] = load_arch_code(Path(kw.pop("arch_code_path")))
    return kw


def summary_kwargs(model: nn.Module, kw: dict[str, Any]) -> dict[str, Any]:
    """The built topology's size instead of the (long) code."""
    kw = dict(kw, num_blocks=model.num_blocks, num_depths=model.num_depths)
    kw.pop("arch_code", None)
    return kw


SPEC = register_network(NetworkSpec("dints", DEFAULTS, build, roi_divisors, resolve_kwargs, summary_kwargs))
