"""Per-network size, speed and memory: parameters, one forward pass on an ROI (optionally a
training step), and optionally one whole-body sliding-window pass. Prints a table.

    python benchmarks/bench_networks.py [--networks segresnet dints swinunetr] [--preset autopet|tiny]
        [--kwargs '{"dints": {"channel_mul": 0.5}}'] [--roi 192 192 384] [--in-channels 4]
        [--device cpu|cuda] [--amp] [--amp-dtype fp16|bf16] [--channels-last] [--repeats 3]
        [--batch 1] [--train-step] [--whole-body] [--shape 400 400 326] [--overlap 0.625]
        [--sw-batch-size 1] [--threads N]

Each (network, measurement) runs in its own child process, so "peak MB" is its own peak: on CUDA
``torch.cuda.max_memory_allocated``; on CPU the child's peak resident memory minus what it held
before building the network (imports excluded). Times are the median of `--repeats` runs after
one warm-up run. Without --roi every network uses its bundle's default ROI (fitted to --shape
and to the network's divisor). --whole-body runs MONAI's SlidingWindowInfererAdapt (Gaussian
blending) over a random (1, C, *shape) volume, the setting of the stock MONAI reference figures (docs/benchmarks/networks.md).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import statistics
import sys
import time
from typing import Any

#: Default ROI per network (autopet preset): segresnet as trained in issue 5, swinunetr issue 6.
DEFAULT_ROI = {"segresnet": (192, 192, 384), "dints": (128, 128, 128), "swinunetr": (128, 128, 128)}
#: Tiny configurations for a quick CPU check of the script itself.
TINY_KWARGS = {
    "segresnet": {"init_filters": 8, "blocks_down": [1, 2, 2, 4]},
    "dints": {"channel_mul": 0.25, "num_blocks": 4, "num_depths": 3},
    "swinunetr": {"feature_size": 12, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 2, 2]},
}


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device, repeats: int) -> float:
    fn()  # warm-up (cudnn autotuning, allocator)
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(name: str, kwargs: dict[str, Any], args: argparse.Namespace, mode: str) -> dict[str, Any]:
    """One network, one mode ("forward" | "train" | "whole_body"); runs in its own child process
    so the CPU peak-RSS figure belongs to that mode alone."""
    import torch

    from petclick.networks import as_list, build_network, count_parameters, cover_roi, fit_roi

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = device.type == "cuda"
    base_rss = _rss_mb()
    model = build_network(name, args.in_channels, 1, **kwargs).to(device)
    fmt = torch.channels_last_3d if args.channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    roi = fit_roi(args.roi or DEFAULT_ROI[name], args.shape, name, **kwargs)
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[args.amp_dtype]
    autocast = lambda: torch.autocast(device.type, dtype=dtype, enabled=args.amp)  # noqa: E731
    row: dict[str, Any] = {"network": name, "params_M": count_parameters(model) / 1e6, "roi": roi}
    x = None if mode == "whole_body" else torch.randn(args.batch, args.in_channels, *roi, device=device).to(memory_format=fmt)

    def reset_peak():
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)

    def peak_mb() -> float:
        if device.type == "cuda":
            return torch.cuda.max_memory_allocated(device) / 2**20
        return _rss_mb() - base_rss

    model.eval()

    def forward():
        with torch.inference_mode(), autocast():
            model(x)

    if mode == "forward":
        reset_peak()
        row["forward_s"] = _timed(forward, device, args.repeats)
        row["forward_MB"] = peak_mb()

    if mode == "train":
        from monai.losses import DiceCELoss

        loss_fn = DiceCELoss(sigmoid=True)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        scaler = torch.amp.GradScaler(device.type, enabled=args.amp and dtype == torch.float16 and device.type == "cuda")
        y = (torch.rand(args.batch, 1, *roi, device=device) > 0.9).float()
        model.train()

        def step():
            opt.zero_grad(set_to_none=True)
            with autocast():
                outs = as_list(model(x))
                loss = sum(
                    loss_fn(o, torch.nn.functional.interpolate(y, size=o.shape[2:], mode="nearest")) / 2**i
                    for i, o in enumerate(outs)
                )
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()

        reset_peak()
        row["train_step_s"] = _timed(step, device, args.repeats)
        row["train_MB"] = peak_mb()

    if mode == "whole_body":
        from monai.inferers import SlidingWindowInfererAdapt

        window = cover_roi(roi, args.shape, name, **kwargs) if args.cover_roi else roi
        row["window"] = "x".join(str(r) for r in window)
        inferer = SlidingWindowInfererAdapt(
            roi_size=window, sw_batch_size=args.sw_batch_size, overlap=args.overlap, mode="gaussian"
        )
        volume = torch.randn(1, args.in_channels, *args.shape, device=device).to(memory_format=fmt)

        def whole_body():
            with torch.inference_mode(), autocast():
                inferer(volume, model)

        reset_peak()
        row["whole_body_s"] = _timed(whole_body, device, max(1, args.repeats))
        row["whole_body_MB"] = peak_mb()
    return row


def _child(queue, name, kwargs, args, mode):
    try:
        queue.put(measure(name, kwargs, args, mode))
    except Exception as exc:  # report, keep the other networks going
        queue.put({"network": name, "error": f"{type(exc).__name__}: {exc}"})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--networks", nargs="+", default=["segresnet", "dints", "swinunetr"])
    parser.add_argument("--preset", choices=["autopet", "tiny"], default="autopet")
    parser.add_argument("--kwargs", default="{}", help='JSON {"network": {kwarg: value}} overriding the preset')
    parser.add_argument("--roi", nargs=3, type=int, default=None)
    parser.add_argument("--no-cover-roi", dest="cover_roi", action="store_false",
                        help="whole body: keep the fitted ROI instead of growing it to cover a slightly longer axis "
                             "(what petclick's inference does, petclick.networks.cover_roi)")
    parser.add_argument("--in-channels", type=int, default=4)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", action="store_true")
    parser.add_argument("--amp-dtype", choices=["fp16", "bf16"], default="fp16")
    parser.add_argument("--channels-last", action="store_true", help="channels_last_3d memory format")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-step", action="store_true", help="also time one AdamW step with Dice-CE (deep supervision)")
    parser.add_argument("--whole-body", action="store_true", help="also time one SlidingWindowInfererAdapt pass over --shape")
    parser.add_argument("--shape", nargs=3, type=int, default=[400, 400, 326])
    parser.add_argument("--overlap", type=float, default=0.625)
    parser.add_argument("--sw-batch-size", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    args = parser.parse_args(argv)
    args.shape = tuple(args.shape)
    overrides = json.loads(args.kwargs)

    ctx = mp.get_context("spawn")
    rows = []
    for name in args.networks:
        kwargs = dict(TINY_KWARGS.get(name, {}) if args.preset == "tiny" else {})
        kwargs.update(overrides.get(name, {}))
        modes = ["forward"] + ["train"] * args.train_step + ["whole_body"] * args.whole_body
        row: dict[str, Any] = {}
        for mode in modes:
            queue = ctx.Queue()
            proc = ctx.Process(target=_child, args=(queue, name, kwargs, args, mode))
            proc.start()
            row.update(queue.get())
            proc.join()
            if "error" in row:
                break
        rows.append(row)

    extra = (" amp-" + args.amp_dtype if args.amp else "") + (" channels_last_3d" if args.channels_last else "")
    print(f"device {args.device}{extra}, {args.in_channels} input channels, batch {args.batch}, preset {args.preset}")
    cols = ["network", "params_M", "roi", "forward_s", "forward_MB"]
    if args.train_step:
        cols += ["train_step_s", "train_MB"]
    if args.whole_body:
        cols += ["window", "whole_body_s", "whole_body_MB"]
        print(f"whole body {'x'.join(map(str, args.shape))}, overlap {args.overlap}, sw_batch_size {args.sw_batch_size}")
    print("| " + " | ".join(cols) + " |")
    print("|" + " --- |" * len(cols))
    for row in rows:
        if "error" in row:
            print(f"| {row['network']} | error: {row['error']} |")
            continue
        cells = []
        for c in cols:
            v = row.get(c, "")
            if isinstance(v, float):
                v = f"{v:.3f}" if c.endswith("_s") else f"{v:.2f}" if c == "params_M" else f"{v:.0f}"
            elif isinstance(v, tuple):
                v = "x".join(map(str, v))
            cells.append(str(v))
        print("| " + " | ".join(cells) + " |")
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
