"""Sliding-window inference: MONAI's SlidingWindowInfererAdapt with Gaussian blending and AMP on GPU.

`window_logits` is the one per-window network call (deep-supervision list -> full-resolution
tensor, AMP on CUDA, float32 out): MONAI's inferer here and petclick's incremental tiler
(petclick/runtime/tiles.py) both call it, so a faster window call speeds up both.
`prepare_network` makes that call fast: it turns a loaded network into what the `infer` settings
ask for (see DEFAULT_INFER):

- backend `auto`: ONNX Runtime on CPU (petclick/runtime/onnxrt.py: 2.1-3.5x faster at float32 on
  this project's CPU when shared, 1.17x when idle), PyTorch on GPU; `torch` / `onnxruntime` force one;
- PyTorch options: `channels_last` (channels_last_3d memory format), `compile` (torch.compile
  with inductor; `reduce-overhead` adds CUDA graphs), `cudnn_benchmark` (cuDNN autotuning);
- `make_inferer`'s `buffer_steps`: MONAI's buffered blending (benchmarks only: predictions blend
  through petclick's tiler, petclick/runtime/tiles.py).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Hashable, Mapping, Sequence

import torch
from monai.inferers import SlidingWindowInfererAdapt

from petclick.runtime.cpu import enable_fast_cpu_conv3d

log = logging.getLogger(__name__)

DEFAULT_INFER: dict[str, Any] = {"roi": None, "overlap": 0.625, "sw_batch_size": 1, "mode": "gaussian",
                                 "amp": True, "amp_dtype": "float16", "channels_last": False,
                                 "backend": "auto", "compile": "none", "cudnn_benchmark": False,
                                 "incremental": "exact", "tile_cache_mb": None}
BACKENDS = ("auto", "torch", "onnxruntime")
COMPILE_MODES = ("none", "default", "reduce-overhead", "max-autotune")


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
                 device: torch.device | str | None = None, buffer_steps: int | None = None) -> SlidingWindowInfererAdapt:
    """The sliding-window inferer (adaptive: stitches on CPU when the GPU runs out of memory; the
    importance map computed once)."""
    return SlidingWindowInfererAdapt(roi_size=[int(r) for r in roi], sw_batch_size=int(sw_batch_size),
                                     overlap=float(overlap), mode=mode, device=device, progress=False,
                                     cache_roi_weight_map=True,
                                     buffer_steps=None if buffer_steps is None else int(buffer_steps))


def resolve_backend(backend: str, device: torch.device | str) -> str:
    """`torch` or `onnxruntime` for a backend setting on `device`: `auto` is ONNX Runtime on CPU when
    installed, else PyTorch; `onnxruntime` off CPU or not installed raises ValueError."""
    from petclick.runtime import onnxrt

    device = torch.device(device)
    if backend not in BACKENDS:
        raise ValueError(f"infer.backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "torch" or (backend == "auto" and device.type != "cpu"):
        return "torch"
    if onnxrt.available() and device.type == "cpu":
        return "onnxruntime"
    if backend == "onnxruntime":
        raise ValueError("infer.backend onnxruntime needs the CPU and the onnxruntime and onnx packages")
    log.warning("onnxruntime is not installed: CPU inference runs on PyTorch (slower)")
    return "torch"


class TorchWindowNet(torch.nn.Module):
    """A PyTorch network for windows: channels_last_3d input when asked, optionally compiled;
    returns the full-resolution output."""

    def __init__(self, model: torch.nn.Module, channels_last: bool = False, compile_mode: str = "none"):
        super().__init__()
        self.memory_format = torch.channels_last_3d if channels_last else torch.contiguous_format
        self.net = model.to(memory_format=self.memory_format) if channels_last else model
        self.compiled = None if compile_mode == "none" else torch.compile(self.net, mode=compile_mode)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        x = windows.contiguous(memory_format=self.memory_format)
        if self.compiled is not None:
            out = self.compiled(x)
        else:
            out = self.net(x)
        return out[0] if isinstance(out, (list, tuple)) else out


def prepare_network(model: torch.nn.Module, infer: Mapping[str, Any], device: torch.device | str,
                    arch: Hashable | None = None) -> torch.nn.Module:
    """`model` (eval mode, on `device`) as the window network the `infer` settings ask for (module
    docstring). Build it once per loaded model and keep it (petclick.inference's ModelCache does):
    the ONNX Runtime session and compiled code live in it. `arch` (e.g. the checkpoint's network
    name, kwargs and channels) lets checkpoints of one architecture share one ONNX export."""
    device = torch.device(device)
    s = infer_config(infer)
    compile_mode = str(s.get("compile") or "none")
    if compile_mode not in COMPILE_MODES:
        raise ValueError(f"infer.compile must be one of {COMPILE_MODES}, got {compile_mode!r}")
    backend = resolve_backend(str(s.get("backend") or "auto"), device)
    if device.type == "cuda" and s.get("cudnn_benchmark"):
        torch.backends.cudnn.benchmark = True
    if backend == "onnxruntime":
        from petclick.runtime.onnxrt import OrtWindowNet

        return OrtWindowNet(model, arch)
    return TorchWindowNet(model, bool(s.get("channels_last")), compile_mode)


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
