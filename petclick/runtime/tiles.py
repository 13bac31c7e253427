"""Sliding window by tiles: MONAI's windows and blending, with each tile's output kept for reuse.

`TileGrid` lays out exactly the windows of MONAI's `sliding_window_inference` for an image shape
(the same padding of images smaller than the ROI, scan interval, `dense_patch_slices` order and
importance map), so blending its tiles in order gives MONAI's result (tests: max |d logit| <= 1e-5).

`TiledLogits` runs one network (optionally mirrored along flip axes) over one input that changes
between calls, e.g. when clicks are added: `invalidate(boxes)` marks every tile whose window
overlaps a changed box of the input and returns the region whose logits can change (the bounding
box of those tiles); `logits(lo, hi)` blends the region from the tiles overlapping it, computing
only the tiles that are invalid or not cached. A tile's output depends only on its window's input
(the networks are evaluated in eval mode), so the result equals a full recomputation.

`TileCache` holds the tile outputs of every network of a session under one byte limit. Past the
limit, new tiles are not stored: they are recomputed whenever a region needs them, and the
session logs how many (never an out-of-memory error).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from monai.data.utils import compute_importance_map, dense_patch_slices

from petclick.runtime import normstats
from petclick.runtime.window import window_logits

log = logging.getLogger(__name__)

Box = tuple[tuple[int, int, int], tuple[int, int, int]]  # (lo, hi) voxel corners, hi exclusive
DEFAULT_CACHE_MB = 2048   # tile-cache limit when neither the checkpoints nor the user set one


def merge_boxes(boxes: Iterable[Box]) -> list[Box]:
    """Boxes merged into the bounding boxes of groups that overlap, so that no two results overlap."""
    out: list[Box] = [(tuple(b[0]), tuple(b[1])) for b in boxes]  # type: ignore[misc]
    merged = True
    while merged:
        merged = False
        for i in range(len(out)):
            for j in range(i + 1, len(out)):
                a, b = out[i], out[j]
                if all(p < s and r < q for p, q, r, s in zip(a[0], a[1], b[0], b[1])):
                    out[i] = (tuple(min(p, q) for p, q in zip(a[0], b[0])), tuple(max(p, q) for p, q in zip(a[1], b[1])))
                    out.pop(j)
                    merged = True
                    break
            if merged:
                break
    return out


def scan_interval(image_size: Sequence[int], roi: Sequence[int], overlap: float) -> tuple[int, ...]:
    """MONAI's scan interval: the ROI where it equals the image, else int(roi * (1 - overlap)) (>= 1)."""
    return tuple(int(r) if r == s else max(1, int(r * (1 - float(overlap)))) for s, r in zip(image_size, roi))


