"""The ensemble of one case, kept between clicks: what an interactive session re-runs after each click.

Three modes (YAML `infer.incremental` or `--incremental`):
- `naive`: every prediction re-runs every sliding-window tile of every checkpoint.
- `exact`: only tiles whose input changed are re-run. A tile's input changed where it overlaps the
  encoding support of a click added or removed (petclick.clicks.encoding `support_boxes`: every
  encoding is truncated, so supports are finite boxes); the regions those tiles cover (overlapping
  windows merged) are re-blended from cached tile outputs (petclick/runtime/tiles.py), the rest of
  the probability map is kept.
  Equals a full recomputation (tests: max |dp| <= 1e-6).
- `local`: one window per added or removed click, centred on it, run on that crop alone (one
  network pass per checkpoint; windows that overlap blend as one region) and blended into the
  previous probabilities with weights that fall from 1 to 0 over a quarter window
  towards sides inside the image. `update` says what is blended: `replace` (the crop's
  probabilities) or `delta` (the crop's probabilities with the new clicks minus those of the same
  crop with the previous clicks, added to the previous probabilities: what the crop's missing
  context and its own normalisation change cancels out, only the clicks' effect remains, at two
  crop passes per window). When the mask changes within the fade margin of a side, the region
  widens by one more window centred on those changes and reaching half a window past that side (at
  most `max_grow` widenings per click; windows blend by their weights). The window is `window`
  times the group's ROI per axis (rounded down to the network's ROI multiple; 1: the ROI itself),
  so a click costs a fraction of one sliding-window tile. Approximate:
  benchmarks/bench_interactive.py measures its Dice against full recomputation.
- `frozen`: local mode whose crops run with frozen instance-norm statistics
  (petclick.runtime.normstats): every full pass keeps each tile's per-layer, per-channel
  statistics (on CPU through ONNX Runtime's graphs with the statistics as outputs and inputs,
  petclick.runtime.onnxrt; elsewhere through PyTorch hooks); a click's window is placed inside the tile
  nearest the click, on the network's stride lattice of that tile, and runs with that tile's
  statistics, so it answers as its tile would (exact where the window covers the receptive field;
  tests: max |dp| <= 1e-5). A tile without statistics (e.g. after `load_state_dict`) is run once
  to record them. Networks without instance norm run their crops unchanged.

Checkpoints are grouped by their input (preprocessing + click encoding) as in CheckpointSet;
each group keeps the running sum of its members' scaled sigmoid probabilities in the network's
space, mapped onto the PET grid after every update. Every transition journals the values it
overwrote (exact and local), so going back to an earlier click state (undo, reset) restores it
exactly without running any network; naive mode recomputes instead.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from petclick.core.errors import InputError
from petclick.inference.checkpoint_set import MODELS, CheckpointSet, flip_combinations
from petclick.io.clickfile import Clicks
from petclick.io.images import CaseVolumes
from petclick.networks.roi import cover_roi, roi_divisors
from petclick.runtime.clickinput import ClickEncoder, clicks_in_network_space
from petclick.runtime.grid import integer_shift, to_pet_grid
from petclick.runtime.preprocess import PreparedCase
from petclick.runtime.tiles import DEFAULT_CACHE_MB, Box, TileCache, TileCounters, TiledLogits, TileGrid, merge_boxes

log = logging.getLogger(__name__)

MODES = ("naive", "exact", "local", "frozen")
#: Modes that answer a click from crops around it (approximate).
CROP_MODES = ("local", "frozen")
LOCAL_UPDATES = ("replace", "delta")
DEFAULT_JOURNAL_MB = 512


def check_mode(mode: str | None) -> str:
    """A valid incremental mode name (None: exact); anything else raises InputError."""
    mode = "exact" if mode is None else str(mode).strip().lower()
    if mode not in MODES:
        raise InputError("incremental", f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
    return mode


def _key(clicks: Clicks) -> tuple:
    return tuple(map(tuple, clicks.tumor)), tuple(map(tuple, clicks.background))


def _slices(box: Box) -> tuple[slice, ...]:
    return tuple(slice(a, b) for a, b in zip(*box))


def _bbox(boxes: Sequence[Box]) -> Box:
    return (tuple(min(b[0][a] for b in boxes) for a in range(3)), tuple(max(b[1][a] for b in boxes) for a in range(3)))


def _overlap(a: Box, b: Box) -> bool:
    return all(p < s and r < q for p, q, r, s in zip(a[0], a[1], b[0], b[1]))


def overlap_groups(boxes: Sequence[Box]) -> list[list[Box]]:
    """`boxes` split into groups connected by overlaps (a box joins every group it overlaps), in
    the order of their first box."""
    groups: list[list[Box]] = []
    for box in boxes:
        hit = [grp for grp in groups if any(_overlap(box, other) for other in grp)]
        joined = [b for grp in hit for b in grp] + [box]
        groups = [grp for grp in groups if not any(grp is h for h in hit)]
        groups.append(joined)
    order = {b: i for i, b in enumerate(boxes)}
    return sorted(groups, key=lambda grp: min(order[b] for b in grp))


def _union(a: Box | None, b: Box | None) -> Box | None:
    if a is None or b is None:
        return a if b is None else b
    return (tuple(min(p, q) for p, q in zip(a[0], b[0])), tuple(max(p, q) for p, q in zip(a[1], b[1])))


@dataclass
class Member:
    """One checkpoint under one mirroring: its scale in the ensemble and its tiled logits."""

    path: Any
    scale: float
    roi: tuple[int, int, int]
    tiled: TiledLogits


@dataclass
class Group:
    """Checkpoints sharing an input: the prepared case, the encoder, the members and the running sum."""

    prepared: PreparedCase
    encoder: ClickEncoder
    members: list[Member] = field(default_factory=list)
    total: torch.Tensor | None = None          # sum of scale * sigmoid over members, network space
    x: torch.Tensor | None = None              # current input (C, ...)

    @property
    def weight(self) -> float:
        return float(sum(m.scale for m in self.members))

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.prepared.image.shape[1:])  # type: ignore[return-value]


@dataclass
class LocalSettings:
    """Local mode: the window's size (fraction of the ROI per axis), what it blends in (`replace` or
    `delta`, module docstring), its fade margin (fraction of the window) and widenings per click."""

    window: float = 1.0
    update: str = "replace"
    margin: float = 0.25
    max_grow: int = 3

    def __post_init__(self) -> None:
        if not 0 < float(self.window) <= 1:
            raise InputError("infer.local_window", f"must be a number in (0, 1], got {self.window!r}")
        if isinstance(self.max_grow, bool) or not isinstance(self.max_grow, (int, float)) \
                or int(self.max_grow) != self.max_grow or self.max_grow < 0:
            raise InputError("infer.local_max_grow", f"must be a whole number >= 0, got {self.max_grow!r}")
        self.max_grow = int(self.max_grow)
        self.update = str(self.update).strip().lower()
        if self.update not in LOCAL_UPDATES:
            raise InputError("infer.local_update", f"unknown local update {self.update!r}; use one of "
                                                   f"{', '.join(LOCAL_UPDATES)}")


@dataclass
class Transition:
    """One update: the click states it joined and the values of each group's sum it overwrote."""

    before: tuple
    after: tuple
    saved: list[tuple[int, Box, torch.Tensor]]

    @property
    def nbytes(self) -> int:
        return sum(v.numel() * v.element_size() for _, _, v in self.saved)


