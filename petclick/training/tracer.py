"""Training the learned tracer classifier (petclick.runtime.tracer_model) on a datalist.

Each case's label is the tracer of its id (`fdg_<patient>_<date>` / `psma_<patient>_<date>`,
autoPET's and the phantoms' naming); an id that names no tracer is an InputError naming the
datalist and the case, and both tracers must be present. The MIP inputs are computed once per case
(one PET read each); training is plain cross-entropy with AdamW on those 2D inputs, each batch
randomly mirrored along the in-plane axis (left-right, anterior-posterior are not what tells the
tracers apart) and scaled by up to +-20% in SUV (a calibration change), for a fixed number of
epochs. `head_cuts` adds a copy of every case without its head-most fractions (scans that start
at the neck or chest), so the classifier learns more than the brain the MIP rule reads. The checkpoint records the cases, the settings, the loss of each epoch and the accuracy on
the training cases.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from petclick.core.errors import InputError
from petclick.io.datalist import entry_case_id, load_datalist, parse_case_id, resolve_entry
from petclick.io.images import load_volume
from petclick.runtime.tracer_model import DEFAULT_SIZE, TRACERS, TracerClassifier, without_head

log = logging.getLogger(__name__)


@dataclass
class TracerCase:
    """One training case: its id, its PET file and the tracer its id names."""

    case_id: str
    pet: Path
    tracer: str


@dataclass
class TracerTraining:
    """Training settings (the `petclick train-tracer` options)."""

    epochs: int = 30
    batch_size: int = 8
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    size: tuple[int, int] = DEFAULT_SIZE
    network: str = "resnet"
    network_kwargs: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    head_cuts: tuple[float, ...] = ()        # extra copies of every case without its head-most fraction


def tracer_cases(datalist: str | Path, splits: Sequence[str] = ("training",), dataroot: str | Path | None = None
                 ) -> list[TracerCase]:
    """The cases of `splits` with the tracer of each id; bad ids, missing PET keys or a single tracer
    raise InputError naming the datalist."""
    path = Path(datalist)
    data = load_datalist(path)
    root = Path(dataroot) if dataroot is not None else path.parent
    cases = []
    for split in splits:
        if not isinstance(data.get(split), list):
            raise InputError(path, f"no {split!r} split (has {sorted(k for k, v in data.items() if isinstance(v, list))})")
        for entry in data[split]:
            case = entry_case_id(entry)
            tracer = parse_case_id(case, path).tracer
            if "pet" not in entry:
                raise InputError(path, f"{case}: the entry has no 'pet' file")
            cases.append(TracerCase(case, Path(resolve_entry(entry, root)["pet"]), tracer))
    found = sorted({c.tracer for c in cases})
    if found != sorted(TRACERS):
        raise InputError(path, f"the tracer classifier needs cases of both {' and '.join(TRACERS)}; "
                               f"{'/'.join(splits)} has {found or 'no cases'}")
    return cases


def case_inputs(classifier: TracerClassifier, cases: Sequence[TracerCase], head_cuts: Sequence[float] = ()
                ) -> tuple[np.ndarray, np.ndarray]:
    """(inputs (N, 2, *size), labels (N,)) of the cases: one PET read and two MIPs each, and one more
    input per `head_cuts` fraction (the scan without its head-most fraction: starting at the neck)."""
    xs, ys = [], []
    for c in cases:
        pet = load_volume(c.pet)
        for cut in (0.0, *head_cuts):
            xs.append(classifier.inputs(*without_head(pet.array, pet.affine, cut)))
            ys.append(classifier.tracers.index(c.tracer))
    return np.stack(xs), np.asarray(ys, np.int64)


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random in-plane mirroring and an SUV scale of 0.8-1.2 per sample (log1p space: applied before it)."""
    flip = torch.rand(x.shape[0], generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(2), x)
    scale = 0.8 + 0.4 * torch.rand(x.shape[0], 1, 1, 1, generator=gen)
    return torch.log1p(torch.expm1(x) * scale)


def fit(classifier: TracerClassifier, x: np.ndarray, y: np.ndarray, settings: TracerTraining) -> list[float]:
    """Train `classifier` in place on inputs `x` and labels `y`; returns the mean loss of each epoch."""
    torch.manual_seed(settings.seed)
    gen = torch.Generator().manual_seed(settings.seed)
    model, device = classifier.model, classifier.device
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, settings.epochs))
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    losses = []
    for epoch in range(settings.epochs):
        model.train()
        order = torch.randperm(len(xt), generator=gen)
        total = 0.0
        for start in range(0, len(order), settings.batch_size):
            idx = order[start:start + settings.batch_size]
            if len(idx) < 2:          # batch norm needs two samples
                continue
            xb = _augment(xt[idx], gen).to(device)
            loss = torch.nn.functional.cross_entropy(model(xb), yt[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        sched.step()
        losses.append(total / len(xt))
        log.info("tracer classifier epoch %d/%d: loss %.4f", epoch + 1, settings.epochs, losses[-1])
    model.eval()
    return losses


def accuracy(classifier: TracerClassifier, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Overall and per-tracer accuracy of the classifier on inputs `x` with labels `y`."""
    pred = classifier.probabilities(x).argmax(1)
    out = {"accuracy": float(np.mean(pred == y))}
    for n, tracer in enumerate(classifier.tracers):
        if np.any(y == n):
            out[f"accuracy_{tracer}"] = float(np.mean(pred[y == n] == n))
    return out


def train_tracer(datalist: str | Path, out: str | Path, settings: TracerTraining | None = None,
                 splits: Sequence[str] = ("training",), dataroot: str | Path | None = None) -> dict[str, Any]:
    """Train a tracer classifier on the cases of `splits` and write its checkpoint to `out`
    (atomically); returns the summary (cases per tracer, losses, training accuracy, seconds)."""
    settings = settings or TracerTraining()
    if settings.epochs < 1 or settings.batch_size < 2:
        raise InputError("train-tracer", "needs epochs >= 1 and batch size >= 2")
    cases = tracer_cases(datalist, splits, dataroot)
    t0 = time.perf_counter()
    classifier = TracerClassifier(settings.network, settings.network_kwargs, settings.size, device=settings.device)
    x, y = case_inputs(classifier, cases, settings.head_cuts)
    t1 = time.perf_counter()
    losses = fit(classifier, x, y, settings)
    seconds = time.perf_counter() - t1
    classifier.metrics = {**accuracy(classifier, x, y), "split": "/".join(splits), "final_loss": losses[-1]}
    classifier.training = {**asdict(settings), "size": list(settings.size), "head_cuts": list(settings.head_cuts),
                           "datalist": str(datalist),
                           "splits": list(splits), "cases": [c.case_id for c in cases], "losses": losses,
                           "n_cases": {t: sum(c.tracer == t for c in cases) for t in TRACERS},
                           "seconds_inputs": round(t1 - t0, 2), "seconds_training": round(seconds, 2)}
    path = classifier.save(out)
    return {"checkpoint": str(path), **classifier.metrics, **classifier.training}