class TileGrid:
    """The windows of MONAI's sliding window over an image of `shape` (see module docstring).

    Coordinates: `starts` are window corners in the padded image; boxes given to and returned by
    the methods are in the unpadded image. `weight` is the importance map of one window, `count`
    the summed weights over the padded image (computed once)."""

    def __init__(self, shape: Sequence[int], roi: Sequence[int], overlap: float, mode: str = "gaussian",
                 sigma_scale: float = 0.125, device: torch.device | str = "cpu"):
        self.shape = tuple(int(s) for s in shape)
        self.roi = tuple(int(r) for r in roi)
        self.overlap, self.mode, self.sigma_scale = float(overlap), str(mode), float(sigma_scale)
        self.pad_lo = tuple(max(r - s, 0) // 2 for s, r in zip(self.shape, self.roi))
        self.padded = tuple(max(s, r) for s, r in zip(self.shape, self.roi))
        interval = scan_interval(self.padded, self.roi, overlap)
        slices = dense_patch_slices(self.padded, self.roi, interval)
        self.starts = np.array([[int(s.start) for s in sl] for sl in slices], dtype=np.int64).reshape(-1, 3)
        self.weight = compute_importance_map(self.roi, mode=mode, sigma_scale=sigma_scale, device=device,
                                             dtype=torch.float32)
        self.device = torch.device(device)
        self._count: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.starts)

    @property
    def nbytes(self) -> int:
        """Bytes the grid holds: its window weight and, once computed, the count map of the padded image."""
        held = [self.weight] + ([] if self._count is None else [self._count])
        return sum(t.numel() * t.element_size() for t in held)

    @property
    def count(self) -> torch.Tensor:
        """Sum of the window weights over the padded image, accumulated in window order as MONAI does."""
        if self._count is None:
            count = torch.zeros(self.padded, dtype=torch.float32, device=self.device)
            for s in self.starts:
                count[tuple(slice(int(a), int(a) + r) for a, r in zip(s, self.roi))] += self.weight
            self._count = count
        return self._count

    def touching(self, boxes: Iterable[Box]) -> np.ndarray:
        """Indices (ascending) of the windows overlapping any of `boxes` (unpadded coordinates)."""
        hit = np.zeros(len(self), dtype=bool)
        roi, pad = np.asarray(self.roi), np.asarray(self.pad_lo)
        for lo, hi in boxes:
            plo, phi = np.asarray(lo) + pad, np.asarray(hi) + pad
            if np.any(phi <= plo):
                continue
            hit |= np.all((self.starts < phi) & (self.starts + roi > plo), axis=1)
        return np.flatnonzero(hit)

    def bbox(self, indices: Sequence[int]) -> Box | None:
        """The unpadded region covered by the given windows (clipped to the image); None for none."""
        if len(indices) == 0:
            return None
        s = self.starts[np.asarray(indices)]
        lo = np.maximum(s.min(axis=0) - np.asarray(self.pad_lo), 0)
        hi = np.minimum(s.max(axis=0) + np.asarray(self.roi) - np.asarray(self.pad_lo), np.asarray(self.shape))
        return tuple(int(v) for v in lo), tuple(int(v) for v in hi)  # type: ignore[return-value]

    def flip_box(self, box: Box, axes: Sequence[int]) -> Box:
        """The same voxels after mirroring the image along `axes`."""
        lo, hi = list(box[0]), list(box[1])
        for a in axes:
            lo[a], hi[a] = self.shape[a] - box[1][a], self.shape[a] - box[0][a]
        return tuple(lo), tuple(hi)  # type: ignore[return-value]

    def window_input(self, x: torch.Tensor, index: int, flip_axes: Sequence[int] = ()) -> torch.Tensor:
        """Window `index` of the image `x` (C, *shape) mirrored along `flip_axes` and zero-padded as
        MONAI pads it: (C, *roi), without building the padded or mirrored volume."""
        out = x.new_zeros((x.shape[0], *self.roi))
        dst, src = [slice(None)], [slice(None)]
        for a in range(3):
            w0 = int(self.starts[index, a]) - self.pad_lo[a]          # window start in the unpadded (mirrored) image
            f0, f1 = max(w0, 0), min(w0 + self.roi[a], self.shape[a])
            dst.append(slice(f0 - w0, f1 - w0))
            src.append(slice(self.shape[a] - f1, self.shape[a] - f0) if a in flip_axes else slice(f0, f1))
        block = x[tuple(src)]
        out[tuple(dst)] = torch.flip(block, [a + 1 for a in flip_axes]) if flip_axes else block
        return out

    def blend(self, tiles: Iterable[tuple[int, torch.Tensor]], box: Box) -> torch.Tensor:
        """Blended logits over `box` (unpadded, in the grid's own orientation) from `tiles`: (index,
        (*roi) output) of every window overlapping the box, in window order (streamed: each tile
        is added and let go)."""
        lo = np.asarray(box[0]) + np.asarray(self.pad_lo)
        hi = np.asarray(box[1]) + np.asarray(self.pad_lo)
        num = torch.zeros(tuple(int(v) for v in hi - lo), dtype=torch.float32, device=self.device)
        roi = np.asarray(self.roi)
        for i, value in tiles:
            s = self.starts[i]
            a, b = np.maximum(s, lo), np.minimum(s + roi, hi)
            t = tuple(slice(int(p - q), int(r - q)) for p, r, q in zip(a, b, s))
            num[tuple(slice(int(p - q), int(r - q)) for p, r, q in zip(a, b, lo))] += value[t] * self.weight[t]
        return num / self.count[tuple(slice(int(p), int(q)) for p, q in zip(lo, hi))]


class TileCache:
    """Tile outputs by (network key, tile index), bounded by `limit_bytes` (see module docstring)."""

    def __init__(self, limit_bytes: int | None):
        self.limit = None if limit_bytes is None else max(0, int(limit_bytes))
        self._tiles: dict[tuple[str, int], torch.Tensor] = {}
        self.bytes = 0
        self.peak_bytes = 0
        self.refused = 0  # tiles not stored because of the limit (cumulative)

    def get(self, key: str, index: int) -> torch.Tensor | None:
        return self._tiles.get((key, index))

    def put(self, key: str, index: int, value: torch.Tensor) -> bool:
        """Store a tile output unless that would pass the limit; True when stored."""
        size = value.numel() * value.element_size()
        old = self._tiles.get((key, index))
        free = 0 if old is None else old.numel() * old.element_size()
        if self.limit is not None and self.bytes - free + size > self.limit:
            self.refused += 1
            return False
        self._tiles[(key, index)] = value
        self.bytes += size - free
        self.peak_bytes = max(self.peak_bytes, self.bytes)
        return True

    def drop(self, key: str, indices: Iterable[int] | None = None) -> None:
        """Forget tiles of network `key` (all of them when `indices` is None)."""
        doomed = [k for k in self._tiles if k[0] == key] if indices is None else [(key, int(i)) for i in indices]
        for k in doomed:
            old = self._tiles.pop(k, None)
            if old is not None:
                self.bytes -= old.numel() * old.element_size()

    def items(self):
        return self._tiles.items()

    def __len__(self) -> int:
        return len(self._tiles)


