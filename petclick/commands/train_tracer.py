"""`petclick train-tracer`: train the learned tracer classifier on a datalist (tracer from each case id)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from petclick.commands.argtypes import bounded
from petclick.core.errors import InputError
from petclick.networks.tracer import TRACER_NETWORKS


def run(args: argparse.Namespace) -> int:
    from petclick.commands.predict import resolve_device
    from petclick.training.tracer import TracerTraining, train_tracer

    try:
        kwargs = json.loads(args.network_kwargs)
    except json.JSONDecodeError as exc:
        raise InputError("--network-kwargs", f"not JSON ({exc})") from exc
    if not isinstance(kwargs, dict):
        raise InputError("--network-kwargs", "must be a JSON object, e.g. '{\"block_inplanes\": [8, 16, 32, 64]}'")
    if any(not 0 < f < 1 for f in args.head_cuts):
        raise InputError("--head-cuts", f"fractions must be in (0, 1), got {args.head_cuts}")
    settings = TracerTraining(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                              size=tuple(args.size), network=args.network, network_kwargs=kwargs, device=resolve_device(args.device),
                              head_cuts=tuple(args.head_cuts))
    summary = train_tracer(args.datalist, args.out, settings, splits=args.splits, dataroot=args.dataroot)
    n = summary["n_cases"]
    print(f"tracer classifier on {sum(n.values())} case(s) ({', '.join(f'{v} {k}' for k, v in n.items())}): "
          f"training accuracy {summary['accuracy']:.3f}, {summary['seconds_training']:.1f} s -> {summary['checkpoint']}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train-tracer", help="train the learned tracer classifier (coronal + sagittal MIPs, small MONAI network)",
        description="Trains a small 2D MONAI network on each case's coronal and sagittal maximum-intensity "
                    "projections to tell FDG from PSMA; the label is the tracer of the case id (fdg_/psma_). "
                    "Writes a self-describing checkpoint that `petclick predict/gc --tracer-model` use where a "
                    "case's tracer is unknown (instead of the MIP rule).")
    p.add_argument("--datalist", required=True, type=Path, help="datalist JSON (entries need 'pet')")
    p.add_argument("--splits", nargs="+", default=["training"], help="splits to train on (default: training)")
    p.add_argument("--dataroot", default=None, help="root of the datalist's relative paths (default: its folder)")
    p.add_argument("--out", required=True, type=Path, help="checkpoint to write (e.g. tracer.pt)")
    p.add_argument("--epochs", type=bounded(int, 1), default=30)
    p.add_argument("--batch-size", type=bounded(int, 2), default=8)
    p.add_argument("--lr", type=bounded(float, 0, lo_open=True), default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=bounded(int, 16), nargs=2, default=[64, 128], metavar=("INPLANE", "HEADFOOT"),
                   help="size each MIP is resized to (default 64 128)")
    p.add_argument("--network", choices=TRACER_NETWORKS.names(), default="resnet", help="MONAI 2D classifier")
    p.add_argument("--network-kwargs", default="{}", metavar="JSON", help="its settings, e.g. '{\"layers\": [1, 1, 1, 1]}'")
    p.add_argument("--head-cuts", type=float, nargs="*", default=[], metavar="FRACTION",
                   help="also train on every case without its head-most fraction(s), e.g. 0.15 0.3 (scans that "
                        "start at the neck or chest)")
    p.add_argument("--device", default="auto", help="auto (cuda when available, else cpu), cpu, cuda or cuda:N")
    p.set_defaults(func=run)
