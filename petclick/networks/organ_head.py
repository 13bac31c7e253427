"""Organ supervision as an extra output channel group (YAML `network.organ_head`), for every network.

The winning autoPET systems train a second head on organ labels so that the features learn where
physiological uptake is (brain, bladder, kidneys, heart...), which lowers false positives there.
petclick adds it the same way to SegResNetDS, DiNTS and SwinUNETR, with no subclass: the network is
built with `out_channels + organ_classes` output channels, so each output convolution (every
deep-supervision head of SegResNetDS, the final convolution of DiNTS and SwinUNETR) carries the
lesion logits in its first `out_channels` channels and the organ logits (`organ_classes` softmax
classes, 0 = no listed organ) in the rest. The lesion channels keep their own weights; the two
groups share every feature before them.

- training: :func:`split_output` cuts each output (a tensor or the deep-supervision list) into the
  lesion part (the lesion loss, as without the head) and the organ part (the organ loss);
- inference: :class:`LesionOutput` wraps the network so that it returns only the lesion channels;
  a checkpoint with an organ head is loaded into it (petclick.runtime.checkpoint.build_model), so
  sliding windows, ONNX export and ensembles never see the organ channels.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

Output = torch.Tensor | Sequence[torch.Tensor]


def _cut(out: Output, start: int, stop: int | None) -> Output:
    if isinstance(out, torch.Tensor):
        return out[:, start:stop]
    return [o[:, start:stop] for o in out]


def split_output(out: Output, lesion_channels: int = 1) -> tuple[Output, Output]:
    """(lesion part, organ part) of a network output built with an organ head: channels
    [0, lesion_channels) and [lesion_channels, end) of the tensor or of each deep-supervision level."""
    return _cut(out, 0, lesion_channels), _cut(out, lesion_channels, None)


class LesionOutput(nn.Module):
    """A network trained with an organ head, seen as the lesion network: every output (a tensor or
    the deep-supervision list) cut to its first `channels` channels. Its state_dict is the wrapped
    network's under `net.`; load weights into `.net`."""

    def __init__(self, net: nn.Module, channels: int = 1):
        super().__init__()
        self.net = net
        self.channels = int(channels)

    def forward(self, x: torch.Tensor) -> Output:
        return _cut(self.net(x), 0, self.channels)
