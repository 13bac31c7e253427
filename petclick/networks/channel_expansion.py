"""Load a checkpoint trained with fewer input channels into a click-guided network.

A non-interactive CT+PET model (2 channels) or a single-channel pretrained network becomes the
starting point of a CT, PET, fg-click, bg-click model: every weight tensor whose shape differs
from the model's only in dim 1 (input channels) belongs to a layer that sees the raw input
(SegResNetDS ``encoder.conv_init``; DiNTS each ``stem_down.<d>`` conv; SwinUNETR
``swinViT.patch_embed.proj`` and both convs of ``encoder1`` - its 3x3x3 conv and its 1x1x1
residual projection). Those get the old weights in their first channels and zeros in the extra
(click) channels, so the expanded model computes exactly the old function whatever the click
channels hold, and fine-tuning starts from the pretrained behaviour. Everything else loads
strictly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from petclick.core.errors import InputError
from petclick.io.torchfile import load_torch_file


def _strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop DistributedDataParallel ``module.`` and torch.compile ``_orig_mod.`` prefixes."""
    for prefix in ("module.", "_orig_mod."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def load_state_dict(checkpoint: str | Path | Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The state_dict inside `checkpoint`: a path to a torch file, a state_dict, or a
    self-describing dict ``{"state_dict": ...}`` (also ``"model"``/``"network"`` holding tensors)."""
    source: str | Path = "checkpoint"
    if isinstance(checkpoint, (str, Path)):
        source = Path(checkpoint)
        checkpoint = load_torch_file(source, "checkpoint file")
    if not isinstance(checkpoint, Mapping):
        raise InputError(source, f"checkpoint must be a dict, got {type(checkpoint).__name__}")
    state: Any = checkpoint
    for key in ("state_dict", "model", "network"):
        inner = checkpoint.get(key)
        if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
            state = inner
            break
    if not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(source, "no state_dict of tensors found (expected a state_dict or {'state_dict': ...})")
    return _strip_prefixes(dict(state))


def expand_input_channels(
    model: nn.Module,
    checkpoint: str | Path | Mapping[str, Any],
    image_channels: int | None = None,
) -> list[str]:
    """Load `checkpoint` into `model` (in place), expanding input-channel dims with zeros.

    `image_channels`, if given, is the number of input channels the checkpoint must have been
    trained with (checked). Returns the names of the expanded weight tensors (empty when the
    checkpoint already has the model's channel count). Raises InputError naming the tensor when
    keys differ or a shape differs in any other way.
    """
    source = str(checkpoint) if isinstance(checkpoint, (str, Path)) else "checkpoint"
    old = load_state_dict(checkpoint)
    target = model.state_dict()
    missing = sorted(set(target) - set(old))
    unexpected = sorted(set(old) - set(target))
    if missing or unexpected:
        raise InputError(
            source,
            f"checkpoint does not match the network: missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}",
        )
    merged: dict[str, torch.Tensor] = {}
    expanded: dict[str, tuple[int, int]] = {}
    for key, new in target.items():
        value = old[key]
        if value.shape == new.shape:
            merged[key] = value
            continue
        same_elsewhere = (
            value.ndim == new.ndim >= 2
            and value.shape[0] == new.shape[0]
            and value.shape[2:] == new.shape[2:]
            and value.shape[1] < new.shape[1]
        )
        if not same_elsewhere:
            raise InputError(
                source,
                f"{key}: checkpoint shape {tuple(value.shape)} cannot be loaded into {tuple(new.shape)} "
                "(only the input-channel dim 1 may grow)",
            )
        grown = torch.zeros(new.shape, dtype=new.dtype)
        grown[:, : value.shape[1]] = value.to(new.dtype)
        merged[key] = grown
        expanded[key] = (int(value.shape[1]), int(new.shape[1]))
    counts = {pair for pair in expanded.values()}
    if len(counts) > 1:
        raise InputError(source, f"input layers disagree on the channel counts: {expanded}")
    if image_channels is not None:
        have = next(iter(counts))[0] if counts else None
        if have is not None and have != int(image_channels):
            raise InputError(source, f"checkpoint has {have} input channels, expected image_channels={image_channels}")
    model.load_state_dict(merged, strict=True)
    return sorted(expanded)
