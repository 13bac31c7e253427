"""Fast 3D convolutions for CPU inference.

PyTorch's CPU convolution picks oneDNN (mkldnn) with a 2D-oriented size rule: for batch 1 it
needs N*C*D*H > 20480, so a sliding window over a few-channel 3D volume falls back to
`slow_conv3d` (im2col), about 10x slower on this project's 2-core CPU (a 48x48x64 SegResNetDS
forward: 0.6 s -> 0.06 s). `enable_fast_cpu_conv3d()` routes gradient-free float32 CPU Conv3d
calls to `torch.mkldnn_convolution` directly (same result to 1e-6), keeping a channels_last_3d
input in that format; training (gradients), code being traced (torch.compile: inductor picks
oneDNN itself; the ONNX exporter) and other devices are untouched. Idempotent; applied by petclick's inference and
validation on CPU. ONNX Runtime is faster still (petclick/runtime/onnxrt.py).
"""

from __future__ import annotations

import torch

_ORIGINAL = torch.nn.Conv3d._conv_forward


def _channels_last(x: torch.Tensor) -> bool:
    return not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last_3d)


def _fast_conv_forward(self: torch.nn.Conv3d, input: torch.Tensor, weight: torch.Tensor, bias):
    if (input.device.type == "cpu" and input.dtype == torch.float32 and weight.dtype == torch.float32
            and self.padding_mode == "zeros" and not isinstance(self.padding, str)
            and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled
            and not (torch.is_grad_enabled() and (input.requires_grad or weight.requires_grad))
            and not torch.compiler.is_compiling() and not torch.jit.is_tracing()):
        fmt = torch.channels_last_3d if _channels_last(input) else torch.contiguous_format
        return torch.mkldnn_convolution(input.contiguous(memory_format=fmt), weight.contiguous(memory_format=fmt),
                                        bias, self.padding, self.stride, self.dilation, self.groups)
    return _ORIGINAL(self, input, weight, bias)


def enable_fast_cpu_conv3d() -> None:
    """Route gradient-free float32 CPU Conv3d forwards through oneDNN (see module docstring)."""
    torch.nn.Conv3d._conv_forward = _fast_conv_forward


def disable_fast_cpu_conv3d() -> None:
    """Restore PyTorch's own Conv3d forward."""
    torch.nn.Conv3d._conv_forward = _ORIGINAL