@dataclass
class TileCounters:
    """What the tiles of a session cost: windows run through a network, windows reused from the cache,
    and the voxels the networks ran on (windows of different sizes cost in proportion to them)."""

    computed: int = 0
    reused: int = 0
    voxels: int = 0
    history: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict[str, int]:
        return {"tiles_computed": self.computed, "tiles_reused": self.reused, "voxels_computed": self.voxels}


def update_logits(tiled: "TiledLogits", logits: torch.Tensor | None, x: torch.Tensor,
                  boxes: Sequence[Box] | None) -> torch.Tensor:
    """Logits of `tiled`'s network for the new input `x`: all of them when `logits` is None (or
    `boxes` is None), else `logits` with only the region the changed input `boxes` reach re-blended."""
    tiled.set_input(x)
    if logits is None or boxes is None:
        tiled.invalidate(None)
        return tiled.logits(((0, 0, 0), tiled.grid.shape))
    for region in tiled.invalidate(boxes):
        logits[tuple(slice(a, b) for a, b in zip(*region))] = tiled.logits(region)
    return logits


class TiledLogits:
    """Logits of one network on an input that changes between calls (see module docstring).

    key: names the network (and mirroring) in the cache; model: the network, or a callable
    returning it (loaded only when a tile has to be computed); x: set with `set_input` to the
    current (C, *shape) input, unmirrored."""

    def __init__(self, key: str, model: torch.nn.Module | Callable[[], torch.nn.Module], grid: TileGrid,
                 flip_axes: Sequence[int] = (), sw_batch_size: int = 1, amp: bool = False,
                 amp_dtype: str = "float16", cache: TileCache | None = None, counters: TileCounters | None = None):
        self.key, self.grid, self.flip_axes = key, grid, tuple(int(a) for a in flip_axes)
        self._model = model
        self.sw_batch_size, self.amp, self.amp_dtype = max(1, int(sw_batch_size)), bool(amp), amp_dtype
        self.cache = cache
        self.counters = counters if counters is not None else TileCounters()
        self.x: torch.Tensor | None = None
        self._invalid: set[int] = set(range(len(grid)))  # nothing computed yet
        # instance-norm statistics (petclick.runtime.normstats): recorded per computed tile into
        # `norm_record` when it is a dict; `norm_frozen` (one window's) used by every tile when set
        self.norm_record: dict[int, list] | None = None
        self.norm_frozen: list | None = None

    def model(self) -> torch.nn.Module:
        return self._model if isinstance(self._model, torch.nn.Module) else self._model()

    def on_grid(self, grid: TileGrid, cache: TileCache | None = None) -> "TiledLogits":
        """The same network, mirroring and settings on another grid (e.g. a crop), sharing the counters."""
        return TiledLogits(self.key, self._model, grid, self.flip_axes, self.sw_batch_size, self.amp,
                           self.amp_dtype, cache, self.counters)

    def set_input(self, x: torch.Tensor) -> None:
        """The current input (C, *shape) in the image's orientation (not mirrored)."""
        if tuple(x.shape[1:]) != self.grid.shape:
            raise ValueError(f"input shape {tuple(x.shape[1:])} differs from the grid's {self.grid.shape}")
        self.x = x

    def invalidate(self, boxes: Sequence[Box] | None) -> list[Box]:
        """Mark the tiles overlapping `boxes` (input regions that changed; None: all of it) as
        invalid; returns the unmirrored regions whose logits may change (each invalid tile's
        window, clipped to the image, overlapping ones merged; empty when none may change)."""
        if boxes is None:
            tiles = np.arange(len(self.grid))
        else:
            tiles = self.grid.touching([self.grid.flip_box(b, self.flip_axes) for b in boxes])
        if len(tiles) == 0:
            return []
        self._invalid.update(int(t) for t in tiles)
        if self.cache is not None:
            self.cache.drop(self.key, tiles)
        if boxes is None:
            return [((0, 0, 0), self.grid.shape)]
        return merge_boxes(self.grid.flip_box(self.grid.bbox([t]), self.flip_axes) for t in tiles)

    def _compute(self, indices: Sequence[int]) -> list[torch.Tensor]:
        """Outputs (*roi) of the windows `indices`, run as one batch."""
        if self.x is None:
            raise RuntimeError("TiledLogits: set_input first")
        windows = torch.stack([self.grid.window_input(self.x, i, self.flip_axes) for i in indices])
        logits = self._run(windows, indices)
        return [v.contiguous() for v in logits]

    def _run(self, windows: torch.Tensor, indices: Sequence[int] | None = None) -> torch.Tensor:
        """Logits (B, *roi) of a batch of windows: with `norm_frozen` statistics, else recording
        each window's statistics into `norm_record` under its tile index (`indices`), else plain.
        A network with its own `frozen_logits` / `recorded_logits` (ONNX Runtime's graphs with
        the statistics as inputs and outputs, petclick.runtime.onnxrt) runs them; any other runs
        with normstats' hooks on its PyTorch network."""
        if hasattr(windows, "as_tensor"):       # a MONAI MetaTensor: its data only (no per-op metadata)
            windows = windows.as_tensor()
        net = self.model()
        if self.norm_frozen is not None:
            if hasattr(net, "frozen_logits") and windows.device.type == "cpu":
                logits = net.frozen_logits(windows, self.norm_frozen)[:, 0]
            else:
                with normstats.frozen(net, self.norm_frozen):
                    logits = window_logits(normstats.torch_network(net), windows, self.amp, self.amp_dtype)[:, 0]
        elif self.norm_record is not None:
            if hasattr(net, "recorded_logits") and windows.device.type == "cpu":
                out, stats = net.recorded_logits(windows)
                logits = out[:, 0]
                samples = [[(mean[k].clone(), var[k].clone()) for mean, var in stats] for k in range(len(windows))]
            else:
                with normstats.recording(net) as rec:
                    logits = window_logits(normstats.torch_network(net), windows, self.amp, self.amp_dtype)[:, 0]
                samples = [rec.sample(k) for k in range(len(windows))]
            for k, i in enumerate(indices or ()):
                self.norm_record[int(i)] = samples[k]
        else:
            logits = window_logits(net, windows, self.amp, self.amp_dtype)[:, 0]
        self.counters.computed += len(windows)
        self.counters.voxels += len(windows) * int(np.prod(self.grid.roi))
        return logits

    def logits_of(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Blended logits over the whole grid for each of `inputs` ((C, *shape), unmirrored), every
        window of every input run in one batch, nothing cached: e.g. a local window's crop under
        the new and the previous clicks (the delta update) in one network call. The current input
        (`set_input`) is left as it was."""
        n = len(self.grid)
        windows = torch.stack([self.grid.window_input(x, i, self.flip_axes) for x in inputs for i in range(n)])
        logits = self._run(windows)
        box = ((0, 0, 0), self.grid.shape)
        out = []
        for k in range(len(inputs)):
            blended = self.grid.blend(((i, logits[k * n + i]) for i in range(n)), box)
            out.append(torch.flip(blended, list(self.flip_axes)) if self.flip_axes else blended)
        return out

    def _tiles(self, needed: Sequence[int]) -> Iterable[tuple[int, torch.Tensor]]:
        """(index, output) of `needed` in order: valid cached tiles reused, the others computed in
        batches of sw_batch_size (looking ahead), stored in the cache while it has room."""
        cached = {}
        if self.cache is not None:
            for i in needed:
                hit = None if i in self._invalid else self.cache.get(self.key, i)
                if hit is not None:
                    cached[i] = hit
        missing = [i for i in needed if i not in cached]
        self.counters.reused += len(cached)
        fresh: dict[int, torch.Tensor] = {}
        position = 0
        for i in needed:
            if i in cached:
                yield i, cached[i]
                continue
            if i not in fresh:
                batch = missing[position:position + self.sw_batch_size]
                position += len(batch)
                for j, value in zip(batch, self._compute(batch)):
                    fresh[j] = value
                    self._invalid.discard(j)
                    if self.cache is not None:
                        self.cache.put(self.key, j, value)
            yield i, fresh.pop(i)

    def logits(self, box: Box) -> torch.Tensor:
        """Blended logits over `box` (unmirrored image coordinates), shape hi - lo."""
        own = self.grid.flip_box(box, self.flip_axes)
        needed = [int(i) for i in self.grid.touching([own])]
        out = self.grid.blend(self._tiles(needed), own)
        return torch.flip(out, list(self.flip_axes)) if self.flip_axes else out
