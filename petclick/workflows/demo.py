"""`petclick demo`: the whole job on the embedded phantom cohort, on a CPU in minutes, from any
folder: everything it writes is under `--out` (phantoms included); the bundles and the input
template are petclick's package data (petclick.config.packaged), so an installed petclick needs no
source tree.

1. generate the phantom cohort into <out>/phantoms when missing (the cohort the repository's
   datalist.json describes);
2. run MONAI's AutoRunner (data analysis, one bundle per fold, training of every fold's repeats,
   ensemble predictions of the testing split) with the `demo` preset, in this process, with
   CMD_PREFIX set to this Python so the training subprocesses find petclick;
3. run the 11-step interactive protocol on the testing split: the ensemble of every checkpoint
   (5 folds x 4 repeats = 20) against the `suv-threshold` baseline, both post-processed as
   `petclick predict` and `gc` ship their masks (petclick.postprocess defaults: click consistency);
4. print where the report is, and the time each stage took (also in <out>/demo_timing.json).

Time budget (`--time-budget`, default DEFAULT_TIME_BUDGET_S): machines of this project's kind differ
by 2-3x, so the demo sizes its training to the machine. Before AutoRunner starts it times a few
training steps of the demo network (`machine_probe`), estimates from that what the stages other than
training will take here (NON_TRAINING_PROBES probe-times, measured on the reference machine in the
same run as its probe, so the ratio holds whatever the machine's speed), and gives every fold's
training an equal share of the rest as `training.time_budget_s` (petclick.training.budget then sizes
the iterations of each epoch to it, never above the recipe's).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from petclick.config.packaged import BUNDLES, INPUT_TEMPLATE
from petclick.core.atomic import atomic_write_text
from petclick.core.errors import InputError
from petclick.core.yamlio import read_yaml, write_yaml

log = logging.getLogger(__name__)
#: The embedded cohort: what the committed datalist.json and input.yaml describe.
#: 24 cases, at least 8 of them (whole patients, both tracers, some without lesions) in testing.
DEMO_COHORT = {"cases": 24, "seed": 7, "shape": [48, 48, 64], "min_test_cases": 8}
#: The whole demo's wall-clock target, phantoms to report (the issue's limit is 10 minutes).
DEFAULT_TIME_BUDGET_S = 540.0
#: Seconds of everything outside the folds' processes (phantoms, the probe, data analysis, bundle
#: generation, the ensemble's testing predictions, the interactive evaluation), in units of one
#: `machine_probe()` step; a fold's own start, cache and validations are inside its budget
#: (petclick.training.budget). Measured in one run (2026-12-07, this project's 2-core CPU shared with
#: two other jobs): probe 0.921 s; outside the folds 118 s (phantoms 4, probe 10, AutoRunner's own
#: 20 beside its folds' 286, interactive 84) = 128 probe steps; 150 leaves a margin.
NON_TRAINING_PROBES = 150.0
#: The least a fold's training gets, whatever the estimate says.
MIN_FOLD_BUDGET_S = 20.0


def machine_probe(steps: int = 8) -> float:
    """Median seconds of one training step of the demo network on a demo-sized patch (random data):
    how fast this machine trains what the demo trains."""
    import torch

    from petclick.config.packaged import BUNDLES as bundles
    from petclick.networks.factory import build_network
    from petclick.training.budget import time_steps

    kwargs = read_yaml(bundles / "segresnet" / "configs" / "hyper_parameters.yaml")["presets"]["demo"]["network"]["kwargs"]
    from petclick.config.presets import get_preset

    roi = get_preset("demo")["data"]["roi"]
    net = build_network("segresnet", 4, 1, **kwargs)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    x = torch.rand(2, 4, *roi)

    def step():
        out = net(x)
        loss = sum(o.float().mean() for o in out) if isinstance(out, (list, tuple)) else out.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time_steps(step, steps=steps, warmup=2)


def fold_budget(total_s: float, elapsed_s: float, probe_s: float, folds: int) -> float:
    """Each fold's training budget: what is left of `total_s` after `elapsed_s` and the other stages'
    estimate (NON_TRAINING_PROBES probe steps), shared equally by the folds."""
    rest = total_s - elapsed_s - NON_TRAINING_PROBES * probe_s
    return max(MIN_FOLD_BUDGET_S, rest / max(1, folds))


def ensure_cohort(data: Path, cases: int, seed: int, shape: Sequence[int], min_test_cases: int | None = None) -> Path:
    """The cohort's datalist.json, generating the phantoms first when `data` lacks this cohort."""
    request = data / "phantoms.json"
    if request.is_file():
        have = json.loads(request.read_text())
        if (have.get("cases"), have.get("seed"), list(have.get("shape", [])), have.get("min_test_cases")) == (
                cases, seed, list(shape), min_test_cases):
            if (data / "datalist.json").is_file():
                return data / "datalist.json"
    from petclick.phantoms import generate_cohort

    t0 = time.time()
    path = generate_cohort(data, cases=cases, seed=seed, shape=tuple(shape), min_test_cases=min_test_cases)
    print(f"generated {cases} phantom cases {tuple(shape)} in {data} ({time.time() - t0:.1f} s)")
    return path


