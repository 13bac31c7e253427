"""Build petclick's three segmentation networks from a name and YAML keyword arguments.

Every bundle (segresnet, dints, swinunetr) gets its network here, so training, inference and
checkpoint loading build the same module from the self-describing checkpoint's
``{"network": {"name", "kwargs"}}`` entry.

What the forward returns:

* ``segresnet`` (MONAI ``SegResNetDS``): in ``train()`` mode with ``dsdepth > 1`` a **list** of
  ``min(dsdepth, len(blocks_down) - 1)`` logit tensors, full resolution first, each following
  level at half the previous resolution (the deep-supervision heads); in ``eval()`` mode (or ``dsdepth == 1``) one tensor ``(B, out_channels, *roi)``.
* ``dints`` (MONAI ``DiNTS`` over a ``TopologyInstance``) and ``swinunetr`` (MONAI ``SwinUNETR``):
  always one tensor ``(B, out_channels, *roi)``.

All outputs are logits (no sigmoid/softmax). :func:`as_list` turns either form into a list.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import inspect
import io
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from petclick.core.errors import InputError

NETWORK_NAMES = ("segresnet", "dints", "swinunetr")

#: The ``autopet`` defaults of each network (every value can be overridden from YAML).
#: segresnet follows the MONAI Auto3DSeg segresnet template (init_filters 32, blocks_down
#: (1,2,2,4,4), dsdepth 4, instance norm); dints the Auto3DSeg dints template's training network
#: (channel_mul 1, 12 blocks, 4 depths, downsampling stem); swinunetr feature_size 48.
DEFAULT_KWARGS: dict[str, dict[str, Any]] = {
    "segresnet": {
        "init_filters": 32,
        "blocks_down": (1, 2, 2, 4, 4),
        "dsdepth": 4,
        "norm": "INSTANCE",
        "act": "relu",
        "upsample_mode": "deconv",
        "resolution": None,
    },
    "dints": {
        "channel_mul": 1.0,
        "num_blocks": None,  # None: from the arch code, else 12
        "num_depths": None,  # None: from the arch code, else 4
        "use_downsample": True,
        "act_name": "RELU",
        "norm_name": ("INSTANCE", {"affine": True}),
        "arch_code": None,
        "arch_code_path": None,
    },
    "swinunetr": {
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
    },
}


def check_name(name: str) -> str:
    """Return the canonical (lower-case) network name or raise InputError listing the known ones."""
    key = str(name).strip().lower()
    if key not in NETWORK_NAMES:
        raise InputError("network", f"unknown network name {name!r}; choose one of {', '.join(NETWORK_NAMES)}")
    return key


def _tuples(value: Any) -> Any:
    """YAML gives lists; MONAI wants tuples for sequences (blocks_down, depths, norm args)."""
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def network_kwargs(name: str, **kwargs: Any) -> dict[str, Any]:
    """Defaults of `name` updated by `kwargs`; unknown keys raise InputError naming the accepted ones."""
    key = check_name(name)
    merged = copy.deepcopy(DEFAULT_KWARGS[key])
    unknown = sorted(set(kwargs) - set(merged))
    if unknown:
        raise InputError(
            f"network {key}", f"unknown keyword(s) {unknown}; accepted: {', '.join(sorted(merged))}"
        )
    merged.update({k: _tuples(v) for k, v in kwargs.items()})
    return merged


def _segresnet_norm(norm: Any) -> Any:
    """INSTANCE_NVFUSER (the Auto3DSeg template's choice) needs CUDA and apex; fall back to INSTANCE."""
    name = norm[0] if isinstance(norm, (tuple, list)) else norm
    if isinstance(name, str) and name.upper() == "INSTANCE_NVFUSER":
        if not torch.cuda.is_available() or importlib.util.find_spec("apex") is None:
            warnings.warn("INSTANCE_NVFUSER needs CUDA and apex: using INSTANCE norm instead", stacklevel=3)
            return ("INSTANCE", dict(norm[1])) if isinstance(norm, (tuple, list)) and len(norm) > 1 else "INSTANCE"
    return norm


def _build_segresnet(in_channels: int, out_channels: int, kw: dict[str, Any]) -> nn.Module:
    from monai.networks.nets import SegResNetDS

    return SegResNetDS(
        spatial_dims=3,
        in_channels=in_channels,
        out_channels=out_channels,
        init_filters=int(kw["init_filters"]),
        blocks_down=tuple(int(b) for b in kw["blocks_down"]),
        dsdepth=int(kw["dsdepth"]),
        norm=_segresnet_norm(kw["norm"]),
        act=kw["act"],
        upsample_mode=kw["upsample_mode"],
        resolution=None if kw["resolution"] is None else tuple(float(r) for r in kw["resolution"]),
    )


def _build_dints(in_channels: int, out_channels: int, kw: dict[str, Any]) -> nn.Module:
    from monai.networks.nets import DiNTS, TopologyInstance

    from petclick.networks.dints_arch import arch_code_arrays, resolve_arch_code

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


def _build_swinunetr(in_channels: int, out_channels: int, kw: dict[str, Any]) -> nn.Module:
    from monai.networks.nets import SwinUNETR

    if int(kw["feature_size"]) % 12 != 0:
        raise InputError("network swinunetr", f"feature_size must be a multiple of 12, got {kw['feature_size']}")
    args = {k: v for k, v in kw.items()}
    # MONAI 1.6.1 dropped img_size: the input size is free up to divisibility by patch_size**5.
    accepted = inspect.signature(SwinUNETR.__init__).parameters
    args = {k: v for k, v in args.items() if k in accepted}
    return SwinUNETR(in_channels=in_channels, out_channels=out_channels, spatial_dims=3, **args)


_BUILDERS = {"segresnet": _build_segresnet, "dints": _build_dints, "swinunetr": _build_swinunetr}


def build_network(name: str, in_channels: int, out_channels: int, **kwargs: Any) -> nn.Module:
    """Build network `name` ("segresnet" | "dints" | "swinunetr") with `in_channels` inputs
    (CT, PET, click channels) and `out_channels` logit channels; `kwargs` come from YAML and
    override :data:`DEFAULT_KWARGS`.

    For ``dints`` pass ``arch_code`` (a dict as :func:`petclick.networks.load_arch_code` returns)
    or ``arch_code_path`` (a file written by ``save_arch_code``); without either the default
    ladder topology (:func:`petclick.networks.dints_arch.default_arch_code`) is used.

    Returns the module; see this module's docstring for what its forward returns.
    """
    key = check_name(name)
    if int(in_channels) < 1 or int(out_channels) < 1:
        raise InputError(f"network {key}", f"in_channels and out_channels must be >= 1, got {in_channels}, {out_channels}")
    kw = network_kwargs(key, **kwargs)
    return _BUILDERS[key](int(in_channels), int(out_channels), kw)


def as_list(outputs: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """The network output as a list of tensors, full resolution first (deep supervision or not)."""
    if isinstance(outputs, torch.Tensor):
        return [outputs]
    if isinstance(outputs, (list, tuple)) and all(isinstance(o, torch.Tensor) for o in outputs) and outputs:
        return list(outputs)
    raise TypeError(f"expected a tensor or a non-empty list of tensors, got {type(outputs).__name__}")


def resolve_network_kwargs(name: str, kwargs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Kwargs to store in a self-describing checkpoint: for dints, ``arch_code_path`` is read and
    inlined as ``arch_code`` (plain lists) so the checkpoint rebuilds without the file."""
    key = check_name(name)
    kw = dict(kwargs or {})
    if key == "dints" and kw.get("arch_code_path") is not None:
        from petclick.networks.dints_arch import load_arch_code

        kw["arch_code"] = load_arch_code(Path(kw.pop("arch_code_path")))
    return kw
