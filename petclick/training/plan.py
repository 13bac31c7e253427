"""The run plan: what a fold's training will hold in RAM and on disk, how many iterations and
validations it runs and how long that takes, computed before anything runs (`petclick plan`, the
training loop's `auto` cache settings, fill_template_config's `val_every`).

Memory model of one cached training case (network space, after the body crop, padded to the ROI):
`voxels x (2 image channels x dtype bytes + 1 label byte)` plus the sampler's int32 centre indices
(the lesion and hot voxels, at most about 0.5% of the case, and a fixed draw of body voxels). A
validation case holds its image the same way and its label (uint8) on the PET grid.

Cache choice (YAML `data.cache_rate`, `data.cache_dtype`, `data.cache_memory_fraction`,
`data.cache_dir`; `auto` values resolved here):

1. the budget is `cache_memory_fraction` of the available RAM (psutil), shared by the ranks of the node,
   minus the validation cache;
2. every training case in float32 if that fits, else in float16 (values are in [0, 1]: 2^-11 steps);
3. past the budget, the cases that do not fit go to a disk cache (MONAI's PersistentDataset under
   `data.cache_dir`), or are preprocessed at every load when `cache_dir` is null.

Validation schedule (`training.val_every: auto`): the number of validations whose cost (validation
cases of this rank x seconds per case) stays within `training.val_fraction` of the projected
training time, from step times measured or recorded (`STEP_TIMES`, each with its source).
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from petclick.core.errors import InputError

GB = 1024**3
#: The body crop keeps about this fraction of a whole-body PET/CT field of view: a conservative
#: figure for real studies (body, arms and table about 550 x 350 mm of an 816 x 816 mm field, 0.29);
#: benchmarks/bench_scale.py measures what its phantoms keep (docs/benchmarks/scale.md).
BODY_FRACTION = 0.4
#: int32 sampler indices: a fixed draw of body voxels plus lesion and hot voxels (<= 0.5% of a case)
INDEX_SAMPLES = 20000
INDEX_FRACTION = 0.005
#: Per-item overhead of a cached MetaTensor dict (affines, metadata), bytes.
ITEM_OVERHEAD = 64 * 1024
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
REFERENCE_VOXELS = 400 * 400 * 326


@dataclass(frozen=True)
class StepTimes:
    """Seconds per training step and per whole-body pass (at REFERENCE_VOXELS) and where they come from."""

    step_s: float
    pass_s: float
    source: str


#: Recorded step times by preset (their source named); `petclick plan --step-s/--pass-s` replaces them.
STEP_TIMES: dict[str, StepTimes] = {
    "autopet": StepTimes(0.27, 1.34, "recorded: one H100, segresnet autopet preset, training step 0.27 s and "
                                     "whole-body 400x400x326 pass 1.34 s (docs/benchmarks/networks.md)"),
    "demo": StepTimes(0.10, 106.0, "recorded: this project's 2-core CPU, demo preset, training step 0.10 s idle "
                                   "(docs/benchmarks/training.md); pass 0.3 s per 48x48x64 phantom scaled by voxels"),
}


def available_memory() -> int:
    """Bytes of RAM available to new allocations (psutil); tests patch this probe."""
    import psutil

    return int(psutil.virtual_memory().available)


def free_disk(path: str | Path) -> int:
    """Bytes free on the file system of `path` (its nearest existing parent)."""
    p = Path(path).resolve()
    while not p.exists() and p != p.parent:
        p = p.parent
    return int(shutil.disk_usage(p).free)


def local_ranks() -> int:
    """Processes of this run on this node (torchrun's LOCAL_WORLD_SIZE, else 1)."""
    return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def network_voxels(shape: Sequence[int], spacing: Sequence[float], target: Sequence[float] | None,
                   roi: Sequence[int], body_fraction: float = BODY_FRACTION) -> int:
    """Voxels of one case in network space: resampled to `target` spacing (None: as is), body-cropped,
    padded up to the ROI."""
    dims = [float(s) * (float(sp) / float(t) if target else 1.0) for s, sp, t in
            zip(shape, spacing, target or spacing)]
    vox = math.prod(dims) * float(body_fraction)
    return int(max(vox, math.prod(int(r) for r in roi)))


def case_bytes(voxels: float, dtype: str, label_voxels: float | None = None, indices: bool = True) -> int:
    """Bytes of one cached case: 2 image channels in `dtype`, a uint8 label (of `label_voxels`, default
    the image's), int32 sampler indices (training), the item's overhead."""
    if dtype not in DTYPE_BYTES:
        raise InputError("data.cache_dtype", f"must be one of {sorted(DTYPE_BYTES)} or 'auto', got {dtype!r}")
    n = voxels * 2 * DTYPE_BYTES[dtype] + (voxels if label_voxels is None else label_voxels)
    if indices:
        n += 4 * (INDEX_SAMPLES + INDEX_FRACTION * voxels)
    return int(n + ITEM_OVERHEAD)


def validation_work_bytes(voxels: float, pet_voxels: float, overlap: float, on_device: bool = False,
                          resampled: bool = False) -> int:
    """Host bytes of validating one case besides its cache: on the CPU the 4-channel input, logits,
    probabilities and the exact mode's tile outputs (one pass: coverage (1 / (1 - overlap))^3 of the
    case, capped at 8) and, for a `resampled` case, the sampling grid of one slab of the PET grid
    (petclick.runtime.grid.SLAB_VOXELS, 32 bytes per voxel with its output); with a GPU (`on_device`) these
    live in GPU memory. Always on the host: the probabilities on the PET grid, the thresholded mask and
    the metric's component labels."""
    from petclick.runtime.grid import SLAB_VOXELS

    coverage = min(8.0, (1.0 / max(1e-3, 1.0 - float(overlap))) ** 3)
    host_pet = pet_voxels * (4 + 1 + 8)
    slab = 32 * min(float(pet_voxels), SLAB_VOXELS) if resampled else 0.0
    return int(host_pet + (0 if on_device else voxels * (16 + 4 + 4 + 4 * coverage) + slab))


#: Host bytes of preprocessing one case for the cache, per voxel (float32 volumes; benchmarks/bench_scale.py
#: measures them per grid, docs/benchmarks/scale.md). Without resampling: the loaded CT, PET and label, their
#: windowed copies and the concatenated image (24 bytes per PET voxel, measured 24.2 on a 400x400x326 phantom).
#: With resampling (MONAI Spacingd in float32, one volume at a time), while the last volume is resampled:
#: the three loaded volumes (12 bytes per PET voxel) plus, per output voxel, the sampling grid (homogeneous
#: base grid 16 + coordinates 12), the resampled volume (4) and the two resampled before it (8).
LOAD_BYTES_PER_VOXEL = 24
LOAD_HELD_BYTES = 12
RESAMPLE_BYTES_PER_VOXEL = 40
#: Validation cases load CT and PET only (the lesion mask later, as uint8): 2 volumes held, 1 resampled before.
VAL_HELD_BYTES, VAL_RESAMPLE_BYTES = 8, 36


def resampled_voxels(shape: Sequence[int], spacing: Sequence[float], target: Sequence[float] | None) -> float:
    """Voxels of a case's whole field of view at `target` spacing (0 when it is not resampled)."""
    if not target or all(math.isclose(float(a), float(b), rel_tol=1e-3) for a, b in zip(spacing, target)):
        return 0.0
    return float(math.prod(float(s) * float(sp) / float(t) for s, sp, t in zip(shape, spacing, target)))


def preprocess_peaks(shape: Sequence[int], spacing: Sequence[float], target: Sequence[float] | None,
                     validation: bool = False) -> tuple[int, int]:
    """(resampling, the rest): peak host bytes of preprocessing one case of PET grid `shape` / `spacing` to
    `target` spacing (None: as read) in one cache thread while it resamples (0 when it does not) and outside
    resampling (the loaded volumes; after resampling the chain on the resampled grid)."""
    pet = float(math.prod(int(x) for x in shape))
    out = resampled_voxels(shape, spacing, target)
    if not out:
        return 0, int(LOAD_BYTES_PER_VOXEL * pet)
    held, per_out = (VAL_HELD_BYTES, VAL_RESAMPLE_BYTES) if validation else (LOAD_HELD_BYTES, RESAMPLE_BYTES_PER_VOXEL)
    return int(held * pet + per_out * out), int(max(held * pet, LOAD_BYTES_PER_VOXEL * out))


def preprocess_bytes(shape: Sequence[int], spacing: Sequence[float], target: Sequence[float] | None,
                     validation: bool = False) -> int:
    """Peak host bytes of preprocessing one case in one thread (the larger of preprocess_peaks)."""
    return max(preprocess_peaks(shape, spacing, target, validation))


def cache_threads(workers: int, ranks: int | None = None) -> int:
    """Threads that fill one rank's cache: `data.num_workers` divided among the node's ranks, at least 1."""
    return max(1, int(workers) // max(1, local_ranks() if ranks is None else int(ranks)))


def fitting_threads(threads: int, case_loads: Sequence[tuple[int, int]], headroom: float) -> int:
    """At most `threads` cache threads, fewer when the largest cases preprocessed at once would not fit in
    `headroom` bytes (what the node leaves a rank after its caches): fewer whole cases in flight, at least 1."""
    n = max(1, int(threads))
    while n > 1 and load_bytes(case_loads, n) > headroom:
        n -= 1
    return n


def load_bytes(case_loads: Sequence[tuple[int, int]], threads: int) -> int:
    """Host bytes of filling the cache with `threads` threads, from each case's preprocess_peaks: one case
    resamples at a time (petclick.runtime.preprocess.SerialSpacingd), so the peak is the largest resampling
    beside the other threads' largest cases outside resampling, or those of all threads."""
    k = max(1, int(threads))
    order = sorted(range(len(case_loads)), key=lambda i: -int(case_loads[i][1]))[:k]
    top = [int(case_loads[i][1]) for i in order]
    peak = sum(top)                                   # no thread resampling
    for i, (r, n) in enumerate(case_loads):           # case i resampling beside the k-1 largest others
        if r:
            others = sum(top) - int(n) if i in order else sum(top[:k - 1])
            peak = max(peak, int(r) + others)
    return int(peak)


#: A training process's own host memory: Python, PyTorch and MONAI after import (430 MB RSS measured on this
#: project's CPU machine, docs/benchmarks/scale.md) plus the model, optimiser and allocator pools; a process
#: that drives a GPU adds its CUDA context on the host (CUDA_CONTEXT_BYTES, a conservative figure: not
#: measured here, no GPU was lent). Each loader worker's own memory (the cache it shares is counted once):
#: 2 workers held 739 MB (PSS) at the peak of benchmarks/bench_scale.py at c637796 (docs/benchmarks/scale.md).
PROCESS_BYTES = 600 * 1024**2
CUDA_CONTEXT_BYTES = 400 * 1024**2
WORKER_BYTES = 370 * 1024**2


def process_bytes(workers: int = 0, cuda: bool = True) -> int:
    """Host bytes of one training process (with its CUDA context when `cuda`) and its loader workers."""
    return int(PROCESS_BYTES + (CUDA_CONTEXT_BYTES if cuda else 0) + max(0, int(workers)) * WORKER_BYTES)


@dataclass
class CachePlan:
    """Where a rank's cases live: `ram_cases` in RAM (in `dtype`), `disk_cases` in the disk cache,
    the rest (`uncached`) preprocessed at every load."""

    dtype: str
    cache_rate: float
    ram_cases: int
    disk_cases: int
    uncached: int
    case_bytes: int
    ram_bytes: int
    disk_bytes: int
    val_bytes: int
    available_bytes: int
    budget_bytes: int
    cache_dir: str | None
    reason: str
    threads: int = 1         # cache threads (whole cases preprocessed at once), fitting_threads
    load_bytes: int = 0      # filling the cache with those threads (load_bytes), the larger of the two caches
    fill_peak_bytes: int = 0  # the training cache filling, or the validation cache beside the training cache

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _auto(v: Any) -> bool:
    return v is None or v == "auto"


def plan_cache(data: Mapping[str, Any], n_train: int, train_voxels: float, n_val: int = 0, val_voxels: float = 0.0,
               val_pet_voxels: float = 0.0, available: int | None = None, ranks: int = 1,
               cache_dir: str | Path | None = None, case_loads: Sequence[tuple[int, int]] = (),
               val_loads: Sequence[tuple[int, int]] = (), cuda: bool = True) -> CachePlan:
    """The cache of one rank holding `n_train` training cases of `train_voxels` mean network-space voxels
    and `n_val` validation cases; `available` bytes of RAM on the node (default: the probe) shared by
    `ranks` processes. Explicit `data.cache_rate` / `data.cache_dtype` values are kept. `case_loads`
    (preprocess_peaks of each training case) and `val_loads` (of each validation case) size the cache
    threads: `data.num_workers` shared by the ranks, fewer when the largest cases preprocessed at once would
    not fit beside the caches and the process (`cuda`: with its CUDA context)."""
    available = available_memory() if available is None else int(available)
    fraction = float(data.get("cache_memory_fraction", 0.6))
    budget = int(available * fraction / max(1, ranks))
    rate_cfg, dtype_cfg = data.get("cache_rate", "auto"), data.get("cache_dtype", "auto")
    dtype_cfg = "float32" if dtype_cfg is None else dtype_cfg  # null: as loaded (float32)
    val_dtype = "float32" if _auto(dtype_cfg) else str(dtype_cfg)
    val_bytes = int(n_val * case_bytes(val_voxels, val_dtype, val_pet_voxels, indices=False)) if n_val else 0
    left = max(0, budget - val_bytes)
    if _auto(dtype_cfg):
        full32 = n_train * case_bytes(train_voxels, "float32")
        dtype = "float32" if full32 <= left else "float16"
    else:
        dtype = str(dtype_cfg)
    per = case_bytes(train_voxels, dtype)
    if _auto(rate_cfg):
        ram = min(n_train, left // per) if per else n_train
        reason = (f"all {n_train} cases fit in {dtype}" if ram >= n_train else
                  f"{ram} of {n_train} cases fit the budget in {dtype}")
    else:
        rate = float(rate_cfg)
        ram = min(n_train, int(math.ceil(rate * n_train)))
        reason = f"data.cache_rate {rate} (set)"
    ram = int(max(0, ram))
    rest = n_train - ram
    disk_dir = None if cache_dir is None else str(cache_dir)
    disk = rest if disk_dir else 0
    loads = list(case_loads) + list(val_loads) or [(0, 0)]
    headroom = available / max(1, ranks) - ram * per - val_bytes - process_bytes(0, cuda)
    threads = fitting_threads(cache_threads(int(data.get("num_workers", 0)), ranks), loads, headroom)
    train_fill, val_fill = load_bytes(list(case_loads), threads), load_bytes(list(val_loads), threads)
    return CachePlan(dtype=dtype, cache_rate=round(ram / n_train, 4) if n_train else 1.0, ram_cases=ram,
                     disk_cases=disk, uncached=rest - disk, case_bytes=per, ram_bytes=ram * per,
                     disk_bytes=disk * case_bytes(train_voxels, dtype), val_bytes=val_bytes,
                     available_bytes=available, budget_bytes=budget, cache_dir=disk_dir, reason=reason,
                     threads=threads, load_bytes=max(train_fill, val_fill),
                     fill_peak_bytes=max(train_fill, ram * per + val_fill))


@dataclass
class ValidationPlan:
    """The validation schedule: `validations` of `cases` cases (this rank's share `cases_per_rank`),
    every `val_every` epochs, `seconds` each, `fraction` of the training time."""

    cases: int
    cases_per_rank: int
    case_s: float
    seconds: float
    validations: int
    val_every: int
    fraction: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def validation_case_seconds(times: StepTimes, voxels: float, steps: int) -> float:
    """Seconds to validate one case at `steps` click steps: a whole-body pass scaled by its voxels per
    step (the exact tile cache re-runs only the clicked tiles after the first: an upper bound), plus
    0.1 s per step of resampling and metrics."""
    return float(times.pass_s * voxels / REFERENCE_VOXELS * max(1, steps) + 0.1 * max(1, steps))


def plan_validation(training: Mapping[str, Any], num_epochs: int, iters_per_epoch: int, step_s: float,
                    n_val: int, case_s: float, ranks: int = 1) -> ValidationPlan:
    """`val_every` (epochs) so that validation costs at most `training.val_fraction` of the training
    time (at least one validation, at the end); an explicit `val_every` is kept and its cost reported."""
    cases = int(n_val)
    per_rank = int(math.ceil(cases / max(1, ranks)))
    seconds = per_rank * float(case_s)
    train_s = num_epochs * iters_per_epoch * float(step_s)
    fraction_cfg = float(training.get("val_fraction", 0.15))
    ve = training.get("val_every", "auto")
    if _auto(ve):
        allowed = int(fraction_cfg * train_s // seconds) if seconds > 0 else num_epochs
        validations = max(1, min(num_epochs, allowed))
        val_every = max(1, int(math.ceil(num_epochs / validations)))
    else:
        val_every = max(1, int(ve))
    validations = num_epochs // val_every + (1 if num_epochs % val_every else 0)
    return ValidationPlan(cases=cases, cases_per_rank=per_rank, case_s=round(float(case_s), 3),
                          seconds=round(seconds, 1), validations=validations, val_every=val_every,
                          fraction=round(validations * seconds / train_s, 4) if train_s else 0.0)


def dist_timeout_s(training: Mapping[str, Any], validation_s: float = 0.0, cache_s: float = 0.0) -> float:
    """The process group's collective timeout: `training.dist_timeout_s`, or (auto) the longest wait a
    rank can see (a validation share or a cache build, doubled) and at least 30 minutes."""
    v = training.get("dist_timeout_s", "auto")
    if not _auto(v):
        return float(v)
    return float(max(1800.0, 2.0 * (float(validation_s) + float(cache_s))))


@dataclass
class RunPlan:
    """Everything `petclick plan` prints for one fold of one algorithm."""

    preset: str
    gpus: int
    n_cases: int
    n_train: int
    n_val: int
    voxels_mean: float
    voxels_max: float
    spacing: list[float] | None
    cache: CachePlan
    validation: ValidationPlan
    num_epochs: int
    iters_per_epoch: int
    iterations: int
    repeats: int
    folds: int
    step_s: float
    times_source: str
    train_hours: float
    validation_hours: float
    total_hours: float
    disk_free_bytes: int | None = None
    dist_timeout_s: float = 1800.0
    work_bytes: int = 0          # validating the largest case, host side (validation_work_bytes)
    process_bytes: int = 0       # the training process itself (process_bytes without workers)
    worker_bytes: int = 0        # its loader workers (started after the caches are filled)
    load_bytes: int = 0          # filling the cache (CachePlan.load_bytes)
    available_bytes: int = 0
    notes: list[str] = field(default_factory=list)
    gpu: Any = None              # the GPU plan (petclick.training.gpuplan.GpuPlan), None without a GPU
    gpu_line: str = ""           # what the GPU plan chose and why, or that there was none

    @property
    def peak_bytes(self) -> int:
        """Peak host bytes of one rank: the process plus the larger of filling the caches (the training cache
        first, then the validation cache beside it; no loader workers yet) and training / validating the
        largest case beside both caches, with the loader workers alive."""
        c = self.cache
        return int(self.process_bytes + max(c.fill_peak_bytes or self.load_bytes,
                                            c.ram_bytes + c.val_bytes + self.worker_bytes + self.work_bytes))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["cache"], d["validation"] = self.cache.to_dict(), self.validation.to_dict()
        d["gpu"] = None if self.gpu is None else self.gpu.to_dict()
        return d

    def lines(self) -> list[str]:
        c, v = self.cache, self.validation
        gb = lambda b: f"{b / GB:.1f} GB"  # noqa: E731
        out = [
            f"preset {self.preset}, {self.gpus} GPU(s) (ranks), {self.n_cases} training cases, {self.folds} folds: "
            f"{self.n_train} training / {self.n_val} validation cases per fold",
            self.gpu_line or "GPU: not planned",
            f"network space: {self.voxels_mean / 1e6:.1f} M voxels per case (mean), {self.voxels_max / 1e6:.1f} M max; "
            f"spacing {self.spacing or 'as read'}",
            f"RAM per rank: {gb(c.budget_bytes)} budget of {gb(c.available_bytes)} available; training cache "
            f"{c.ram_cases} cases x {c.case_bytes / 2**20:.0f} MB in {c.dtype} = {gb(c.ram_bytes)} "
            f"(cache_rate {c.cache_rate}: {c.reason}); validation cache {gb(c.val_bytes)}",
            f"peak host RAM per rank: {gb(self.peak_bytes)} = {gb(self.process_bytes)} process + the larger of "
            f"{gb(c.fill_peak_bytes or self.load_bytes)} filling the caches ({c.threads} case(s) at once, "
            f"{gb(self.load_bytes)} preprocessing) and the caches + {gb(self.worker_bytes)} loader workers + "
            f"{gb(self.work_bytes)} validating the largest case; the node's {self.gpus} rank(s): "
            f"{gb(self.gpus * self.peak_bytes)} of {gb(self.available_bytes)}",
            f"disk cache: {c.disk_cases} cases, {gb(c.disk_bytes)} under {c.cache_dir or '(none)'}; "
            f"{c.uncached} cases preprocessed at every load"
            + (f"; {gb(self.disk_free_bytes)} free there" if self.disk_free_bytes is not None else ""),
            f"iterations: {self.num_epochs} epochs x {self.iters_per_epoch} per rank = {self.iterations} per repeat, "
            f"{self.repeats} repeat(s) per fold",
            f"validation: {v.cases} cases ({v.cases_per_rank} per rank) every {v.val_every} epochs = {v.validations} "
            f"validations of {v.seconds:.0f} s ({v.case_s:.2f} s per case), {100 * v.fraction:.1f}% of training time",
            f"time per fold: {self.train_hours:.2f} h training + {self.validation_hours:.2f} h validation; all folds "
            f"and repeats: {self.total_hours:.1f} h on {self.gpus} GPU(s)",
            f"step times: {self.step_s:.3f} s per step ({self.times_source})",
            f"collective timeout (training.dist_timeout_s): {self.dist_timeout_s:.0f} s",
        ]
        return out + [f"note: {n}" for n in self.notes]


def make_plan(cfg: Mapping[str, Any], shapes: Sequence[tuple[Sequence[int], Sequence[float]]], n_train: int,
              n_val: int, gpus: int = 1, folds: int = 5, times: StepTimes | None = None,
              available: int | None = None, cache_dir: str | Path | None = None,
              val_pet_voxels: float | None = None, cuda: bool = True, gpu: Any = None) -> RunPlan:
    """The plan of one fold of config `cfg` (sections data, training, clicks, num_repeats) for cases of
    `shapes` [(shape, spacing), ...], `n_train` / `n_val` cases per fold, on `gpus` ranks of one node
    (`cuda`: ranks that drive GPUs, with a CUDA context and validation on the GPU; `gpu`: the GPU plan
    that chose the ROI and batch, reported with the plan)."""
    from petclick.training.gpuplan import no_gpu_line

    data, tr = cfg["data"], cfg["training"]
    preset = str(cfg.get("preset", "autopet"))
    times = times or STEP_TIMES.get(preset, STEP_TIMES["autopet"])
    spacing = data.get("spacing")
    if spacing == "auto":
        sps = sorted(tuple(float(x) for x in sp) for _, sp in shapes)
        same = all(math.isclose(a, b, rel_tol=0.01) for a, b in zip(sps[0], sps[-1])) if sps else True
        spacing = None if same else [float(x) for x in sps[len(sps) // 2]]
    roi = [int(r) for r in data["roi"]]
    spacing = None if spacing is None else [round(float(x), 4) for x in spacing]
    vox = [network_voxels(s, sp, spacing, roi) for s, sp in shapes] or [math.prod(roi)]
    mean_vox, max_vox = sum(vox) / len(vox), max(vox)
    pet_vox = val_pet_voxels if val_pet_voxels is not None else (
        sum(math.prod(int(x) for x in s) for s, _ in shapes) / max(1, len(shapes)))
    max_pet = max((math.prod(int(x) for x in s) for s, _ in shapes), default=0)
    loads = [preprocess_peaks(s, sp, spacing) for s, sp in shapes]  # every case through the training chain
    val_loads = [preprocess_peaks(s, sp, spacing, validation=True) for s, sp in shapes]
    largest = max(shapes, key=lambda s: math.prod(int(x) for x in s[0])) if shapes else None
    gpus = max(1, int(gpus))
    train_rank = int(math.ceil(n_train / gpus))
    val_total = n_val if tr.get("val_cases") in (None, "all") else min(n_val, int(tr["val_cases"]))
    val_rank = int(math.ceil(val_total / gpus))
    cache = plan_cache(data, train_rank, mean_vox, val_rank, mean_vox, pet_vox, available, gpus, cache_dir,
                       case_loads=loads, val_loads=val_loads, cuda=cuda)
    batch = int(data.get("batch_size", 1))
    iters = int(tr.get("num_iterations_per_epoch") or max(1, math.ceil(train_rank / batch)))
    iters_full = int(tr.get("num_iterations_per_epoch") or max(1, math.ceil(n_train / batch)))
    epochs = tr.get("num_epochs", "auto")
    if _auto(epochs):
        epochs = int(min(1000, max(20, round(int(tr.get("target_iterations", 50000)) / iters_full))))
    epochs = int(epochs)
    steps = len(cfg.get("clicks", {}).get("val_steps", [0, 5, 10]))
    case_s = validation_case_seconds(times, mean_vox, steps)
    vplan = plan_validation(tr, epochs, iters, times.step_s, val_total, case_s, gpus)
    train_h = epochs * iters * times.step_s / 3600
    val_h = vplan.validations * vplan.seconds / 3600
    repeats = int(cfg.get("num_repeats", 1))
    notes = []
    if cache.uncached:
        notes.append(f"{cache.uncached} cases per rank are neither in RAM nor on disk: set data.cache_dir or raise "
                     "data.cache_memory_fraction")
    if vplan.fraction > float(tr.get("val_fraction", 0.15)) + 1e-9:
        notes.append(f"validation is {100 * vplan.fraction:.0f}% of training time, over training.val_fraction "
                     f"{tr.get('val_fraction', 0.15)}: fewer training.val_cases or a larger val_every lowers it")
    plan = RunPlan(preset=preset, gpus=gpus, n_cases=n_train + n_val, n_train=n_train, n_val=n_val,
                   voxels_mean=mean_vox, voxels_max=max_vox, spacing=spacing, cache=cache, validation=vplan,
                   num_epochs=epochs, iters_per_epoch=iters, iterations=epochs * iters, repeats=repeats, folds=folds,
                   step_s=times.step_s, times_source=times.source, train_hours=round(train_h, 3),
                   validation_hours=round(val_h, 3), total_hours=round((train_h + val_h) * repeats * folds, 2),
                   disk_free_bytes=free_disk(cache_dir) if cache_dir else None,
                   dist_timeout_s=dist_timeout_s(tr, vplan.seconds), notes=notes,
                   work_bytes=validation_work_bytes(max_vox, max_pet, float(cfg.get("infer", {}).get("overlap", 0.625)),
                                                    on_device=cuda, resampled=bool(
                                                        largest and resampled_voxels(*largest, spacing))),
                   process_bytes=process_bytes(0, cuda),
                   worker_bytes=process_bytes(int(data.get("num_workers", 0)), cuda) - process_bytes(0, cuda),
                   load_bytes=cache.load_bytes, available_bytes=cache.available_bytes, gpu=gpu,
                   gpu_line=gpu.line() if gpu is not None else no_gpu_line(cfg))
    if gpus * plan.peak_bytes > plan.available_bytes:
        plan.notes.append(f"the node's ranks may peak at {gpus * plan.peak_bytes / GB:.0f} GB, over the "
                          f"{plan.available_bytes / GB:.0f} GB available: lower data.cache_memory_fraction or "
                          "data.num_workers")
    return plan