def demo_input(template: Path, out: Path, datalist: Path, dataroot: Path, overrides: dict[str, Any]) -> Path:
    """Write <out>/input.yaml: the template's keys with absolute paths, the work_dir under `out`, and
    `overrides` (folds, repeats, preset). The templates: petclick's packaged bundles for petclick's
    own template (or one without the key); for another, its `templates_path_or_url` (a relative path
    from the template's folder)."""
    cfg = read_yaml(template)
    cfg.update(datalist=str(datalist.resolve()), dataroot=str(dataroot.resolve()),
               work_dir=str((out / "work_dir").resolve()))
    if template.resolve() == INPUT_TEMPLATE.resolve() or "templates_path_or_url" not in cfg:
        templates = BUNDLES
    else:
        templates = (template.parent / str(cfg["templates_path_or_url"])).resolve()
        if not templates.is_dir():
            raise InputError(template, f"templates_path_or_url {cfg['templates_path_or_url']!r}: no such folder "
                                       f"({templates})")
    cfg["templates_path_or_url"] = str(templates)
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    return write_yaml(out / "input.yaml", cfg, header="# written by `petclick demo` from " + str(template))


def run_autorunner(input_yaml: Path) -> None:
    """MONAI's AutoRunner in this process; training subprocesses use this interpreter (CMD_PREFIX)."""
    os.environ["CMD_PREFIX"] = sys.executable
    bindir = str(Path(sys.executable).parent)
    os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    from monai.apps.auto3dseg import AutoRunner

    AutoRunner(input=str(input_yaml)).run()


def run_demo(out: Path, data: Path | None = None, input_template: Path = INPUT_TEMPLATE,
             cases: int = DEMO_COHORT["cases"], seed: int = DEMO_COHORT["seed"],
             shape: Sequence[int] = DEMO_COHORT["shape"], min_test_cases: int | None = DEMO_COHORT["min_test_cases"],
             folds: int | None = None, repeats: int | None = None, preset: str | None = None, device: str = "cpu",
             skip_train: bool = False, prepare_only: bool = False,
             time_budget: float | None = DEFAULT_TIME_BUDGET_S) -> dict[str, float]:
    """The demo's stages (see module docstring); returns the seconds each took. `data`: the cohort
    folder (default <out>/phantoms); `min_test_cases`: the testing split's rule (plan_cohort);
    `prepare_only`: stop after the cohort and <out>/input.yaml; `time_budget`: seconds for the whole
    demo (None: the recipe's iterations whatever they cost)."""
    times: dict[str, float] = {}
    start = time.time()
    out.mkdir(parents=True, exist_ok=True)
    data = out / "phantoms" if data is None else data
    t = time.time()
    datalist = ensure_cohort(data, cases, seed, shape, min_test_cases)
    times["phantoms"] = time.time() - t
    extra: dict[str, Any] = {"num_fold": folds, "num_repeats": repeats, "preset": preset}
    if time_budget and not skip_train:
        t = time.time()
        probe = machine_probe()
        times["probe"] = time.time() - t
        n_folds = int(folds or read_yaml(input_template).get("num_fold", 5))
        per_fold = fold_budget(float(time_budget), time.time() - start, probe, n_folds)
        user = read_yaml(input_template).get("overrides") or {}
        extra["overrides"] = {**user, "training#time_budget_s": round(per_fold, 1)}
        print(f"== time budget {time_budget:.0f} s: a demo training step takes {probe * 1000:.0f} ms here; each of "
              f"{n_folds} folds trains within {per_fold:.0f} s (fewer iterations than the recipe's if it must)")
    input_yaml = demo_input(input_template, out, datalist, data, extra)
    if prepare_only:
        print(f"== cohort {datalist}; AutoRunner input {input_yaml}")
        return times
    work_dir = out / "work_dir"
    if not skip_train:
        from petclick.workflows.training_progress import TrainingProgress

        t = time.time()
        with TrainingProgress(work_dir):  # AutoRunner shows the training scripts' output only on failure
            run_autorunner(input_yaml)
        times["autorunner"] = time.time() - t
    elif not work_dir.is_dir():
        raise InputError(work_dir, "--skip-train needs a trained work_dir from an earlier run")
    t = time.time()
    from petclick.workflows.interactive import InteractiveJob, run_interactive

    report = out / "report"
    # the job's default post-processing: every predictor's masks as `petclick predict` and `gc` ship them
    code = run_interactive(InteractiveJob(predictor=str(work_dir), compare=["suv-threshold"], datalist=datalist,
                                          dataroot=data, split="testing", out=report, device=device))
    times["interactive"] = time.time() - t
    times["total"] = sum(times.values())
    atomic_write_text(out / "demo_timing.json", json.dumps({k: round(v, 1) for k, v in times.items()}, indent=1) + "\n")
    print("== demo timing (s): " + ", ".join(f"{k} {v:.0f}" for k, v in times.items()))
    print(f"== ensemble predictions of the testing split: {work_dir / 'ensemble_output'}")
    from petclick.runtime.checkpoint import find_checkpoints

    n_ckpt = len(find_checkpoints(work_dir))
    print(f"== interactive report ({n_ckpt}-checkpoint ensemble vs suv-threshold): {report}  "
          f"(compare.json, compare_curves.png, */summary.json)")
    if code not in (0, None):
        log.warning("petclick interactive returned %s", code)
    return times
