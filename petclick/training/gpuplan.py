"""The training ROI and batch from GPU memory (`petclick plan`, fill_template_config): the largest ROI (a
multiple of the network's divisor, never above `data.roi`) and batch (up to `data.max_batch_size`) whose
training step fits the free memory of the GPU(s) the ranks will use.

Memory model of one training step on one GPU (bytes):

    parameters x (weights + gradients + 2 AdamW moments [+ DDP's gradient buckets]) x 4
  + what autograd saves whatever the ROI
  + samples (batch_size x num_crops) x ROI voxels x (activation bytes per voxel
                                                     + 2 x the largest saved activation per voxel: backward's
                                                       gradients into and out of one layer) [x AMP_FACTOR]

must stay within `data.gpu_memory_fraction` of the free memory (the rest is the margin: cuDNN workspaces,
the caching allocator's fragmentation, the validation pass).

Activation bytes per voxel are measured, not guessed: a float32 forward and backward of the configured
network on the CPU, counting the bytes of every tensor autograd saves for backward
(torch.autograd.graph.saved_tensors_hooks; parameters left out), at two probe ROIs: the slope is the bytes
per voxel, the intercept the part that does not scale. A convolutional network's feature maps scale with
the input's voxels, so the count holds for any ROI that is a multiple of the divisor (tested at a third
ROI). The count is device-independent; it is cached per network configuration in the process.
"""

from __future__ import annotations

import functools
import json
import math
import os
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

from petclick.core.errors import InputError

GB = 1024**3
#: Bytes per parameter: float32 weights, gradients and AdamW's two moments; DDP adds its gradient buckets.
PARAM_BYTES, DDP_PARAM_BYTES = 16, 4
#: AMP's effect on the float32 count. 1.0 from the one GPU figure on record: the autopet SegResNetDS training
#: step (ROI 192x192x320, 1 sample, fp16 autocast, Dice-CE with deep supervision) peaked at 25.2 GB allocated
#: on one H100 (docs/benchmarks/networks.md), where this model gives 25.1 GB; a CPU bfloat16-autocast count
#: would predict 14.3 GB, so it is no proxy of CUDA's fp16 autocast.
AMP_FACTOR = 1.0
#: The smallest ROI the plan offers: this fraction of the configured ROI on every axis (whole-body lesion
#: segmentation loses its context below it); past it the plan refuses and says what to set.
MIN_AXIS_FRACTION = 0.5


@dataclass(frozen=True)
class GpuInfo:
    """One GPU as the probe saw it: its index, name, free and total bytes."""

    index: int
    name: str
    free: int
    total: int


def gpu_memory(indices: Sequence[int] | None = None) -> list[GpuInfo]:
    """Free and total memory of the GPUs at `indices` (default: this rank's LOCAL_RANK device) by
    torch.cuda.mem_get_info; empty without CUDA. Tests patch this probe."""
    import torch

    if not torch.cuda.is_available():
        return []
    if indices is None:
        indices = [int(os.environ.get("LOCAL_RANK", "0"))]
    out = []
    for i in indices:
        free, total = torch.cuda.mem_get_info(int(i))
        out.append(GpuInfo(int(i), torch.cuda.get_device_name(int(i)), int(free), int(total)))
    return out


@dataclass(frozen=True)
class Footprint:
    """A network's measured training memory: `act_per_voxel` bytes autograd saves per input voxel of one
    sample, `const_bytes` what it saves whatever the ROI, `peak_per_voxel` the largest
    saved activation per voxel, `params` parameters; measured at the probe ROIs."""

    act_per_voxel: float
    const_bytes: int
    peak_per_voxel: float
    params: int
    probe_rois: tuple[tuple[int, int, int], ...]


