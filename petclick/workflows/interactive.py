"""The interactive evaluation job: predictors through a challenge edition's protocol on a
datalist split, scored and reported (what `petclick interactive` and `petclick demo` run).

`protocol`: autopet-iv (11 click steps, official or error-driven) or autopet-v (initial
prediction plus corrective scribble steps, `steps` in all, 6 by default; each case's stroke
strategy from petclick.clicks.scribbles.case_strategies over the split's case ids, or `strategy`
for all; DMM and both AUC-DMM aggregations in the report).

Each case runs on an interactive session (petclick.inference.protocol.run_protocol), with the
job's incremental mode, tile-cache limit, click policy and post-processing (default: the rules
`petclick predict` and `gc` ship, petclick.postprocess.make_config(); None scores the network's
prob >= 0.5). Every report names its post-processing: the console header, and summary.json's
`scoring` (one line) and `postprocess` (the configuration, null when off). Under torchrun each rank evaluates its share of the
cases (petclick/workflows/shards.py) and rank 0 writes the merged report.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from petclick.core.errors import InputError
from petclick.inference.predictors import get_predictor
from petclick.inference.protocol import run_protocol
from petclick.io.clickfile import read_clicks
from petclick.io.clickpolicy import BUDGET, ClickPolicy
from petclick.io.datalist import entry_case_id, load_datalist, resolve_entry
from petclick.io.images import load_case
from petclick.metrics.cohort import require_evaluated, run_cases, tracer_of
from petclick.metrics.plots import plot_curves, save_case_mip
from petclick.metrics.report import format_summary, write_report, write_summary
from petclick.metrics.editions import edition
from petclick.postprocess import describe_config, make_config
from petclick.workflows.shards import Shards

log = logging.getLogger(__name__)


@dataclass
class InteractiveJob:
    """What to run: the main predictor, those compared with it, the datalist split and the report folder."""

    predictor: str | dict
    datalist: Path
    out: Path
    split: str = "testing"
    mode: str | None = None
    dataroot: Path | None = None
    save_predictions: bool = False
    compare: list[str] = field(default_factory=list)
    device: str = "cpu"
    algo_weights: dict[str, float] | None = None
    suv_threshold: float = 2.5
    cases: list[str] | None = None
    no_mip: bool = False
    click_policy: ClickPolicy | str = ClickPolicy.STRICT
    incremental: str | None = None
    tile_cache_mb: float | None = None
    first: str = "ensemble"
    fast_checkpoints: int | list[Path] | None = None   # a count, or a subset's checkpoints
    postprocess: dict | None = field(default_factory=make_config)
    protocol: str = "autopet-iv"
    steps: int | None = None
    strategy: str | None = None

    @property
    def n_steps(self) -> int:
        """Steps per case: `steps`, else the edition's count."""
        return edition(self.protocol).n_steps if self.steps is None else int(self.steps)

    @property
    def run_mode(self) -> str:
        """The protocol mode: `mode`, else the edition's first (official; scribbles for autopet-v)."""
        return edition(self.protocol).modes[0] if self.mode is None else self.mode

    def session_options(self) -> dict:
        """Keyword arguments of each case's InteractiveSession."""
        return {"mode": self.incremental, "tile_cache_mb": self.tile_cache_mb, "click_policy": self.click_policy,
                "postprocess": self.postprocess, "first": self.first, "fast_checkpoints": self.fast_checkpoints}


def _make(name: str | dict, args: InteractiveJob, weights: dict[str, float] | None):
    """A predictor by name, path or model choice by step (the one loader); ensembles get `weights`
    (None: their work_dir's input.yaml), the baseline the job's SUV threshold."""
    if name == "suv-threshold":
        return get_predictor(name, threshold=args.suv_threshold)
    return get_predictor(name, device=args.device, algo_weights=weights, threshold=args.suv_threshold)


def _folder_name(name: str, used: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).name or name) or "predictor"
    out, n = base, 2
    while out in used:
        out, n = f"{base}_{n}", n + 1
    used.add(out)
    return out


