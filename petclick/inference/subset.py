"""Fewer checkpoints: the K of an ensemble whose mean agrees best with the whole ensemble, chosen
on validation cases (never the cases they are then measured on).

`choose_subset` computes every checkpoint's probability at each scored click state of each
validation case and adds checkpoints greedily: each round the one whose addition gives the subset
mean that best agrees with the whole ensemble's answer by `criterion` (CRITERIA):
- `mask` (the default): the mean over the states of the Dice of the two masks (prob >= 0.5);
- `worst-mask`: the smallest of those Dice (the subset's worst state);
- `prob`: minus the mean |dp| over the voxels where some checkpoint reaches SUPPORT.
`steps` names the click states scored: `ends` (the default: no clicks and all the case's clicks,
the protocol's first and last steps, each one full pass per checkpoint) or `protocol` (every step
of the official protocol, 0..10 clicks of each kind: the answers the subset will have to match,
computed by exact re-inference, petclick.inference.engine, one pass plus the re-run tiles per step).
Probabilities are kept only where some checkpoint reaches SUPPORT (a mask needs prob >= 0.5 in at
least one checkpoint), so every case and state costs a few megabytes.

The result (ordered by when each was chosen, so its first k are the best k found) goes to a session
as `checkpoints` (every click on K checkpoints) or `fast_checkpoints` (the fast step 0), and is
written as JSON by `write_subset` / read by `read_subset` (paths relative to the file's folder
where they lie below it). `prefix_report` scores every prefix of the order (K = 1..k) against the
whole ensemble and, where the cases have labels, against them: the smallest K that stays within a
tolerance is read off it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from petclick.core.errors import InputError
from petclick.inference.predictor import EnsemblePredictor
from petclick.io.clickfile import Clicks
from petclick.io.images import CaseVolumes
from petclick.runtime.grid import to_pet_grid
from petclick.runtime.subsetfile import read_subset, read_subset_file, write_subset  # noqa: F401 (the file format)

#: How a subset's agreement with the whole ensemble is scored (module docstring).
CRITERIA = ("mask", "worst-mask", "prob")
#: Which click states are scored: the protocol's first and last, or all of its steps.
STEP_CHOICES = ("ends", "protocol")
#: Probabilities are kept where some checkpoint reaches this (every mask voxel of every subset).
SUPPORT = 0.25
PROTOCOL_STEPS = 11


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.count_nonzero(a & b)) / total


@dataclass
class SubsetData:
    """Per scored state (case and click state): each checkpoint's weighted probability and weight on
    the state's support voxels, the state's label voxels there and in all (None: no label)."""

    checkpoints: list[Path]
    probs: list[np.ndarray] = field(default_factory=list)        # per state (checkpoints, voxels) float32
    weights: np.ndarray | None = None                             # per checkpoint: sum of its members' scales
    labels: list[tuple[np.ndarray, int] | None] = field(default_factory=list)
    states: list[tuple[int, int]] = field(default_factory=list)   # (case index, step)

    def mean(self, chosen: Sequence[int], s: int) -> np.ndarray:
        """The mean probability of the checkpoints `chosen` at state `s` (support voxels)."""
        idx = list(chosen)
        return self.probs[s][idx].sum(axis=0) / float(self.weights[idx].sum())

    def full(self, s: int) -> np.ndarray:
        return self.mean(range(len(self.checkpoints)), s)


def check_criterion(criterion: str, steps: str) -> tuple[str, str]:
    """Valid (criterion, steps) names; anything else raises InputError."""
    if criterion not in CRITERIA:
        raise InputError("subset", f"unknown criterion {criterion!r}; use one of {', '.join(CRITERIA)}")
    if steps not in STEP_CHOICES:
        raise InputError("subset", f"unknown steps {steps!r}; use one of {', '.join(STEP_CHOICES)}")
    return criterion, steps


def _state_clicks(clicks: Clicks, steps: str) -> list[tuple[int, Clicks]]:
    if steps == "ends":
        return [(0, Clicks()), (PROTOCOL_STEPS - 1, clicks)]
    return [(k, clicks.first(k)) for k in range(PROTOCOL_STEPS)]


def checkpoint_probabilities(predictor: EnsemblePredictor, cases: Sequence[tuple[CaseVolumes, Clicks]],
                             steps: str = "ends") -> SubsetData:
    """Every checkpoint's probability (mean over its mirrorings, as the engine weighs them) at each
    scored state of each case, on the PET grid, kept where some checkpoint reaches SUPPORT. One
    exact-mode engine per case (petclick.inference.engine): each state re-runs only the tiles
    its clicks change."""
    from petclick.inference.engine import EnsembleEngine

    ckpts = list(predictor.checkpoints)
    data = SubsetData([Path(c) for c in ckpts])
    index = {Path(c): i for i, c in enumerate(ckpts)}
    for n, (case, clicks) in enumerate(cases):
        engine = EnsembleEngine(predictor, case, "exact", cache_mb=None)
        weights = np.zeros(len(ckpts), np.float64)
        for g in engine.groups:
            for m in g.members:
                weights[index[Path(m.path)]] += m.scale
        data.weights = weights
        label = None if case.label is None else np.asarray(case.label.array) != 0
        for step, c in _state_clicks(clicks, steps):
            engine.update(c)
            per: list[list[tuple[Any, torch.Tensor]]] = [[] for _ in ckpts]     # (group, scale * sigmoid) per member
            for g in engine.groups:
                whole = ((0, 0, 0), g.shape)
                for m in g.members:
                    per[index[Path(m.path)]].append((g, torch.sigmoid(m.tiled.logits(whole)).mul_(m.scale)))

            def on_pet(i: int) -> torch.Tensor:
                out = None
                for g, p in per[i]:
                    pet = to_pet_grid(p[None], g.prepared.affine, g.prepared.pet_affine, g.prepared.pet_shape)[0]
                    out = pet if out is None else out.add_(pet)
                return out

            top = None
            for i in range(len(ckpts)):
                q = on_pet(i).div_(float(weights[i]))
                top = q if top is None else torch.maximum(top, q, out=top)
            support = (top >= SUPPORT).numpy()
            data.probs.append(np.stack([on_pet(i).numpy()[support] for i in range(len(ckpts))]).astype(np.float32))
            data.labels.append(None if label is None else (label[support], int(label.sum())))
            data.states.append((n, step))
    return data


def _score(data: SubsetData, chosen: Sequence[int], criterion: str, full: list[np.ndarray]) -> float:
    if criterion == "prob":
        return -float(np.mean([np.abs(data.mean(chosen, s) - full[s]).mean() if full[s].size else 0.0
                               for s in range(len(full))]))
    dice = [_dice(data.mean(chosen, s) >= 0.5, full[s] >= 0.5) for s in range(len(full))]
    return float(np.min(dice) if criterion == "worst-mask" else np.mean(dice))


def greedy_order(data: SubsetData, k: int, criterion: str = "mask") -> list[int]:
    """Indices of `k` checkpoints added greedily by `criterion` (module docstring)."""
    check_criterion(criterion, "ends")
    full = [data.full(s) for s in range(len(data.probs))]
    chosen: list[int] = []
    for _ in range(int(k)):
        best, best_score = None, None
        for i in range(len(data.checkpoints)):
            if i in chosen:
                continue
            score = _score(data, chosen + [i], criterion, full)
            if best_score is None or score > best_score:
                best, best_score = i, score
        chosen.append(best)
    return chosen


def choose_subset(predictor: EnsemblePredictor, cases: Sequence[tuple[CaseVolumes, Clicks]], k: int,
                  criterion: str = "mask", steps: str = "ends", data: SubsetData | None = None) -> list[Path]:
    """The `k` checkpoints of `predictor` chosen greedily on the validation `cases` by `criterion`
    over the click states `steps` (module docstring); `data`: their probabilities, if computed."""
    ckpts = list(predictor.checkpoints)
    check_criterion(criterion, steps)
    if not 1 <= int(k) <= len(ckpts):
        raise InputError("subset", f"k must lie in 1..{len(ckpts)}, got {k}")
    if not cases:
        raise InputError("subset", "no validation case")
    data = data if data is not None else checkpoint_probabilities(predictor, cases, steps)
    return [Path(ckpts[i]) for i in greedy_order(data, k, criterion)]


def prefix_report(data: SubsetData, order: Sequence[Path]) -> list[dict[str, Any]]:
    """For K = 1..len(order): the first K's agreement with the whole ensemble over the scored
    states (mean and worst mask Dice, mean |dp| on the support) and, where every state has a label,
    the largest per-step difference of its mean Dice against the label from the ensemble's, and
    the difference of their sums over the steps (the protocol's Dice AUC where every step is scored)."""
    index = {c: i for i, c in enumerate(data.checkpoints)}
    idx = [index[Path(c)] for c in order]
    full = [data.full(s) for s in range(len(data.probs))]
    steps = sorted({st for _, st in data.states})
    out = []
    for k in range(1, len(idx) + 1):
        chosen = idx[:k]
        row: dict[str, Any] = {"k": k}
        dice = [_dice(data.mean(chosen, s) >= 0.5, full[s] >= 0.5) for s in range(len(full))]
        row.update(mask_dice_mean=float(np.mean(dice)), mask_dice_worst=float(np.min(dice)),
                   mean_abs_dp=float(np.mean([np.abs(data.mean(chosen, s) - full[s]).mean() if full[s].size else 0.0
                                              for s in range(len(full))])))
        if all(lab is not None for lab in data.labels):
            diff = {st: [] for st in steps}
            for s, (case_n, st) in enumerate(data.states):
                lab, total = data.labels[s]
                sub, ens = data.mean(chosen, s) >= 0.5, full[s] >= 0.5
                d_sub = 2 * int(np.count_nonzero(sub & lab)) / max(1, int(sub.sum()) + total)
                d_ens = 2 * int(np.count_nonzero(ens & lab)) / max(1, int(ens.sum()) + total)
                diff[st].append(d_sub - d_ens)
            curve = np.array([np.mean(diff[st]) for st in steps])
            row.update(label_dice_step_gap=float(np.abs(curve).max()), label_dice_sum_gap=float(curve.sum()))
        out.append(row)
    return out