class EnsembleEngine:
    """Probabilities of a CheckpointSet (an EnsemblePredictor) on one case, updated click by click (module docstring).

    checkpoints / tta_axes: a subset of the predictor's checkpoints and the mirror axes (None: all
    checkpoints, the predictor's own axes). cache_mb: byte limit of the tile cache (exact mode).
    `update(clicks)` -> (probability on the PET grid, PET-grid box that may have changed or None)."""

    def __init__(self, predictor: CheckpointSet, case: CaseVolumes, mode: str = "exact",
                 checkpoints: Sequence[Any] | None = None, tta_axes: Sequence[int] | None = None,
                 cache_mb: float | str | None = DEFAULT_CACHE_MB, journal_mb: float = DEFAULT_JOURNAL_MB,
                 local: LocalSettings | None = None):
        self.predictor, self.case, self.mode = predictor, case, check_mode(mode)
        self.local = local or LocalSettings()
        auto = cache_mb == "auto"
        self.cache = TileCache(None if cache_mb is None or auto else int(float(cache_mb) * 2**20)) \
            if self.mode == "exact" else None
        self.counters = TileCounters()
        self.journal: list[Transition] = []
        self.journal_limit = int(float(journal_mb) * 2**20)
        self.clicks: Clicks | None = None           # clicks of the current state (None: nothing computed)
        self.prob: np.ndarray | None = None
        self.groups = self._groups(list(predictor.checkpoints if checkpoints is None else checkpoints),
                                   predictor.tta_flip_axes if tta_axes is None else tuple(tta_axes))
        self.exact_states: dict[tuple, bool] = {}   # click state -> whether its sums equal a full pass
        self.last_path: str | None = None          # how the latest update was answered (counters)
        self._crop_grids: dict[tuple, TileGrid] = {}  # local and frozen crops' grids by shape
        self.tiles_per_pass = sum(len(m.tiled.grid) for g in self.groups for m in g.members)
        self.voxels_per_pass = sum(len(m.tiled.grid) * int(np.prod(m.roi)) for g in self.groups for m in g.members)
        if auto and self.cache is not None:  # one pass of float32 tile outputs of every member, or refuse
            from petclick.runtime.memory import fit_cache

            self.cache.limit = fit_cache(int(4 * self.voxels_per_pass * 1.05),
                                         f"the exact mode's tile cache ({self.tiles_per_pass} tiles per pass)",
                                         "PETCLICK_TILE_CACHE_MB (or infer.tile_cache_mb, or --incremental local)",
                                         predictor.device)

    # ------------------------------------------------------------------ construction
    def _groups(self, checkpoints: list, tta_axes: Sequence[int]) -> list[Group]:
        p = self.predictor
        groups: list[Group] = []
        flips = flip_combinations(tta_axes)
        for key, members in p._groups(checkpoints).items():
            info = p.info[members[0][0]]
            prepared = p._prepare(self.case, key, info["preprocess"])
            group = Group(prepared, p._encoders.setdefault(key, ClickEncoder(info["encoding"])))
            grids: dict[tuple, TileGrid] = {}       # checkpoints with the same windows share one grid (count map)
            for path, scale in members:
                s, net = p._settings(path), p.info[path]
                roi = cover_roi(s["roi"], group.shape, net["name"], **net["network_kwargs"])
                spec = (tuple(roi), float(s["overlap"]), str(s["mode"]))
                if spec not in grids:
                    grids[spec] = TileGrid(group.shape, roi, s["overlap"], s["mode"], device=p.device)
                grid = grids[spec]
                def load(path=path):        # frozen mode: ONNX Runtime's statistics graphs on CPU
                    return MODELS.get(path, p.device)
                for axes in flips:
                    tiled = TiledLogits(f"{path}|{axes}", load, grid,
                                        flip_axes=axes, sw_batch_size=s["sw_batch_size"], amp=s["amp"],
                                        amp_dtype=s.get("amp_dtype", "float16"), cache=self.cache,
                                        counters=self.counters)
                    if self.mode == "frozen":
                        tiled.norm_record = {}
                    group.members.append(Member(path, scale, roi, tiled))
            groups.append(group)
        return groups

    # ------------------------------------------------------------------ probabilities
    def _region_sum(self, group: Group, box: Box) -> torch.Tensor:
        """Sum over members of scale * sigmoid(logits) over `box` of the group's current input."""
        acc = None
        for m in group.members:
            prob = torch.sigmoid(m.tiled.logits(box))
            acc = prob.mul_(m.scale) if acc is None else acc.add_(prob, alpha=m.scale)
        return acc

    def _set_input(self, group: Group, clicks: Clicks) -> None:
        group.x = group.encoder(group.prepared, clicks, self.predictor.device)
        for m in group.members:
            m.tiled.set_input(group.x)

    def _pet(self) -> np.ndarray:
        total, weight = None, 0.0
        for g in self.groups:
            pet = to_pet_grid(g.total[None], g.prepared.affine, g.prepared.pet_affine, g.prepared.pet_shape)
            total = pet if total is None else total.add_(pet)
            weight += g.weight
        return (total[0] / weight).cpu().numpy().astype(np.float32)

    def _pet_update(self, changes: dict[int, Box | None]) -> np.ndarray:
        """The PET-grid probabilities after an update that changed `changes` (network-space box per
        group): where every group's space is an integer shift of the PET grid, a copy of the
        previous ones with only the changed PET box mapped again (the same values `_pet` gives, at
        a click's cost, not the volume's); else `_pet`."""
        box = self._pet_box(changes)
        if box is None:
            return self.prob
        shifts = [integer_shift(g.prepared.affine, g.prepared.pet_affine) for g in self.groups]
        if self.prob is None or any(t is None for t in shifts):
            return self._pet()
        lo, hi = np.asarray(box[0]), np.asarray(box[1])
        total = torch.zeros(tuple(int(v) for v in hi - lo), dtype=torch.float32)
        weight = 0.0
        for g, t in zip(self.groups, shifts):
            src_lo, src_hi = np.maximum(lo + t, 0), np.minimum(hi + t, np.asarray(g.shape))
            if np.all(src_hi > src_lo):
                dst = tuple(slice(int(a - t_ - l), int(b - t_ - l)) for a, b, t_, l in zip(src_lo, src_hi, t, lo))
                total[dst] += g.total[tuple(slice(int(a), int(b)) for a, b in zip(src_lo, src_hi))].cpu()
            weight += g.weight
        out = self.prob.copy()
        out[_slices(box)] = (total / weight).numpy().astype(np.float32)
        return out

    def _pet_box(self, changes: dict[int, Box | None]) -> Box | None:
        """The PET-grid box holding every changed network-space box (None: nothing changed); the
        whole PET grid where a group's space is not an integer shift of it."""
        out: Box | None = None
        pet_shape = self.case.shape
        for n, box in changes.items():
            if box is None:
                continue
            g = self.groups[n]
            shift = integer_shift(g.prepared.affine, g.prepared.pet_affine)
            if shift is None:
                return (0, 0, 0), tuple(pet_shape)
            lo = tuple(int(max(0, a - t)) for a, t in zip(box[0], shift))
            hi = tuple(int(min(s, b - t)) for b, t, s in zip(box[1], shift, pet_shape))
            if all(h > l for l, h in zip(lo, hi)):
                out = _union(out, (lo, hi))
        return out

    # ------------------------------------------------------------------ updates
    def update(self, clicks: Clicks) -> tuple[np.ndarray, Box | None]:
        """Probabilities for `clicks` on the PET grid, and the PET-grid box that may differ from the
        previous result (None: nothing changed, nothing was computed)."""
        clicks = Clicks(list(clicks.tumor), list(clicks.background))
        if self.clicks is not None and _key(clicks) == _key(self.clicks):
            return self.prob, None
        refused = 0 if self.cache is None else self.cache.refused
        before = None if self.clicks is None else _key(self.clicks)
        if self.clicks is None:
            changes, self.last_path = self._full(clicks), "full"
            exact = True
        elif self._restore(clicks):
            changes, self.last_path = {n: ((0, 0, 0), g.shape) for n, g in enumerate(self.groups)}, "restore"
            exact = self.exact_states.get(_key(clicks), False)
        elif self.mode == "naive":
            changes, self.last_path = self._full(clicks), "naive"
            exact = True
        else:
            changes, self.last_path = self._incremental(clicks), self.mode
            exact = self.mode == "exact" and self.exact_states.get(before, False)
        self.exact_states[_key(clicks)] = exact
        self.clicks = clicks
        self.prob = self._pet() if self.last_path in ("full", "naive", "restore") else self._pet_update(changes)
        if self.cache is not None and self.cache.refused > refused:
            log.warning("tile cache at its limit (%.1f of %.1f MB): %d tile output(s) not kept; they are "
                        "recomputed when a later click needs them", self.cache.bytes / 2**20,
                        self.cache.limit / 2**20, self.cache.refused - refused)
        return self.prob, self._pet_box(changes)

    def _full(self, clicks: Clicks) -> dict[int, Box]:
        for g in self.groups:
            self._set_input(g, clicks)
            for m in g.members:
                m.tiled.invalidate(None)
            g.total = self._region_sum(g, ((0, 0, 0), g.shape))
        if self.mode == "frozen":
            self._warm_frozen()
        return {n: ((0, 0, 0), g.shape) for n, g in enumerate(self.groups)}

    def _incremental(self, clicks: Clicks) -> dict[int, Box | None]:
        saved: list[tuple[int, Box, torch.Tensor]] = []
        changes: dict[int, Box | None] = {}
        for n, g in enumerate(self.groups):
            boxes = g.encoder.changed_boxes(g.prepared, self.clicks, clicks)
            x_before = g.x
            self._set_input(g, clicks)
            if not boxes:
                changes[n] = None
                continue
            if self.mode == "exact":
                regions = merge_boxes(r for m in g.members for r in m.tiled.invalidate(boxes))
                changes[n] = None
                for region in regions:
                    saved.append((n, region, g.total[_slices(region)].clone()))
                    g.total[_slices(region)] = self._region_sum(g, region)
                    changes[n] = _union(changes[n], region)
            else:
                changes[n] = self._local(n, g, self.clicks, clicks, saved, x_before)
        self._push(Transition(_key(self.clicks), _key(clicks), saved))
        return changes

    # ------------------------------------------------------------------ local mode
    @property
    def exact(self) -> bool:
        """Whether the current probabilities equal a full pass (naive, exact, or a state reached so)."""
        return self.clicks is not None and self.exact_states.get(_key(self.clicks), False)

    def _windows(self, g: Group, before: Clicks, after: Clicks) -> list[list[Box]]:
        """Windows of the local ROI centred on each click added or removed (frozen: snapped into
        the tile nearest the click), grouped where they overlap (each group is blended as one
        region; every window stays one network pass)."""
        roi = self._local_roi(g)
        shape = np.asarray(g.shape)
        old, new = clicks_in_network_space(g.prepared, before), clicks_in_network_space(g.prepared, after)
        boxes: list[Box] = []
        for kind in ("tumor", "background"):
            a, b = Counter(map(tuple, old[kind].tolist())), Counter(map(tuple, new[kind].tolist()))
            for p in ((a - b) + (b - a)):
                size = np.minimum(roi, shape)
                lo = np.clip(np.floor(np.asarray(p)).astype(int) - size // 2, 0, shape - size)
                if self.mode == "frozen":
                    lo = self._snap(g, np.asarray(p, dtype=float), lo, size)
                box = (tuple(int(v) for v in lo), tuple(int(v) for v in lo + size))
                if box not in boxes:
                    boxes.append(box)
        return overlap_groups(boxes)

    def _divisor(self, g: Group) -> np.ndarray:
        """The largest ROI divisor (stride lattice) over the group's member networks, per axis."""
        info = self.predictor.info
        return np.max([roi_divisors(info[m.path]["name"], **info[m.path]["network_kwargs"]) for m in g.members], axis=0)

    def _snap(self, g: Group, point: np.ndarray, lo: np.ndarray, size: np.ndarray) -> np.ndarray:
        """Frozen mode: a window corner inside one unmirrored tile of the group's first member, on
        that tile's stride lattice, as near `lo` as that allows; of all tiles the one that leaves the
        window's centre nearest `point` (axes where a tile is padded keep `lo`)."""
        grid = g.members[0].tiled.grid
        starts = grid.starts - np.asarray(grid.pad_lo)
        roi = np.asarray(grid.roi)
        div = self._divisor(g)
        shape = np.asarray(g.shape)
        best, best_d = lo, None
        for tile in starts:
            out = lo.copy()
            for a in range(3):
                if tile[a] < 0 or size[a] > roi[a]:
                    continue
                k = int(round((lo[a] - tile[a]) / div[a]))
                k = min(max(k, 0), int((roi[a] - size[a]) // div[a]))
                out[a] = min(tile[a] + k * div[a], shape[a] - size[a])
            d = float((((out + size / 2.0) - point) ** 2).sum())
            if best_d is None or d < best_d:
                best, best_d = out, d
        return best

    @staticmethod
    def _frozen_tile(t: TiledLogits, box: Box) -> int:
        """The tile of `t` holding the most of `box` (ties: centre nearest the box's)."""
        grid = t.grid
        own = grid.flip_box(box, t.flip_axes)
        idx = grid.touching([own])
        if len(idx) == 0:
            idx = np.arange(len(grid))
        starts = grid.starts[idx] - np.asarray(grid.pad_lo)
        roi = np.asarray(grid.roi)
        lo, hi = np.asarray(own[0]), np.asarray(own[1])
        vol = np.prod(np.clip(np.minimum(starts + roi, hi) - np.maximum(starts, lo), 0, None), axis=1)
        dist = ((starts + roi / 2.0 - (lo + hi) / 2.0) ** 2).sum(axis=1)
        return int(idx[np.lexsort((dist, -vol))[0]])

    def _tile_stats(self, t: TiledLogits, index: int) -> list:
        """The instance-norm statistics of tile `index` (recorded at the last full pass; run once
        on the current input when none are)."""
        if index not in t.norm_record:
            t._compute([index])
        return t.norm_record[index]

    def _local_roi(self, g: Group) -> np.ndarray:
        """Size of a local window of group `g`: `window` times its largest ROI per axis, rounded down
        to a multiple of every member network's ROI divisor (at least one multiple)."""
        roi = np.max([m.roi for m in g.members], axis=0)
        if self.local.window >= 1:
            return roi
        info = self.predictor.info
        div = np.max([roi_divisors(info[m.path]["name"], **info[m.path]["network_kwargs"]) for m in g.members], axis=0)
        return np.maximum(div, (np.floor(roi * float(self.local.window) / div) * div).astype(int))

    def _fade(self, box: Box, shape: Sequence[int], margin: np.ndarray, device) -> torch.Tensor:
        """Blending weight over `box`: 1 inside, falling linearly to 0 over `margin` voxels towards
        every side that lies inside the image (sides on the image border keep 1)."""
        ramps = []
        for a in range(3):
            n, m = box[1][a] - box[0][a], max(1, int(margin[a]))
            r = torch.ones(n, dtype=torch.float32, device=device)
            i = torch.arange(n, dtype=torch.float32, device=device)
            if box[0][a] > 0:
                r = torch.minimum(r, (i + 0.5) / m)
            if box[1][a] < shape[a]:
                r = torch.minimum(r, (n - i - 0.5) / m)
            ramps.append(r)
        return ramps[0][:, None, None] * ramps[1][None, :, None] * ramps[2][None, None, :]

    def _crop_sums(self, g: Group, box: Box, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Per input of `inputs` (whole-group inputs (C, ...)), the sum of scale * sigmoid over
        members run on its crop `box` alone; each member runs the crops of every input in one
        network call (the delta update's two inputs: one batch of two)."""
        crops = [x[(slice(None), *_slices(box))] for x in inputs]
        shape = tuple(b - a for a, b in zip(*box))
        acc: list[torch.Tensor | None] = [None] * len(crops)
        local = tuple(int(v) for v in self._local_roi(g))
        for m in g.members:
            t = m.tiled
            roi = local if self.local.window < 1 else m.roi    # a member with a smaller ROI tiles the window
            tl = t.on_grid(self._crop_grid(shape, tuple(int(v) for v in roi), t.grid, g.x.device))
            if self.mode == "frozen":
                tl.norm_frozen = self._tile_stats(t, self._frozen_tile(t, box))
            for k, logits in enumerate(tl.logits_of(crops)):
                prob = torch.sigmoid(logits)
                acc[k] = prob.mul_(m.scale) if acc[k] is None else acc[k].add_(prob, alpha=m.scale)
        return acc  # type: ignore[return-value]

    def _crop_grid(self, shape: tuple, roi: tuple, like: TileGrid, device) -> TileGrid:
        """The tile grid of a crop (kept per shape and ROI: its blending weights are built once)."""
        key = (shape, roi, like.overlap, like.mode, like.sigma_scale, str(device))
        if key not in self._crop_grids:
            self._crop_grids[key] = TileGrid(shape, roi, like.overlap, like.mode, like.sigma_scale, device=device)
        return self._crop_grids[key]

    def _warm_frozen(self) -> None:
        """Frozen mode, after a full pass: open each member's frozen-statistics graph and check it on
        a crop of the local window's shape now, so the first click does not pay for it."""
        for g in self.groups:
            roi = tuple(int(v) for v in self._local_roi(g))         # a crop's window: zero-padded to it
            part = tuple(min(r, s) for r, s in zip(roi, g.shape))
            x = g.x.as_tensor() if hasattr(g.x, "as_tensor") else g.x
            crop = x.new_zeros((x.shape[0], *roi))
            crop[(slice(None), *(slice(0, r) for r in part))] = x[(slice(None), *(slice(0, r) for r in part))]
            for m in g.members:
                net = m.tiled.model()
                if hasattr(net, "frozen_logits") and crop.device.type == "cpu" and m.tiled.norm_record:
                    net.frozen_logits(crop[None], next(iter(m.tiled.norm_record.values())))

    def _window_value(self, g: Group, box: Box, x_before: torch.Tensor | None) -> torch.Tensor:
        """What a local window blends in: the crop's probability sum (replace), or its change from
        the previous input `x_before` to the current one (delta; both crops in one batch)."""
        if x_before is None:
            return self._crop_sums(g, box, [g.x])[0]
        after, before = self._crop_sums(g, box, [g.x, x_before])
        return after.sub_(before)

    def _local(self, n: int, g: Group, before: Clicks, after: Clicks, saved: list,
               x_before: torch.Tensor | None = None) -> Box | None:
        """Local update of group `n`: per changed click a window, widened window by window (module
        docstring); returns the region changed (None: none). `x_before`: the input of `before`
        (needed by the delta update)."""
        shape = np.asarray(g.shape)
        roi = np.minimum(self._local_roi(g), shape)
        margin = np.maximum(1, (roi * self.local.margin).astype(int))
        weight, changed = g.weight, None
        delta = self.local.update == "delta"
        ref = x_before if delta else None
        for cluster in self._windows(g, before, after):
            windows, sums = list(cluster), [self._window_value(g, w, ref) for w in cluster]
            for grown in range(self.local.max_grow + 1):
                region = _bbox(windows)
                sl = _slices(region)
                old = g.total[sl]
                num, den = torch.zeros_like(old), torch.zeros_like(old)
                for w, total in zip(windows, sums):
                    f = self._fade(w, g.shape, margin, old.device)
                    inner = tuple(slice(a - r, b - r) for a, b, r in zip(w[0], w[1], region[0]))
                    num[inner] += f * total
                    den[inner] += f
                cover = den.clamp(max=1.0)
                if delta:
                    new = (old + torch.where(den > 0, num / den.clamp_min(1e-12), 0.0) * cover).clamp_(0.0, weight)
                else:
                    new = old * (1 - cover) + torch.where(den > 0, num / den.clamp_min(1e-12), old) * cover
                if grown == self.local.max_grow:
                    break
                flips = (new >= 0.5 * weight) != (old >= 0.5 * weight)
                extra = [w for w in self._widen(region, flips, shape, roi, margin) if w not in windows]
                if not extra:
                    break
                windows += extra
                sums += [self._window_value(g, w, ref) for w in extra]
            saved.append((n, region, old.clone()))
            g.total[sl] = new
            changed = _union(changed, region)
        return changed

    @staticmethod
    def _widen(region: Box, flips: torch.Tensor, shape: np.ndarray, roi: np.ndarray, margin: np.ndarray) -> list[Box]:
        """One more window per side of `region` inside the image where the mask changed within
        `margin` of that side: centred on those changes, reaching half a window past the side."""
        out = []
        for a in range(3):
            for side in (0, 1):
                edge = region[side][a]
                if (side == 0 and edge <= 0) or (side == 1 and edge >= shape[a]):
                    continue
                m = int(min(margin[a], flips.shape[a]))
                band = flips.narrow(a, 0 if side == 0 else flips.shape[a] - m, m)
                if not bool(band.any()):
                    continue
                idx = torch.nonzero(band).float().mean(0).cpu().numpy()
                centre = idx + np.asarray(region[0], dtype=float)
                centre[a] = edge
                lo = np.clip(np.floor(centre).astype(int) - roi // 2, 0, shape - roi)
                out.append((tuple(int(v) for v in lo), tuple(int(v) for v in lo + roi)))
        return out

    # ------------------------------------------------------------------ journal
    def _push(self, t: Transition) -> None:
        self.journal.append(t)
        while self.journal and sum(j.nbytes for j in self.journal) > self.journal_limit:
            self.journal.pop(0)
            log.info("undo journal over %d MB: oldest step forgotten (undo past it recomputes)",
                     self.journal_limit // 2**20)

    def _restore(self, clicks: Clicks) -> bool:
        """Go back to an earlier journalled click state (undo, reset) by restoring the saved values;
        False when `clicks` is no such state."""
        target = _key(clicks)
        idx = next((k for k in range(len(self.journal) - 1, -1, -1) if self.journal[k].before == target), None)
        if idx is None or self.journal[-1].after != _key(self.clicks):
            return False
        for t in reversed(self.journal[idx:]):
            for n, box, values in reversed(t.saved):
                self.groups[n].total[_slices(box)] = values
        del self.journal[idx:]
        for g in self.groups:  # tiles computed for the undone clicks no longer match the input
            boxes = g.encoder.changed_boxes(g.prepared, self.clicks, clicks)
            self._set_input(g, clicks)
            for m in g.members:
                if boxes:
                    m.tiled.invalidate(boxes)
        return True

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """What a fresh process needs to continue exactly: each group's running sum, the journal and
        the clicks they belong to (tile outputs are not saved: recomputed where needed)."""
        return {"mode": self.mode, "clicks": None if self.clicks is None else self.clicks.to_dict(),
                "totals": [None if g.total is None else g.total.cpu() for g in self.groups],
                "journal": [{"before": [list(map(list, k)) for k in t.before],
                             "after": [list(map(list, k)) for k in t.after],
                             "saved": [(n, [list(b[0]), list(b[1])], v.cpu()) for n, b, v in t.saved]}
                            for t in self.journal],
                "exact_states": [[list(map(list, k)) for k in key] for key, ok in self.exact_states.items() if ok],
                "norm_stats": [[{int(i): [(mu.cpu(), var.cpu()) for mu, var in st] for i, st in m.tiled.norm_record.items()}
                                for m in g.members] if self.mode == "frozen" else None for g in self.groups]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from `state_dict()`: the next update re-runs only what its clicks change
        (exact: the tiles overlapping that region, none of them cached yet)."""
        if state.get("clicks") is None:
            return
        if len(state["totals"]) != len(self.groups):
            raise InputError("session state", "saved state belongs to another model set")
        dev = self.predictor.device

        def key(lists):
            return tuple(tuple(tuple(p) for p in k) for k in lists)

        for g, total in zip(self.groups, state["totals"]):
            if tuple(total.shape) != g.shape:
                raise InputError("session state", "saved state belongs to another case or preprocessing")
            g.total = total.to(dev)
        self.journal = [Transition(key(t["before"]), key(t["after"]),
                                   [(int(n), (tuple(b[0]), tuple(b[1])), v.to(dev)) for n, b, v in t["saved"]])
                        for t in state["journal"]]
        self.exact_states = {key(k): True for k in state.get("exact_states", [])}
        for g, stats in zip(self.groups, state.get("norm_stats") or [None] * len(self.groups)):
            if stats is not None and self.mode == "frozen" and len(stats) == len(g.members):
                for m, tiles in zip(g.members, stats):
                    m.tiled.norm_record = {int(i): [(mu.to(dev), var.to(dev)) for mu, var in st] for i, st in tiles.items()}
        c = state["clicks"]
        self.clicks = Clicks([tuple(p) for p in c["tumor"]], [tuple(p) for p in c["background"]])
        for g in self.groups:
            self._set_input(g, self.clicks)
            for m in g.members:
                m.tiled.invalidate(None)        # nothing cached in this process
        self.prob = self._pet()

    @property
    def cache_bytes(self) -> int:
        return 0 if self.cache is None else self.cache.bytes