def run_interactive(args: InteractiveJob, shards: Shards | None = None) -> int:
    """Run every predictor of `args` through the protocol on the split (under torchrun: this rank's
    share of the cases, the report merged on rank 0); 0 when every predictor evaluated at least
    one case, else 1."""
    shards = shards or Shards.from_env(args.device)
    weights = args.algo_weights
    data = load_datalist(args.datalist)
    if args.split not in data or not isinstance(data[args.split], list):
        raise InputError(args.datalist, f"no split {args.split!r} (found {[k for k, v in data.items() if isinstance(v, list)]})")
    entries = data[args.split]
    if args.cases:
        entries = [e for e in entries if entry_case_id(e) in set(args.cases)]
        missing = set(args.cases) - {entry_case_id(e) for e in entries}
        if missing:
            raise InputError(args.datalist, f"cases not in split {args.split!r}: {sorted(missing)}")
    dataroot = args.dataroot or args.datalist.parent
    ed = edition(args.protocol)
    if args.run_mode not in ed.modes:
        raise InputError("--mode", f"the {args.protocol} protocol runs {list(ed.modes)}, not {args.run_mode!r}")
    if args.n_steps < 2:
        raise InputError("--steps", f"an AUC needs at least 2 steps, got {args.n_steps}")
    strategies = _strategies(args, data[args.split])
    names = [args.predictor, *args.compare]
    predictors = [_make(n, args, weights) for n in names]
    used: set[str] = set()
    outs = [args.out] if len(names) == 1 else [args.out / _folder_name(p.name, used) for p in predictors]
    results: list[tuple[list[dict], list[dict]]] = [([], []) for _ in predictors]

    order = [entry_case_id(e) for e in entries]
    for n, raw in enumerate(shards.share(entries), 1):
        case_id = entry_case_id(raw)
        tracer = tracer_of(case_id, raw)
        try:
            case, clicks = _load(raw, dataroot, case_id, args)
        except InputError as exc:
            log.warning("skipped %s: %s", case_id, exc)
            for _, skipped in results:
                skipped.append({"case": case_id, "reason": str(exc)})
            continue
        log.info("[%d/%d] %s", n, len(entries), case_id)
        for predictor, out, (rows, skipped) in zip(predictors, outs, results):
            fn = _case_runner(predictor, case, clicks, case_id, tracer, out, args, strategies.get(case_id))
            case_rows, case_skipped = run_cases([(case_id, fn)])
            rows.extend(case_rows)
            skipped.extend(case_skipped)

    results = [(shards.gather(rows, order, "case"), shards.gather(skipped, order, "case")) for rows, skipped in results]
    if not shards.is_main:
        return 0
    summaries = []
    for predictor, name, out, (rows, skipped) in zip(predictors, names, outs, results):
        meta = {"command": "interactive", "predictor": predictor.name, "predictor_arg": name, "mode": args.run_mode,
                "datalist": str(args.datalist), "split": args.split,
                "algo_weights": getattr(predictor, "algo_weights", None), "click_policy":
                ClickPolicy.parse(args.click_policy).value, "incremental": args.incremental,
                "postprocess": args.postprocess, "scoring": describe_config(args.postprocess)}
        if args.protocol != "autopet-iv":
            meta.update(protocol=args.protocol, n_steps=args.n_steps, strategies=strategies)
        summary = write_report(out, rows, skipped, meta, args.n_steps, args.protocol)
        summaries.append(summary)
        print(f"== {predictor.name} ({args.protocol}, {args.run_mode}; masks: {meta['scoring']}) -> {out}")
        print(format_summary(summary))
    if len(predictors) > 1:
        _write_comparison(args.out, predictors, outs, summaries)
    for summary in summaries:
        require_evaluated(summary, args.datalist)
    return 0


def _load(raw: dict, dataroot: Path, case_id: str, args: InteractiveJob):
    entry = resolve_entry(raw, dataroot)
    if "label" not in entry:
        raise InputError(args.datalist, f"{case_id}: the {args.split!r} entry has no 'label', so it cannot be scored")
    case = load_case(entry["image"], entry["pet"], entry["label"])
    clicks = None
    if "clicks" in entry and args.run_mode != "scribbles":   # scribbles come from the errors, not a file
        clicks = read_clicks(entry["clicks"], shape=case.shape, policy=args.click_policy, budget=BUDGET)
    elif args.run_mode == "official":
        raise InputError(args.datalist, f"{case_id}: the entry has no 'clicks' file, needed by the official protocol")
    return case, clicks


def _strategies(args: InteractiveJob, entries: list[dict]) -> dict[str, str]:
    """Stroke strategy per case of the split (scribbles mode; empty otherwise)."""
    if args.run_mode != "scribbles":
        return {}
    ids = [entry_case_id(e) for e in entries]
    if args.strategy is not None:
        return {c: args.strategy for c in ids}
    from petclick.clicks.scribbles import case_strategies

    return case_strategies(ids)


def _case_runner(predictor, case, clicks, case_id: str, tracer: str, out: Path, args: InteractiveJob,
                 strategy: str | None = None):
    """A closure running the protocol on one case, drawing its MIP from the step-0 and final masks."""
    final = args.n_steps - 1

    def fn():
        masks, used = {}, {}

        def keep(step, mask, step_clicks):
            if step in (0, final):
                masks[f"step {step}"] = mask
                used[f"step {step}"] = step_clicks.to_dict()

        save_dir = out / "predictions" if args.save_predictions else None
        rows = run_protocol(predictor, case, clicks, mode=args.run_mode, steps=range(args.n_steps), case_id=case_id,
                            tracer=tracer, save_dir=save_dir, on_step=None if args.no_mip else keep,
                            session={**args.session_options(), "tracer": tracer if tracer in ("fdg", "psma") else None},
                            protocol=args.protocol, strategy=strategy or "centerline")
        if not args.no_mip:
            save_case_mip(out / "mip" / f"{case_id}.png", case.pet.array, case.affine, case.label.array, masks,
                          clicks=used, tracer=tracer, title=f"{case_id} ({tracer}) - {predictor.name}, {args.run_mode}")
        return rows
    return fn


def _write_comparison(out: Path, predictors, outs, summaries) -> None:
    """OUT/compare.json (overall statistics side by side, keyed by report folder) and OUT/compare_curves.png."""
    table = {Path(o).name: {"predictor": p.name, "folder": str(o), "n_evaluated": s["n_evaluated"],
                            "n_skipped": s["n_skipped"], **s["overall"]}
             for p, o, s in zip(predictors, outs, summaries)}
    scoring = summaries[0].get("scoring")
    write_summary({"scoring": scoring, "predictors": table}, out / "compare.json")
    series = {name: s["per_step"] for name, s in zip(table, summaries) if s["n_evaluated"]}
    if series:
        plot_curves(out / "compare_curves.png", series, title="comparison")
    keys = tuple(k for k in ("dice_auc", "dmm_auc", "fpv_auc", "fnv_auc", "dice_final", "dmm_final", "fpv_final",
                             "fnv_final") if all(k in row for row in table.values()))
    print(f"== comparison (cohort means; Dice/FNV over cases with lesions; masks: {scoring})")
    print(f"{'predictor':<24}" + "".join(f"{k:>12}" for k in keys))
    for name, row in table.items():
        print(f"{name:<24}" + "".join(f"{'-' if row[k]['mean'] is None else format(row[k]['mean'], '.4g'):>12}" for k in keys))
