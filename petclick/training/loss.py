"""Dice-CE loss summed over deep-supervision levels (weights 1/2^i, targets resized by nearest neighbour)."""

from __future__ import annotations

from typing import Any, Mapping

from monai.losses import DeepSupervisionLoss, DiceCELoss


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
