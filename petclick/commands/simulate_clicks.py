"""`petclick simulate-clicks`: official-compatible tumour and background clicks for one case, for every
case of a dataset (`--dataroot`: parallel over cases, resumable, with a progress bar), or a click-file check."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from petclick.clicks.simulate import simulate_clicks
from petclick.commands.argtypes import bounded
from petclick.core.errors import InputError
from petclick.io.clickfile import read_clicks, write_clicks
from petclick.io.images import check_binary, check_same_grid, checked_pet, load_volume


_non_negative_int = bounded(int, 0)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate-clicks", help="simulate clicks by the official autoPET IV rule (or check a click file)",
        description="Tumour clicks at the centres (max EDT) of up to BUDGET randomly drawn lesion components "
                    "(26-connectivity), then boundary clicks cycling over them; background clicks the same way on "
                    "the components of PET > p99.75 of non-lesion PET. With --check, validate an existing click "
                    "file against the PET grid and the budget instead.")
    p.add_argument("--label", type=Path, help="lesion mask NIfTI (0/1) on the PET grid (one case)")
    p.add_argument("--pet", type=Path, help="PET NIfTI (SUV) (one case)")
    p.add_argument("--out", type=Path, help="click JSON to write (one case; required unless --check)")
    p.add_argument("--dataroot", type=Path, default=None,
                   help="every labelled case of an autoPET-layout folder (imagesTr/, labelsTr/): writes "
                        "<case>_clicks.json under --out-dir, in parallel, skipping cases already written")
    p.add_argument("--out-dir", type=Path, default=None, help="with --dataroot: where click files go (default DATAROOT/clicks)")
    p.add_argument("--jobs", type=_non_negative_int, default=0,
                   help="with --dataroot: worker processes (default 0: the cores this process may use)")
    p.add_argument("--no-progress", action="store_true", help="with --dataroot: no progress bar")
    p.add_argument("--budget", type=_non_negative_int, default=10, help="clicks of each kind (default 10)")
    p.add_argument("--seed", type=int, default=42, help="seed of the component draw and boundary choice (default 42)")
    p.add_argument("--center-offset", type=_non_negative_int, default=0,
                   help="max random shift (voxels) of centre clicks, applied only inside the component (default 0)")
    p.add_argument("--edge-offset", type=_non_negative_int, default=0,
                   help="max random shift (voxels) of boundary clicks, applied only inside the component (default 0)")
    p.add_argument("--format", choices=("plain", "gc"), default="plain",
                   help="plain {tumor, background} or grand-challenge 'Multiple points' JSON (default plain)")
    p.add_argument("--check", type=Path, metavar="CLICKS",
                   help="validate this click file (schema, integer in-volume voxels, at most BUDGET per kind) and exit")
    p.set_defaults(func=run)


def simulate_case(label_path: str, pet_path: str, out: str, budget: int, seed: int, center_offset: int,
                  edge_offset: int, fmt: str) -> tuple[int, int]:
    """Simulate and write one case's clicks (a worker of the --dataroot mode); (tumour, background) counts."""
    pet = checked_pet(load_volume(pet_path))
    label = load_volume(label_path)
    check_same_grid(pet, label, "label")
    check_binary(label)
    clicks = simulate_clicks(label.array.astype(np.uint8), pet.array, budget=budget, seed=seed,
                             center_offset=center_offset, edge_offset=edge_offset)
    write_clicks(out, clicks, fmt)
    return len(clicks.tumor), len(clicks.background)


def _done(path: Path, budget: int) -> bool:
    """A click file already written (and readable): the --dataroot mode resumes past it."""
    if not path.is_file():
        return False
    try:
        read_clicks(path, budget=budget)
        return True
    except Exception:  # noqa: BLE001 - a half-written or bad file is simulated again
        return False


def run_dataroot(args: argparse.Namespace) -> int:
    """Every labelled case of --dataroot: click files under --out-dir, cases in parallel, written ones skipped."""
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from tqdm import tqdm

    from petclick.io.datalist import label_cases
    from petclick.training.threads import available_cores

    root = args.dataroot
    cases = label_cases(root)
    if not cases:
        raise InputError(root / "labelsTr", "no label files (<case>.nii.gz) to simulate clicks for")
    out_dir = args.out_dir or root / "clicks"
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs: list[tuple] = []
    for case in cases:
        pet = next((p for p in (root / "imagesTr" / f"{case}_0001.nii.gz", root / "imagesTr" / f"{case}_0001.nii")
                    if p.is_file()), None)
        if pet is None:
            raise InputError(root / "imagesTr" / f"{case}_0001.nii.gz", f"missing PET file for labelled case {case}")
        label = next(p for p in (root / "labelsTr" / f"{case}.nii.gz", root / "labelsTr" / f"{case}.nii") if p.is_file())
        out = out_dir / f"{case}_clicks.json"
        if not _done(out, args.budget):
            jobs.append((case, str(label), str(pet), str(out)))
    skipped = len(cases) - len(jobs)
    workers = max(1, min(len(jobs) or 1, args.jobs or available_cores()))
    bar = tqdm(total=len(cases), initial=skipped, unit="case", disable=args.no_progress, desc="simulate-clicks")
    failures: list[str] = []
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(simulate_case, label, pet, out, args.budget, args.seed, args.center_offset,
                               args.edge_offset, args.format): case for case, label, pet, out in jobs}
        for fut in as_completed(futures):
            try:
                fut.result()
            except InputError as exc:
                failures.append(f"{futures[fut]}: {exc}")
            bar.update(1)
    bar.close()
    print(f"{out_dir}: {len(jobs) - len(failures)} click files written, {skipped} already there (resumed), "
          f"{len(failures)} failed ({workers} workers)")
    for line in failures:
        print(f"  {line}")
    return 2 if failures else 0


def run(args: argparse.Namespace) -> int:
    if args.dataroot is not None:
        if args.label or args.pet or args.out or args.check:
            raise InputError(None, "--dataroot simulates every case; it goes without --label, --pet, --out and --check")
        return run_dataroot(args)
    if args.label is None or args.pet is None:
        raise InputError(None, "simulate-clicks needs --label and --pet (one case) or --dataroot DIR (every case)")
    pet = checked_pet(load_volume(args.pet))
    label = load_volume(args.label)
    check_same_grid(pet, label, "label")
    check_binary(label)
    if args.check is not None:
        clicks = read_clicks(args.check, shape=pet.array.shape, budget=args.budget)
        lesion = label.array != 0
        inside = sum(bool(lesion[p]) for p in clicks.tumor)
        print(f"{args.check}: {len(clicks.tumor)} tumour ({inside} inside the label) and "
              f"{len(clicks.background)} background clicks, valid for {args.pet} (budget {args.budget})")
        return 0
    if args.out is None:
        raise InputError(None, "simulate-clicks needs --out FILE (or --check CLICKS)")
    if args.out.is_dir():
        raise InputError(args.out, "is a folder; --out must name a click JSON file")
    clicks = simulate_clicks(label.array.astype(np.uint8), pet.array, budget=args.budget, seed=args.seed,
                             center_offset=args.center_offset, edge_offset=args.edge_offset)
    write_clicks(args.out, clicks, args.format)
    print(f"wrote {len(clicks.tumor)} tumour and {len(clicks.background)} background clicks to {args.out}")
    return 0
