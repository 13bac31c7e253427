"""Training losses: the lesion Dice-CE summed over deep-supervision levels (weights 1/2^i, targets
resized by nearest neighbour), and the organ head's loss (softmax Dice-CE or CE over the organ
classes, per sample, samples without an organ map masked out).

Empty batches (`training.empty_dice`): a batch Dice over a batch without lesion voxels is
1 - smooth / (sum(p) + smooth), about 1 for any prediction at all, and it falls to 0 only once the
whole batch's probability sums to about `smooth` (1e-5), so its gradient pulls hardest exactly there:
towards predicting nothing anywhere. Trained with lesion-free patches (every sampler gives some,
and most of a whole-body volume is lesion-free), the network collapses to logits of about -60 on
every voxel, where no later lesion batch can lift it (measured: petclick's demo and mid recipes
found nothing at step 0). `ignore` (the default) leaves the Dice term out of such batches, which
then train by cross-entropy alone, as nnU-Net's loss effectively does; `count` keeps MONAI's plain
DiceCE behaviour.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from monai.losses import DeepSupervisionLoss, DiceLoss

from petclick.core.errors import InputError

#: `training.empty_dice` values: what the Dice term does on a batch without lesion voxels.
EMPTY_DICE = ("ignore", "count")


def ds_weights(levels: int, mode: str | list = "halving") -> list[float]:
    """Per-level weights: `halving` gives 1, 1/2, 1/4, ...; a list is used as given."""
    if isinstance(mode, (list, tuple)):
        return [float(w) for w in mode]
    if mode == "halving":
        return [0.5**i for i in range(levels)]
    if mode == "same":
        return [1.0] * levels
    raise ValueError(f"unknown deep-supervision weights {mode!r}; use 'halving', 'same' or a list")


class LesionDiceCE(torch.nn.Module):
    """Sigmoid batch Dice plus binary cross-entropy of one-channel logits (B, 1, ...) against 0/1
    labels; with `empty_dice="ignore"` a batch without lesion voxels gets the cross-entropy only
    (the module docstring says why). No host synchronisation: the Dice term is masked on the device."""

    def __init__(self, lambda_dice: float = 1.0, lambda_ce: float = 1.0, empty_dice: str = "ignore",
                 smooth: float = 1e-5):
        super().__init__()
        if empty_dice not in EMPTY_DICE:
            raise InputError("training.empty_dice", f"must be one of {list(EMPTY_DICE)}, got {empty_dice!r}")
        self.dice = DiceLoss(sigmoid=True, batch=True, smooth_nr=smooth, smooth_dr=smooth)
        self.lambda_dice, self.lambda_ce, self.empty_dice = float(lambda_dice), float(lambda_ce), empty_dice

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = target.to(logits.dtype)
        ce = F.binary_cross_entropy_with_logits(logits, target)
        dice = self.dice(logits, target)
        if self.empty_dice == "ignore":
            dice = dice * (target.sum() > 0).to(dice.dtype)
        return self.lambda_dice * dice + self.lambda_ce * ce


def build_loss(training: Mapping[str, Any], levels: int = 8) -> DeepSupervisionLoss:
    """Sigmoid Dice-CE (LesionDiceCE: batch Dice, binary cross-entropy) over up to `levels` outputs;
    a single tensor output is a plain Dice-CE. `training.loss_weights: {dice: 1, ce: 1}` weighs the
    two; `training.empty_dice` (ignore | count) what batches without lesion voxels do."""
    w = {"dice": 1.0, "ce": 1.0, **dict(training.get("loss_weights") or {})}
    base = LesionDiceCE(float(w["dice"]), float(w["ce"]), str(training.get("empty_dice", "ignore")))
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
