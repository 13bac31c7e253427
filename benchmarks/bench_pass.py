"""One sliding-window pass under every inference setting, in one run on the same volume: time,
peak memory, and Dice and max |dp| against a float32 reference. Prints a table.

    python benchmarks/bench_pass.py [--device cpu|cuda] [--preset demo|autopet] [--network segresnet]
        [--kwargs '{"init_filters": 16}'] [--checkpoint model.pt] [--shape 200 200 326] [--no-crop]
        [--rounds 5] [--variants NAME ...] [--list] [--diagnose] [--json OUT]

CPU (this project's machines):  python benchmarks/bench_pass.py --preset demo --shape 200 200 326
GPU (a lent device):            python benchmarks/bench_pass.py --device cuda --preset autopet \\
                                    --shape 400 400 326 --no-crop --diagnose

The volume is a phantom (petclick.phantoms.generate_case, clicks from the official simulator)
preprocessed and click-encoded as inference does (body crop unless --no-crop). The network is
the bundle template's `--preset` network (random weights, seed 0) or `--checkpoint`'s; the ROI
and overlap come from the preset's `infer` section (training ROI when it has none).

Each variant is one way to run the pass (VARIANTS below: stock MONAI, petclick's settings one at
a time, then combined). All variants are built and warmed up first ("first s": the first pass,
compile and export included), then run `--rounds` times interleaved, each round in a rotated
order, so load changes on a shared machine hit every variant alike; medians are reported with
the load average. The reference is a float32 PyTorch pass with petclick's window (cover_roi).
Peak memory: CUDA: torch.cuda.max_memory_allocated above what was allocated before the pass;
CPU: the growth of resident memory during the variant's first pass (sampled every 2 ms; it also
counts allocator and ONNX Runtime arena growth, so it is approximate). Dice is on p > 0.5 masks
(1 when both are empty); `diff vox` counts voxels whose mask differs from the reference.

--diagnose adds the measurements that separate the hypotheses about the bf16 + channels_last_3d
regression (docs/benchmarks/passes.md): a per-window profile (convolution, normalisation and
layout-copy time and counts, the convolution kernels chosen), the dtype InstanceNorm runs in
under autocast, and whether MONAI's adaptive inferer fell back to buffered or CPU stitching.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from petclick.config.packaged import BUNDLES  # noqa: E402
from petclick.config.presets import get_preset  # noqa: E402
from petclick.core.yamlio import deep_merge, read_yaml  # noqa: E402


@dataclass
class Variant:
    """One way to run the pass. Keys of `s` (all optional): stock (MONAI's inferer without device,
    the network called as is, PyTorch's own Conv3d), window ("cover": petclick's cover_roi,
    "preset": the preset ROI, or a 3-list), overlap, sw_batch_size, backend (torch | onnxruntime),
    amp (None | float16 | bfloat16), channels_last, cudnn_benchmark, compile (torch.compile mode),
    buffer_steps, threads, fast_conv (petclick's oneDNN Conv3d on CPU, default on),
    volume_channels_last (the whole input volume in channels_last_3d, as bench_networks.py does)."""

    name: str
    s: dict[str, Any]
    devices: tuple[str, ...] = ("cpu", "cuda")
    note: str = ""


def _v(name: str, devices=("cpu", "cuda"), note: str = "", **s: Any) -> Variant:
    return Variant(name, s, tuple(devices), note)


VARIANTS: list[Variant] = [
    # --- stock MONAI (SlidingWindowInfererAdapt, preset ROI; fp16 autocast on GPU: the stock reference setting)
    _v("stock", stock=True, window="preset", note="MONAI SlidingWindowInfererAdapt, preset ROI"),
    _v("stock-fp32", ("cuda",), stock=True, window="preset", amp=None),
    # --- petclick before this change: cover_roi, PyTorch (oneDNN Conv3d on CPU), fp16 AMP on GPU
    _v("petclick-torch", backend="torch", note="cover_roi; CPU: oneDNN Conv3d (runtime/cpu.py)"),
    # --- CPU settings one at a time
    _v("torch-no-fast-conv", ("cpu",), backend="torch", fast_conv=False),
    _v("torch-1-thread", ("cpu",), backend="torch", threads=1),
    _v("torch-channels-last", ("cpu",), backend="torch", channels_last=True),
    _v("torch-bf16", ("cpu",), backend="torch", amp="bfloat16", fast_conv=False, note="CPU autocast bf16"),
    _v("torch-compile", ("cpu",), backend="torch", compile="default"),
    _v("torch-compile-bf16", ("cpu",), backend="torch", compile="default", amp="bfloat16"),
    _v("onnxruntime", ("cpu",), backend="onnxruntime", note="the new CPU default (backend auto)"),
    _v("onnxruntime-1-thread", ("cpu",), backend="onnxruntime", threads=1),
    _v("onnxruntime-sw2", ("cpu",), backend="onnxruntime", sw_batch_size=2),
    _v("onnxruntime-overlap-0.125", ("cpu",), backend="onnxruntime", overlap=0.125),
    _v("onnxruntime-window-x1.5", ("cpu",), backend="onnxruntime", window="x1.5",
       note="ROI 1.5x per axis (then cover_roi)"),
    # --- GPU settings one at a time (on top of petclick-torch: fp16 AMP, cover_roi)
    _v("bf16", ("cuda",), amp="bfloat16"),
    _v("channels-last", ("cuda",), channels_last=True),
    _v("cudnn-benchmark", ("cuda",), cudnn_benchmark=True),
    _v("sw2", ("cuda",), sw_batch_size=2),
    _v("sw4", ("cuda",), sw_batch_size=4),
    _v("overlap-0.5", ("cuda",), overlap=0.5),
    _v("overlap-0.25", ("cuda",), overlap=0.25),
    _v("window-preset", ("cuda",), window="preset", note="no cover_roi"),
    _v("buffer-steps-4", ("cuda",), buffer_steps=4, note="MONAI buffered blending"),
    _v("compile", ("cuda",), compile="default"),
    _v("compile-max-autotune", ("cuda",), compile="max-autotune"),
    _v("cuda-graphs", ("cuda",), compile="reduce-overhead", note="torch.compile reduce-overhead"),
    # --- the bf16 + channels_last_3d regression, taken apart
    _v("bf16-cl", ("cuda",), amp="bfloat16", channels_last=True, note="petclick inferer, no cudnn.benchmark"),
    _v("bf16-cl-benchmark", ("cuda",), amp="bfloat16", channels_last=True, cudnn_benchmark=True),
    _v("bf16-cl-sw2-benchmark", ("cuda",), amp="bfloat16", channels_last=True, sw_batch_size=2,
       cudnn_benchmark=True, note="the stock reference's 0.745 s settings (bench_networks sets benchmark)"),
    _v("fp16-cl-benchmark", ("cuda",), channels_last=True, cudnn_benchmark=True),
    # docs/benchmarks/networks.md's two bench_networks.py rows, replayed: MONAI's adaptive inferer called with the
    # model, cudnn.benchmark on, cover_roi window; the slow one with model and volume channels_last
    _v("bench-networks-fp16", ("cuda",), stock=True, window="cover", cudnn_benchmark=True,
       note="networks.md 1.34 s row"),
    _v("bench-networks-bf16-cl-sw2", ("cuda",), stock=True, window="cover", amp="bfloat16", channels_last=True,
       volume_channels_last=True, sw_batch_size=2, cudnn_benchmark=True, note="networks.md 4.39 s row"),
    _v("bench-networks-bf16-cl-sw2-nc-volume", ("cuda",), stock=True, window="cover", amp="bfloat16",
       channels_last=True, sw_batch_size=2, cudnn_benchmark=True, note="same, volume left NCDHW"),
    _v("bench-networks-fp16-cl-sw2", ("cuda",), stock=True, window="cover", channels_last=True,
       volume_channels_last=True, sw_batch_size=2, cudnn_benchmark=True, note="same in fp16"),
    _v("bench-networks-bf16-sw2", ("cuda",), stock=True, window="cover", amp="bfloat16", sw_batch_size=2,
       cudnn_benchmark=True, note="same without channels_last"),
    # --- GPU combinations
    _v("fp16-benchmark-sw2", ("cuda",), cudnn_benchmark=True, sw_batch_size=2),
    _v("fp16-cl-benchmark-sw2-compile", ("cuda",), channels_last=True, cudnn_benchmark=True, sw_batch_size=2,
       compile="default"),
    _v("bf16-cl-benchmark-sw2-compile", ("cuda",), amp="bfloat16", channels_last=True, cudnn_benchmark=True,
       sw_batch_size=2, compile="default"),
    _v("fp16-cl-benchmark-sw2-graphs", ("cuda",), channels_last=True, cudnn_benchmark=True, sw_batch_size=2,
       compile="reduce-overhead"),
    _v("fp16-cl-benchmark-sw4-overlap0.5-compile", ("cuda",), channels_last=True, cudnn_benchmark=True,
       sw_batch_size=4, overlap=0.5, compile="default"),
]


# ----------------------------------------------------------------------------------------------
# the volume and the network


def bundle_settings(network: str, preset: str) -> dict[str, Any]:
    """petclick's preset merged with the bundle template's sections and presets[preset]."""
    tmpl = read_yaml(BUNDLES / network / "configs" / "hyper_parameters.yaml")
    per_preset = (tmpl.get("presets") or {}).get(preset, {})
    body = {k: v for k, v in tmpl.items() if k != "presets"}
    return deep_merge(deep_merge(get_preset(preset), body), per_preset)


def make_volume(args, pre: dict, encoding: dict | None) -> tuple[torch.Tensor, dict]:
    """(1, C, ...) network input of a phantom, as inference builds it, and facts about it."""
    from petclick.phantoms import generate_case
    from petclick.runtime.clickinput import ClickEncoder
    from petclick.runtime.preprocess import prepare_arrays

    case = generate_case("fdg_0000_0", seed=args.seed, shape=tuple(args.shape))
    pre = dict(pre, crop_body=not args.no_crop)
    prepared = prepare_arrays(pre, case.ct, case.pet, case.affine)
    x = ClickEncoder(encoding)(prepared, case.clicks)[None].float()
    x = x.as_tensor() if hasattr(x, "as_tensor") else x
    info = {"phantom": list(args.shape), "network_space": list(x.shape[2:]), "lesion_voxels": int(case.label.sum()),
            "clicks": [len(case.clicks.tumor), len(case.clicks.background)]}
    return x.contiguous(), info


def make_network(args, cfg: dict) -> tuple[torch.nn.Module, dict, str]:
    """The network (eval, CPU), its spec {name, kwargs} and where its weights come from."""
    from petclick.networks.factory import build_network
    from petclick.runtime.checkpoint import build_model, read_checkpoint

    if args.checkpoint:
        ckpt = read_checkpoint(args.checkpoint)
        return build_model(ckpt, "cpu"), dict(ckpt["network"]), f"checkpoint {args.checkpoint}"
    kwargs = dict(cfg["network"].get("kwargs") or {})
    kwargs.update(json.loads(args.kwargs or "{}"))
    torch.manual_seed(0)
    net = build_network(cfg["network"]["name"], 4, 1, **kwargs).eval()
    return net, {"name": cfg["network"]["name"], "kwargs": kwargs}, "random weights (seed 0)"


# ----------------------------------------------------------------------------------------------
# measuring


class PeakRSS:
    """Peak resident memory of this process while the block runs, sampled every 2 ms (MB above start)."""

    def __enter__(self):
        self.start = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _sample(self):
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, self._rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())
        self.mb = (self.peak - self.start) / 2**20


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Runner:
    variant: Variant
    window: tuple[int, int, int]
    windows: int
    fn: Callable[[], torch.Tensor]
    threads: int | None
    inferer: Any
    first_s: float = 0.0
    peak_mb: float = float("nan")
    times: list[float] = field(default_factory=list)
    prob: torch.Tensor | None = None
    error: str = ""


def window_for(v: Variant, cfg_roi, shape, spec) -> tuple[int, int, int]:
    from petclick.networks.roi import cover_roi, roi_divisors

    win = v.s.get("window", "cover")
    if win == "preset":
        return tuple(int(r) for r in cfg_roi)
    if isinstance(win, str) and win.startswith("x"):
        div = roi_divisors(spec["name"], **spec["kwargs"])
        f = float(win[1:])
        roi = [max(d, int(round(r * f / d)) * d) for r, d in zip(cfg_roi, div)]
        return cover_roi(roi, shape, spec["name"], **spec["kwargs"])
    if isinstance(win, (list, tuple)):
        return tuple(int(r) for r in win)
    return cover_roi(cfg_roi, shape, spec["name"], **spec["kwargs"])


def count_windows(shape, roi, overlap) -> int:
    from monai.data.utils import dense_patch_slices

    padded = [max(s, r) for s, r in zip(shape, roi)]
    interval = [r if r == s else max(1, int(r * (1 - overlap))) for s, r in zip(padded, roi)]
    return len(dense_patch_slices(padded, roi, interval))


@contextlib.contextmanager
def pytorch_conv3d():
    """PyTorch's own Conv3d inside the block (petclick's inference otherwise switches to oneDNN)."""
    import petclick.runtime.window as window_mod
    from petclick.runtime.cpu import disable_fast_cpu_conv3d, enable_fast_cpu_conv3d

    saved = window_mod.enable_fast_cpu_conv3d
    window_mod.enable_fast_cpu_conv3d = disable_fast_cpu_conv3d
    disable_fast_cpu_conv3d()
    try:
        yield
    finally:
        window_mod.enable_fast_cpu_conv3d = saved
        enable_fast_cpu_conv3d()


def build_runner(v: Variant, base: torch.nn.Module, x: torch.Tensor, cfg: dict, spec: dict,
                 device: torch.device) -> Runner:
    """The pass of variant `v` as a function returning logits (1, 1, ...) on the CPU."""
    from monai.inferers import SlidingWindowInfererAdapt

    from petclick.runtime.window import make_inferer, prepare_network, sliding_window_logits

    s = v.s
    infer = cfg["infer"]
    roi = window_for(v, infer["roi"] or cfg["data"]["roi"], x.shape[2:], spec)
    overlap = float(s.get("overlap", infer["overlap"]))
    sw = int(s.get("sw_batch_size", infer["sw_batch_size"]))
    preset_amp = "float16" if (infer.get("amp") and device.type == "cuda") else None
    amp = s.get("amp", preset_amp)
    threads = s.get("threads")
    model = copy.deepcopy(base).to(device).eval()
    xd = x.to(device)

    def autocast():
        if amp is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=getattr(torch, amp))

    if s.get("volume_channels_last"):
        xd = xd.contiguous(memory_format=torch.channels_last_3d)
    if s.get("stock"):
        inferer = SlidingWindowInfererAdapt(roi_size=list(roi), sw_batch_size=sw, overlap=overlap, mode="gaussian")
        if s.get("channels_last"):
            model = model.to(memory_format=torch.channels_last_3d)

        def net(w):
            out = model(w)
            return out[0] if isinstance(out, (list, tuple)) else out

        def fn():
            torch.backends.cudnn.benchmark = bool(s.get("cudnn_benchmark"))
            with torch.no_grad(), autocast(), pytorch_conv3d():
                out = inferer(inputs=xd, network=net)
            return torch.as_tensor(out).float()
    else:
        settings = {"backend": s.get("backend", "torch"), "channels_last": bool(s.get("channels_last")),
                    "compile": s.get("compile", "none"), "cudnn_benchmark": bool(s.get("cudnn_benchmark"))}
        if threads:
            torch.set_num_threads(int(threads))
        window_net = prepare_network(model, settings, device, arch=None)
        torch.set_num_threads(DEFAULT_THREADS)
        inferer = make_inferer(roi, overlap, sw, "gaussian", device, s.get("buffer_steps"))
        cuda_amp = amp if device.type == "cuda" else None
        cpu_amp = amp if device.type == "cpu" else None

        def fn():
            torch.backends.cudnn.benchmark = bool(s.get("cudnn_benchmark"))
            ctx = torch.autocast("cpu", dtype=getattr(torch, cpu_amp)) if cpu_amp else contextlib.nullcontext()
            with ctx, (contextlib.nullcontext() if s.get("fast_conv", True) else pytorch_conv3d()):
                return sliding_window_logits(window_net, xd, inferer, cuda_amp is not None, cuda_amp or "float16")

    return Runner(v, tuple(roi), count_windows(x.shape[2:], roi, overlap), fn, threads, inferer)


DEFAULT_THREADS = torch.get_num_threads()


def timed(r: Runner, device: torch.device) -> tuple[float, torch.Tensor]:
    if r.threads:
        torch.set_num_threads(int(r.threads))
    try:
        _sync(device)
        t0 = time.perf_counter()
        out = r.fn()
        _sync(device)
        return time.perf_counter() - t0, out
    finally:
        torch.set_num_threads(DEFAULT_THREADS)


def first_pass(r: Runner, device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        r.first_s, out = timed(r, device)
        r.peak_mb = (torch.cuda.max_memory_allocated(device) - before) / 2**20
    else:
        with PeakRSS() as mem:
            r.first_s, out = timed(r, device)
        r.peak_mb = mem.mb
    r.prob = torch.sigmoid(out[0, 0].float()).cpu()


def compare(prob: torch.Tensor, ref: torch.Tensor) -> dict[str, float]:
    a, b = prob > 0.5, ref > 0.5
    inter, total = int((a & b).sum()), int(a.sum()) + int(b.sum())
    dice = 1.0 if total == 0 else 2.0 * inter / total
    return {"dice": dice, "max_dp": float((prob - ref).abs().max()), "diff_vox": int((a ^ b).sum()),
            "ref_fg_vox": int(b.sum())}


# ----------------------------------------------------------------------------------------------
# diagnostics for the bf16 + channels_last_3d regression


def norm_dtypes(model: torch.nn.Module, x: torch.Tensor, amp: str, device: torch.device) -> dict[str, Any]:
    """The dtypes InstanceNorm layers get and give under autocast `amp` (one window)."""
    seen: list[tuple[str, str, str]] = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append((type(m).__name__, str(i[0].dtype), str(o.dtype))))
             for m in model.modules() if isinstance(m, torch.nn.modules.instancenorm._InstanceNorm)]
    try:
        with torch.no_grad(), torch.autocast(device.type, dtype=getattr(torch, amp)):
            model(x)
    finally:
        for h in hooks:
            h.remove()
    counts: dict[str, int] = {}
    for k, i, o in seen:
        counts[f"{k}: {i} -> {o}"] = counts.get(f"{k}: {i} -> {o}", 0) + 1
    return {"amp": amp, "layers": len(seen), "in->out": counts}


def window_profile(model: torch.nn.Module, x: torch.Tensor, amp: str | None, channels_last: bool,
                   benchmark: bool, device: torch.device) -> dict[str, Any]:
    """One window's operator profile: time and count of convolutions, normalisation and layout
    copies, and the convolution kernels used (CUDA)."""
    from torch.profiler import ProfilerActivity, profile

    torch.backends.cudnn.benchmark = benchmark
    fmt = torch.channels_last_3d if channels_last else torch.contiguous_format
    net = copy.deepcopy(model).to(device, memory_format=fmt).eval()
    xx = x.to(device).contiguous(memory_format=fmt)
    ctx = (lambda: torch.autocast(device.type, dtype=getattr(torch, amp))) if amp else contextlib.nullcontext
    with torch.no_grad(), ctx():
        for _ in range(2):
            net(xx)
        _sync(device)
        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with profile(activities=acts) as prof:
            net(xx)
            _sync(device)
    out: dict[str, Any] = {"amp": amp, "channels_last": channels_last, "cudnn_benchmark": benchmark}
    events = {e.key: e for e in prof.key_averages()}
    for g, key in (("conv", "aten::convolution"), ("norm", "aten::instance_norm"), ("copy", "aten::copy_")):
        e = events.get(key)
        out[f"{g}_calls"] = int(e.count) if e else 0
        out[f"{g}_cpu_ms"] = round((e.self_cpu_time_total if g == "copy" else e.cpu_time_total) / 1e3, 2) if e else 0.0
    events = list(events.values())
    if device.type == "cuda":
        kern = [e for e in events if e.device_type == torch.autograd.DeviceType.CUDA]
        dev_ms = lambda e: getattr(e, "self_device_time_total", getattr(e, "self_cuda_time_total", 0)) / 1e3  # noqa: E731
        out["gpu_ms"] = round(sum(dev_ms(e) for e in kern), 2)
        convk = sorted((e for e in kern if any(k in e.key.lower() for k in ("conv", "implicit", "gemm", "sm90", "xmma"))),
                       key=dev_ms, reverse=True)
        out["conv_kernels"] = [f"{dev_ms(e):.2f} ms x{e.count} {e.key[:90]}" for e in convk[:5]]
        normk = [e for e in kern if "norm" in e.key.lower()]
        out["norm_gpu_ms"] = round(sum(dev_ms(e) for e in normk), 2)
        copyk = [e for e in kern if any(k in e.key.lower() for k in ("copy", "nchwtonhwc", "nhwctonchw", "transpose"))]
        out["copy_gpu_ms"] = round(sum(dev_ms(e) for e in copyk), 2)
    return out


@pytorch_conv3d()
def diagnose(base: torch.nn.Module, roi, device: torch.device) -> list[dict[str, Any]]:
    """The network as PyTorch runs it (its own Conv3d): InstanceNorm dtypes, then window profiles."""
    x = torch.rand(1, 4, *roi)
    rows: list[dict[str, Any]] = []
    amps = ["float16", "bfloat16"] if device.type == "cuda" else ["bfloat16"]
    for amp in amps:
        rows.append({"instance_norm_under_autocast": norm_dtypes(copy.deepcopy(base).to(device), x.to(device), amp, device)})
    combos = [(None, False, False), (None, True, False)]
    for amp in amps:
        combos += [(amp, False, False), (amp, True, False), (amp, True, True), (amp, False, True)]
    if device.type != "cuda":
        combos = [c for c in combos if not c[2]]
    for amp, cl, bench in combos:
        rows.append({"window_profile": window_profile(base, x, amp, cl, bench, device)})
    return rows


# ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--preset", default="demo", choices=["demo", "autopet"])
    p.add_argument("--network", default="segresnet", choices=["segresnet", "dints", "swinunetr"])
    p.add_argument("--kwargs", default=None, help="JSON merged into the network kwargs, e.g. '{\"init_filters\": 16}'")
    p.add_argument("--checkpoint", default=None, help="a petclick model.pt (its network and weights)")
    p.add_argument("--shape", type=int, nargs=3, default=[200, 200, 326], help="phantom grid (voxels)")
    p.add_argument("--seed", type=int, default=3, help="phantom seed")
    p.add_argument("--no-crop", action="store_true", help="keep the whole grid (no body crop)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--variants", nargs="*", default=None, help="names to run (default: all for the device)")
    p.add_argument("--skip", nargs="*", default=[], help="names to leave out")
    p.add_argument("--list", action="store_true", help="list the variants and exit")
    p.add_argument("--all-devices", action="store_true",
                   help="also the other device's variants (a CPU smoke test of the GPU code paths)")
    p.add_argument("--diagnose", action="store_true", help="the bf16 + channels_last_3d measurements")
    p.add_argument("--json", default=None, help="also write the rows here")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("--device cuda: CUDA is not available here", file=sys.stderr)
        return 2
    chosen = [v for v in VARIANTS if (device.type in v.devices or args.all_devices) and (args.variants is None or v.name in args.variants)
              and v.name not in args.skip]
    if args.list:
        for v in VARIANTS:
            print(f"{v.name:42s} {','.join(v.devices):9s} {json.dumps(v.s)} {v.note}")
        return 0

    cfg = bundle_settings(args.network, args.preset)
    from petclick.runtime.preprocess import preprocess_config

    base, spec, weights = make_network(args, cfg)
    if args.checkpoint:
        ckpt_pre = dict(torch.load(args.checkpoint, map_location="cpu", weights_only=True)["preprocess"])
        pre, encoding = preprocess_config(ckpt_pre), ckpt_pre.get("encoding")
    else:
        data = {k: v for k, v in cfg["data"].items() if k != "spacing"}  # "auto": the phantom's own spacing
        pre, encoding = preprocess_config(data), cfg["clicks"].get("encoding")
    x, info = make_volume(args, pre, encoding)
    load0 = os.getloadavg()
    print(f"# bench_pass: {args.preset} {spec['name']} {json.dumps(spec['kwargs'])}, {weights}")
    print(f"# device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else os.cpu_count()} "
          f"{'' if device.type == 'cuda' else 'CPUs'}), torch {torch.__version__}, threads {DEFAULT_THREADS}, "
          f"volume {info}, load average {load0[0]:.1f}")

    x = x.to(device)  # one copy of the volume on the device, shared by every variant
    ref_v = Variant("reference-fp32", {"backend": "torch", "amp": None})
    ref_r = build_runner(ref_v, base, x, cfg, spec, device)
    first_pass(ref_r, device)
    ref = ref_r.prob
    runners = []
    for v in chosen:
        try:
            r = build_runner(v, base, x, cfg, spec, device)
            first_pass(r, device)
        except Exception as exc:  # a setting this machine cannot run is reported, not fatal
            r = Runner(v, (0, 0, 0), 0, lambda: None, None, None, error=f"{type(exc).__name__}: {str(exc)[:120]}")
        runners.append(r)
        print(f"#   built {v.name}: first pass {r.first_s:.2f} s {r.error}", flush=True)
    live = [r for r in runners if not r.error]
    for i in range(args.rounds):
        order = live[i % max(1, len(live)):] + live[:i % max(1, len(live))]
        for r in order:
            r.times.append(timed(r, device)[0])
    load1 = os.getloadavg()

    base_t = {r.variant.name: statistics.median(r.times) for r in live}
    stock_t = base_t.get("stock")
    before_t = base_t.get("petclick-torch")
    rows = []
    header = (f"{'variant':42s} {'window':>12s} {'win':>4s} {'first s':>8s} {'median s':>9s} {'min s':>7s} "
              f"{'x stock':>8s} {'x before':>8s} {'peak MB':>8s} {'Dice':>7s} {'max|dp|':>9s} {'diff vox':>8s}")
    print(header)
    for r in runners:
        row: dict[str, Any] = {"variant": r.variant.name, "settings": r.variant.s, "note": r.variant.note}
        if r.error:
            row["error"] = r.error
            print(f"{r.variant.name:42s} skipped: {r.error}")
            rows.append(row)
            continue
        med = statistics.median(r.times)
        row.update({"window": list(r.window), "windows": r.windows, "first_s": r.first_s, "median_s": med,
                    "min_s": min(r.times), "peak_mb": r.peak_mb, **compare(r.prob, ref)})
        if r.inferer is not None and getattr(r.inferer, "cpu_thresh", None) is not None:
            row["stitching_fell_back"] = True
        rows.append(row)
        xs = f"{stock_t / med:8.2f}" if stock_t else f"{'':8s}"
        xb = f"{before_t / med:8.2f}" if before_t else f"{'':8s}"
        print(f"{r.variant.name:42s} {'x'.join(map(str, r.window)):>12s} {r.windows:4d} {r.first_s:8.2f} {med:9.3f} "
              f"{min(r.times):7.3f} {xs} {xb} {r.peak_mb:8.0f} {row['dice']:7.4f} {row['max_dp']:9.2e} "
              f"{row['diff_vox']:8d}" + (" CPU-STITCHED" if row.get("stitching_fell_back") else ""))
    print(f"# {args.rounds} interleaved rounds; load average {load0[0]:.1f} -> {load1[0]:.1f}; reference "
          f"foreground {rows[0].get('ref_fg_vox', 0) if rows else 0} voxels; first pass of the reference "
          f"{ref_r.first_s:.2f} s")
    diag = []
    if args.diagnose:
        roi = window_for(Variant("d", {}), cfg["infer"]["roi"] or cfg["data"]["roi"], x.shape[2:], spec)
        diag = diagnose(base, roi, device)
        for d in diag:
            print("# diagnose", json.dumps(d))
    if args.json:
        Path(args.json).write_text(json.dumps({"info": info, "spec": spec, "weights": weights, "device": str(device),
                                               "load": [load0[0], load1[0]], "rows": rows, "diagnose": diag},
                                              indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
