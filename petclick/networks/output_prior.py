"""Prior initialisation of a network's output bias (the focal-loss "prior" trick, Lin et al. 2017).

Lesions fill well under 1 % of a whole-body volume. A freshly initialised network outputs logits
near 0 (probability 0.5 everywhere), and its first iterations only learn that almost every voxel
is background; with a batch Dice term, lesion-free patches then push every output down and a
short run can end predicting nothing. Starting the output bias at logit(p) for a small
foreground prior `p` begins training where that phase would end. Training-time only: the
checkpoint stores the trained bias like any other weight.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from petclick.core.errors import InputError

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def prior_logit(prior: float) -> float:
    """logit(prior) = log(p / (1 - p)); `prior` must lie strictly between 0 and 1."""
    try:
        p = float(prior)
    except (TypeError, ValueError):
        raise InputError("network output_prior", f"must be a number between 0 and 1, got {prior!r}") from None
    if not 0.0 < p < 1.0:
        raise InputError("network output_prior", f"must be a probability strictly between 0 and 1, got {prior!r}")
    return math.log(p / (1.0 - p))


def output_heads(model: nn.Module, out_channels: int = 1) -> list[tuple[str, nn.Module]]:
    """The convolutions that produce the network's output channels: every convolution with
    `out_channels` output channels and a bias (SegResNetDS has one per deep-supervision level,
    DiNTS and SwinUNETR one). With one output channel no hidden layer qualifies."""
    return [(name, m) for name, m in model.named_modules()
            if isinstance(m, _CONVS) and m.out_channels == int(out_channels) and m.bias is not None]


@torch.no_grad()
def init_output_prior(model: nn.Module, prior: float, out_channels: int = 1, channels: int | None = None) -> list[str]:
    """Set every output head's bias to logit(`prior`) (only its first `channels` channels when given:
    the lesion channels of a network with an organ head, whose organ channels keep their stock
    init); returns the heads' names. A model without a biased output convolution raises
    InputError (the prior would be lost)."""
    value = prior_logit(prior)
    heads = output_heads(model, out_channels)
    if not heads:
        raise InputError("network output_prior",
                         f"{type(model).__name__} has no convolution with {out_channels} output channel(s) and a bias")
    for _, conv in heads:
        conv.bias[: out_channels if channels is None else int(channels)].fill_(value)
    return [name for name, _ in heads]
