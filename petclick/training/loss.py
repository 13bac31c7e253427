"""Training losses: the lesion Dice-CE summed over deep-supervision levels (weights 1/2^i, targets
resized by nearest neighbour), and the organ head's loss (softmax Dice-CE or CE over the organ
classes, per sample, samples without an organ map masked out)."""

from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from monai.losses import DeepSupervisionLoss, DiceCELoss, DiceLoss


def ds_weights(levels: int, mode: str | list = "halving") -> list[float]:
    """Per-level weights: `halving` gives 1, 1/2, 1/4, ...; a list is used as given."""
    if isinstance(mode, (list, tuple)):
        return [float(w) for w in mode]
    if mode == "halving":
        return [0.5**i for i in range(levels)]
    if mode == "same":
        return [1.0] * levels
    raise ValueError(f"unknown deep-supervision weights {mode!r}; use 'halving', 'same' or a list")


def build_loss(training: Mapping[str, Any], levels: int = 8) -> DeepSupervisionLoss:
    """Sigmoid Dice-CE (binary cross-entropy for one channel), batch Dice, over up to `levels` outputs;
    a single tensor output is a plain Dice-CE. `training.loss_weights: {dice: 1, ce: 1}` weighs the two."""
    w = {"dice": 1.0, "ce": 1.0, **dict(training.get("loss_weights") or {})}
    base = DiceCELoss(sigmoid=True, batch=True, smooth_nr=1e-5, smooth_dr=1e-5, lambda_dice=float(w["dice"]),
                      lambda_ce=float(w["ce"]))
    return DeepSupervisionLoss(base, weights=ds_weights(levels, training.get("ds_weights", "halving")))


class OrganLoss(torch.nn.Module):
    """Softmax cross-entropy (+ soft Dice over the organ classes 1.., with `dice`) of organ logits
    (B, C, ...) against class maps (B, 1, ...). A sample whose target holds negative values (no
    organ map, petclick.training.organs.organ_target) is left out; the result is the mean over the
    other samples, and 0 (still part of the graph) when there are none."""

    def __init__(self, dice: bool = True):
        super().__init__()
        self.dice = DiceLoss(softmax=True, to_onehot_y=True, include_background=False, reduction="none",
                             smooth_nr=1e-5, smooth_dr=1e-5) if dice else None

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        valid = (target >= 0).flatten(1).all(1)
        if not bool(valid.any()):
            return logits.sum() * 0.0
        logits, target = logits[valid].float(), target[valid]
        per_sample = F.cross_entropy(logits, target[:, 0].long(), reduction="none").flatten(1).mean(1)
        if self.dice is not None:
            per_sample = per_sample + self.dice(logits, target).flatten(1).mean(1)
        return per_sample.mean()


def build_organ_loss(training: Mapping[str, Any], head: Mapping[str, Any], levels: int = 8) -> DeepSupervisionLoss:
    """The organ head's loss over up to `levels` deep-supervision outputs (the lesion loss's level
    weights); `head` is petclick.training.organs.organ_head's dict (its `loss`: dice_ce | ce). The
    caller multiplies it by the head's weight."""
    base = OrganLoss(dice=head.get("loss", "dice_ce") == "dice_ce")
    return DeepSupervisionLoss(base, weights=ds_weights(levels, training.get("ds_weights", "halving")))
