"""The lesion loss: batch Dice-CE whose Dice term leaves lesion-free batches out by default."""

import pytest
import torch
import torch.nn.functional as F

from petclick.core.errors import InputError
from petclick.training.loss import LesionDiceCE, build_loss


def _logits(seed: int = 0, shape=(2, 1, 8, 8, 8)) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)) - 2.0


def test_empty_batch_is_cross_entropy_only_by_default():
    x, y = _logits(), torch.zeros(2, 1, 8, 8, 8)
    loss = LesionDiceCE()(x, y)
    assert loss.item() == pytest.approx(F.binary_cross_entropy_with_logits(x, y).item(), rel=1e-6)
    counted = LesionDiceCE(empty_dice="count")(x, y)
    assert counted.item() == pytest.approx(loss.item() + 1.0, abs=1e-4)  # MONAI's batch Dice: ~1 for any prediction


def test_lesion_batch_counts_the_dice_term():
    x, y = _logits(1), torch.zeros(2, 1, 8, 8, 8)
    y[0, 0, 2:5, 2:5, 2:5] = 1
    p = torch.sigmoid(x)
    dice = 1 - (2 * (p * y).sum() + 1e-5) / (p.sum() + y.sum() + 1e-5)
    expected = dice + F.binary_cross_entropy_with_logits(x, y)
    assert LesionDiceCE()(x, y).item() == pytest.approx(expected.item(), rel=1e-5)
    assert LesionDiceCE(lambda_dice=0.5, lambda_ce=2.0)(x, y).item() == pytest.approx(
        (0.5 * dice + 2 * F.binary_cross_entropy_with_logits(x, y)).item(), rel=1e-5)


def test_empty_batch_gradient_does_not_pull_towards_nothing():
    """The collapse mechanism: with `count`, an empty batch whose prediction is already tiny gets a
    gradient far larger than cross-entropy's; with `ignore` it gets cross-entropy's only."""
    y = torch.zeros(1, 1, 8, 8, 8)
    grads = {}
    for mode in ("ignore", "count"):
        x = torch.full((1, 1, 8, 8, 8), -16.0, requires_grad=True)  # sum(p) ~ 6e-5, near the Dice smoothing
        LesionDiceCE(empty_dice=mode)(x, y).backward()
        grads[mode] = x.grad.abs().sum().item()
    assert grads["count"] > 100 * grads["ignore"]


def test_deep_supervision_and_options():
    loss = build_loss({"ds_weights": "halving"})
    x, y = [_logits(2), _logits(3, (2, 1, 4, 4, 4))], torch.zeros(2, 1, 8, 8, 8)
    ce0 = F.binary_cross_entropy_with_logits(x[0], y)
    ce1 = F.binary_cross_entropy_with_logits(x[1], torch.zeros(2, 1, 4, 4, 4))
    assert loss(x, y).item() == pytest.approx((ce0 + 0.5 * ce1).item(), rel=1e-5)
    with pytest.raises(InputError, match="empty_dice"):
        build_loss({"empty_dice": "sometimes"})
