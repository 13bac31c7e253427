"""Sliding-window inference: MONAI's SlidingWindowInfererAdapt with Gaussian blending and AMP on GPU.

`window_logits` is the one per-window network call (deep-supervision list -> full-resolution
tensor, AMP on CUDA, float32 out): MONAI's inferer here and petclick's incremental tiler
(petclick/runtime/tiles.py) both call it, so a faster window call speeds up both.
"""

from __future__ import annotations

import contextlib
from typing import Any, Mapping, Sequence

import torch
from monai.inferers import SlidingWindowInfererAdapt

from petclick.runtime.cpu import enable_fast_cpu_conv3d

DEFAULT_INFER: dict[str, Any] = {"roi": None, "overlap": 0.625, "sw_batch_size": 1, "mode": "gaussian",
                                 "amp": True, "amp_dtype": "float16", "channels_last": False,
                                 "incremental": "exact", "tile_cache_mb": None}


def infer_config(infer: Mapping[str, Any] | None, train_roi: Sequence[int] | None = None) -> dict[str, Any]:
    """`infer` completed with defaults; a missing ROI falls back to the training ROI."""
    out = dict(DEFAULT_INFER)
    out.update({k: v for k, v in (infer or {}).items() if v is not None or k != "roi"})
    if out.get("roi") is None and train_roi is not None:
        out["roi"] = [int(r) for r in train_roi]
    return out


def autocast(device: torch.device | str, enabled: bool, dtype: str = "float16"):
    """torch.autocast on CUDA when enabled, a no-op context otherwise (CPU runs float32)."""
    device = torch.device(device)
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=getattr(torch, dtype))
    return contextlib.nullcontext()


def make_inferer(roi: Sequence[int], overlap: float = 0.625, sw_batch_size: int = 1, mode: str = "gaussian",
                 device: torch.device | str | None = None) -> SlidingWindowInfererAdapt:
    """The sliding-window inferer (adaptive: stitches on CPU when the GPU runs out of memory)."""
    return SlidingWindowInfererAdapt(roi_size=[int(r) for r in roi], sw_batch_size=int(sw_batch_size),
                                     overlap=float(overlap), mode=mode, device=device, progress=False)


@torch.no_grad()
def window_logits(model: torch.nn.Module, windows: torch.Tensor, amp: bool = False,
                  amp_dtype: str = "float16") -> torch.Tensor:
    """Logits (B, out, *roi) of `model` on a batch of windows (B, C, *roi), float32; the one
    per-window call of every sliding window in petclick."""
    if windows.device.type == "cpu":
        enable_fast_cpu_conv3d()
    with autocast(windows.device, amp, amp_dtype):
        out = model(windows)
    out = out[0] if isinstance(out, (list, tuple)) else out
    return torch.as_tensor(out).float()


@torch.no_grad()
def sliding_window_logits(model: torch.nn.Module, image: torch.Tensor, inferer, amp: bool = True,
                          amp_dtype: str = "float16", flip_axes: Sequence[int] = ()) -> torch.Tensor:
    """Logits (1, out, ...) of `model` on `image` (1, C, ...); with `flip_axes` the input is mirrored
    along those spatial axes (0..2) and the output mirrored back."""
    if image.device.type == "cpu":
        enable_fast_cpu_conv3d()
    if hasattr(image, "as_tensor"):  # a MetaTensor: plain tensors skip per-op metadata handling
        image = image.as_tensor()
    dims = [a + 2 for a in flip_axes]
    x = torch.flip(image, dims) if dims else image
    out = inferer(inputs=x, network=lambda w: window_logits(model, w, amp, amp_dtype))
    out = torch.as_tensor(out).float()
    return torch.flip(out, dims) if dims else out