def _saved(model: Any, in_channels: int, roi: Sequence[int]) -> tuple[int, int]:
    """(bytes of every tensor saved for backward, bytes of the largest saved activation) of one
    forward+backward of `model` on one sample of `roi` (parameters left out; views counted once)."""
    import torch

    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}
    largest = [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            saved[storage.data_ptr()] = max(saved.get(storage.data_ptr(), 0), storage.nbytes())
            if t.dim() == 5 and t.shape[0] == 1:  # an activation (batch 1), not a weight copy
                largest[0] = max(largest[0], storage.nbytes())
        return t

    x = torch.rand(1, in_channels, *roi)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.autocast("cpu", enabled=False):
        out = model(x)
        outs = out if isinstance(out, (list, tuple)) else [out]
        loss = sum(o.float().mean() for o in outs)
    loss.backward()
    model.zero_grad(set_to_none=True)
    return sum(saved.values()), largest[0]


@functools.lru_cache(maxsize=32)
def _measure(name: str, kwargs_json: str, in_channels: int, organ_classes: int) -> Footprint:
    """Two probes (2 and 3 divisors per axis, at least 32 and 48 voxels): the saved bytes' slope per voxel
    and their constant part."""
    import torch

    from petclick.networks.factory import build_network
    from petclick.networks.roi import roi_divisors

    kwargs = json.loads(kwargs_json)
    torch.manual_seed(0)
    model = build_network(name, in_channels, 1, organ_classes=organ_classes, **kwargs).train()
    div = roi_divisors(name, **kwargs)
    rois = tuple(tuple(int(d) * max(k, math.ceil(16 * k / int(d))) for d in div) for k in (2, 3))
    (s1, _), (s2, big) = (_saved(model, in_channels, r) for r in rois)
    v1, v2 = float(math.prod(rois[0])), float(math.prod(rois[1]))
    slope = max(0.0, (s2 - s1) / (v2 - v1))
    return Footprint(act_per_voxel=slope, const_bytes=int(max(0.0, s1 - slope * v1)), peak_per_voxel=big / v2,
                     params=sum(p.numel() for p in model.parameters()), probe_rois=rois)


def footprint(cfg: Mapping[str, Any]) -> Footprint:
    """The measured footprint of config `cfg`'s network (sections network, clicks, training), cached."""
    from petclick.networks.factory import resolve_network_kwargs
    from petclick.runtime.clickinput import click_channels
    from petclick.training.organs import organ_head

    net = cfg["network"]
    kwargs = resolve_network_kwargs(net["name"], dict(net.get("kwargs") or {}))
    head = organ_head(net)
    channels = 2 + click_channels(cfg["clicks"].get("encoding"))
    return _measure(str(net["name"]), json.dumps(kwargs, sort_keys=True, default=list), channels,
                    int(head["classes"]) if head else 0)


def step_bytes(fp: Footprint, roi: Sequence[int], samples: int, ranks: int = 1, amp: bool = True) -> int:
    """Bytes of one training step of `samples` patches of `roi` on one GPU (the module's model)."""
    vox = float(math.prod(int(r) for r in roi))
    states = fp.params * (PARAM_BYTES + (DDP_PARAM_BYTES if ranks > 1 else 0)) + fp.const_bytes
    act = samples * vox * (fp.act_per_voxel + 2 * fp.peak_per_voxel) * (AMP_FACTOR if amp else 1.0)
    return int(states + act)


def candidate_rois(roi: Sequence[int], divisors: Sequence[int]) -> list[tuple[int, int, int]]:
    """ROIs from `roi` down to MIN_AXIS_FRACTION of it, every axis a multiple of its divisor, the axes'
    proportions kept as far as the divisors allow; largest first, without duplicates."""
    out: list[tuple[int, int, int]] = []
    for step in range(0, 101):
        s = 1.0 - step * (1.0 - MIN_AXIS_FRACTION) / 100
        cand = tuple(max(int(d), int(r * s) // int(d) * int(d)) for r, d in zip(roi, divisors))
        if all(c >= math.ceil(r * MIN_AXIS_FRACTION) or c == d for c, r, d in zip(cand, roi, divisors)) \
                and cand not in out:
            out.append(cand)  # type: ignore[arg-type]
    return sorted(out, key=lambda c: (-math.prod(c), c))


def _grow(cand: Sequence[int], roi: Sequence[int], div: Sequence[int], fits: Any) -> tuple[int, int, int]:
    """`cand` grown one divisor at a time on the axis furthest below `roi` (relatively) while `fits(roi)`:
    the proportional candidates step coarsely, this takes what memory is left."""
    out = [int(c) for c in cand]
    while True:
        axes = sorted((a for a in range(3) if out[a] + div[a] <= roi[a]), key=lambda a: out[a] / roi[a])
        for a in axes:
            trial = list(out)
            trial[a] += int(div[a])
            if fits(trial):
                out = trial
                break
        else:
            return tuple(out)  # type: ignore[return-value]


@dataclass
class GpuPlan:
    """The ROI and batch chosen for `gpu` (the smallest free memory of the ranks' GPUs) and why."""

    gpu: str
    free_bytes: int
    total_bytes: int
    budget_bytes: int
    roi: list[int]
    batch_size: int
    step_bytes: int
    configured_roi: list[int]
    act_per_voxel: float
    params: int
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        return (f"GPU {self.gpu}: {self.free_bytes / GB:.1f} GB free of {self.total_bytes / GB:.1f} GB; ROI "
                f"{'x'.join(map(str, self.roi))}, batch {self.batch_size}: {self.reason}")


def plan_gpu(cfg: Mapping[str, Any], gpus: int = 1, probe: Sequence[GpuInfo] | None = None) -> GpuPlan | None:
    """The ROI and batch of `cfg` (sections network, data, clicks, training) for `gpus` ranks on this node,
    from the smallest free memory among their GPUs (`probe`, default: gpu_memory of devices 0..gpus-1, or
    LOCAL_RANK's under torchrun). None without a GPU or with `data.gpu_memory_fraction` null (ROI and batch
    kept as set). InputError when not even the smallest ROI fits, naming what to set."""
    from petclick.networks.roi import roi_divisors

    data = cfg["data"]
    fraction = data.get("gpu_memory_fraction", 0.85)
    if fraction is None:
        return None
    if probe is None:
        under_torchrun = "LOCAL_RANK" in os.environ
        probe = gpu_memory(None if under_torchrun else list(range(max(1, int(gpus)))))
    if not probe:
        return None
    gpu = min(probe, key=lambda g: g.free)
    budget = int(gpu.free * float(fraction))
    net = cfg["network"]
    kwargs = dict(net.get("kwargs") or {})
    div = roi_divisors(net["name"], **kwargs)
    roi = [int(r) for r in data["roi"]]
    crops = int(data.get("num_crops", 1))
    batch = int(data.get("batch_size", 1))
    max_batch = max(batch, int(data.get("max_batch_size") or batch))
    fp = footprint(cfg)
    amp = bool(cfg["training"].get("amp", True))
    name = f"cuda:{gpu.index} ({gpu.name})"
    fits = lambda r, b: step_bytes(fp, r, b * crops, gpus, amp) <= budget  # noqa: E731
    for cand in candidate_rois(roi, div):
        if not fits(cand, batch):
            continue
        cand = _grow(cand, roi, div, lambda r: fits(r, batch))
        best = batch
        while best < max_batch and step_bytes(fp, cand, (best + 1) * crops, gpus, amp) <= budget:
            best += 1
        need = step_bytes(fp, cand, best * crops, gpus, amp)
        why = ("the configured ROI fits" if list(cand) == roi else
               f"the configured {'x'.join(map(str, roi))} needs {step_bytes(fp, roi, batch * crops, gpus, amp) / GB:.1f} GB")
        why += (f"; {best * crops} patches of {'x'.join(map(str, cand))} need {need / GB:.1f} GB of the "
                f"{budget / GB:.1f} GB budget "
                f"(data.gpu_memory_fraction {fraction}; {fp.act_per_voxel:.0f} activation bytes per voxel measured, "
                f"{fp.params / 1e6:.1f} M parameters)")
        return GpuPlan(gpu=name, free_bytes=gpu.free, total_bytes=gpu.total, budget_bytes=budget, roi=list(cand),
                       batch_size=best, step_bytes=need, configured_roi=roi, act_per_voxel=round(fp.act_per_voxel, 1),
                       params=fp.params, reason=why)
    smallest = candidate_rois(roi, div)[-1]
    raise InputError("data.roi", f"GPU {name} has {gpu.free / GB:.1f} GB free ({budget / GB:.1f} GB at "
                                 f"data.gpu_memory_fraction {fraction}); even the ROI {'x'.join(map(str, smallest))} at "
                                 f"batch {batch} x {crops} crops needs "
                                 f"{step_bytes(fp, smallest, batch * crops, gpus, amp) / GB:.1f} GB. Set a smaller data.roi "
                                 "(a multiple of " + "x".join(map(str, div)) + "), fewer data.num_crops, a smaller "
                                 "network (network.kwargs.init_filters), or free the GPU; data.gpu_memory_fraction: "
                                 "null keeps the ROI and batch as set")


def apply_gpu_plan(cfg: dict[str, Any], gpus: int = 1, probe: Sequence[GpuInfo] | None = None) -> GpuPlan | None:
    """Set `cfg`'s data.roi and data.batch_size from plan_gpu (in place); returns the plan (None: unchanged)."""
    plan = plan_gpu(cfg, gpus, probe)
    if plan is not None:
        cfg["data"] = {**cfg["data"], "roi": list(plan.roi), "batch_size": int(plan.batch_size)}
    return plan


def no_gpu_line(cfg: Mapping[str, Any]) -> str:
    """What the plan says when it saw no GPU (or was told not to look)."""
    roi = "x".join(str(int(r)) for r in cfg["data"]["roi"])
    if cfg["data"].get("gpu_memory_fraction", 0.85) is None:
        return f"GPU: not probed (data.gpu_memory_fraction null): ROI {roi}, batch {cfg['data'].get('batch_size', 1)} as set"
    return (f"GPU: none found on this machine: the preset's ROI {roi} and batch {cfg['data'].get('batch_size', 1)} "
            "are kept (on a GPU node the plan fits them to its free memory)")
