"""One trial = one real bundle training run, through MONAI's OptunaGen.

`PetclickOptunaGen` keeps OptunaGen's flow (load the fold's algo from its algo_object.json, sample
the hyper-parameters, generate a bundle, train it, score it) and changes three steps:

- generate: the trial's parameters are merged into a copy of input.yaml
  (`algo_overrides.<algo>`, as a user would write them) and the bundle is regenerated from the
  template by the algo's own `fill_template_config` for the fold, exactly as AutoRunner's
  algo_gen does; so an ROI is fitted to the data, epochs derived, and invalid values fail here.
- train: the bundle's `scripts/train.py` runs as AutoRunner would run it (the algo's command), but
  as a watched subprocess: each new validation in `model/repeat0/progress.yaml` is reported to the
  Optuna trial, and a trial the pruner stops is killed and raised as TrialPruned.
- score: the chosen objective read from the repeats' validation entries (objectives.py).
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Mapping

from monai.apps.auto3dseg.hpo_gen import OptunaGen
from monai.auto3dseg import algo_from_json, algo_to_json
from monai.utils.enums import AlgoKeys

from petclick.workflows.hpo.objectives import Objective, trial_value
from petclick.workflows.hpo.space import SearchSpace, nested
from petclick.core.yamlio import deep_merge, write_yaml
from petclick.training.progress import PROGRESS, read_progress

log = logging.getLogger(__name__)
TRIAL_LOG = "trial_stdout.log"


class TrialFailed(RuntimeError):
    """A trial's training process failed; the message names its log."""


def trial_input(base: Mapping[str, Any], algo: str, fixed: Mapping[str, Any], params: Mapping[str, Any],
                num_repeats: int | None) -> dict[str, Any]:
    """input.yaml of a trial: `base` with `fixed` then the sampled `params` merged into
    `algo_overrides.<algo>` (nested, after whatever the user had there)."""
    cfg = deep_merge(base, {})
    overrides = dict((cfg.get("algo_overrides") or {}).get(algo) or {})
    overrides.update(nested(fixed))
    overrides = deep_merge(overrides, nested(params))
    cfg.setdefault("algo_overrides", {})
    cfg["algo_overrides"] = {**(cfg["algo_overrides"] or {}), algo: overrides}
    if num_repeats is not None:
        cfg["num_repeats"] = int(num_repeats)
    return cfg


def preflight(bundle: Path) -> None:
    """Fail a trial before its training process starts when its generated config is invalid:
    network kwargs, click encoding and click curriculum are built from it (the ROI was already
    checked against the network's divisor by fill_template_config); types and ranges by load_bundle_config."""
    from petclick.clicks.curriculum import curriculum_from_config
    from petclick.clicks.encoding import encoder_from_config
    from petclick.config.bundle import HYPER, load_bundle_config
    from petclick.training.loop import describe

    cfg = load_bundle_config(bundle / "configs" / HYPER)
    describe(cfg)
    encoder_from_config(cfg["clicks"]["encoding"])
    curriculum_from_config(cfg["clicks"]["curriculum"], max_clicks=int(cfg["clicks"]["max_clicks"]))


class PetclickOptunaGen(OptunaGen):
    """MONAI OptunaGen whose trials are petclick bundle trainings (see the module docstring).

    Args:
        algo: the fold's generated BundleAlgo (from AutoRunner's algo_gen).
        space: the search space; objective: what the trial returns.
        base_input: input.yaml content (absolute paths) the trial inputs derive from.
        fold: the fold whose validation cases score the trial.
        fixed: trial-only overrides (`section#key: value`), merged before the sampled parameters.
        num_repeats: repeats per trial (None: input.yaml's).
        poll_s: seconds between looks at the running training's progress.
    """

    def __init__(self, algo: Any, space: SearchSpace, objective: Objective, base_input: Mapping[str, Any],
                 fold: int, fixed: Mapping[str, Any] | None = None, num_repeats: int | None = 1,
                 poll_s: float = 1.0) -> None:
        super().__init__(algo=algo)
        self.space, self.objective, self.fold = space, objective, int(fold)
        self.base_input = dict(base_input)
        self.fixed = {**space.fixed, **(fixed or {})}
        self.num_repeats = num_repeats
        self.poll_s = float(poll_s)
        self.params: dict[str, Any] = {}

    # -- OptunaGen steps ---------------------------------------------------------------------
    def __call__(self, trial: Any, obj_filename: str, output_folder: str = ".", template_path: Any = None) -> Any:
        """OptunaGen.__call__; a failure's message is kept on the trial (user attr `error`)."""
        import optuna

        try:
            return super().__call__(trial, obj_filename, output_folder, template_path)
        except optuna.TrialPruned:
            raise
        except Exception as exc:
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:2000])
            raise

    def get_hyperparameters(self) -> dict[str, Any]:
        """The trial's sampled values ({`section#key`: value}), recorded on the trial."""
        params = self.space.sample(self.trial)
        self.trial.set_user_attr("overrides", nested(params))
        return params

    def get_task_id(self) -> str:
        """Bundle suffix: `_trial<number>` (bundle ids stay `<name>_<fold>_<x>`)."""
        return f"_trial{self.trial.number}"

    def generate(self, output_folder: str = ".") -> None:
        """Regenerate the bundle from the template for this fold with the trial's input.yaml."""
        name = os.path.basename(self.algo.get_output_path()) + self.get_task_id()
        algo_name = getattr(self.algo, "name", "") or name.split("_")[0]
        cfg = trial_input(self.base_input, algo_name, self.fixed, self.params, self.num_repeats)
        src = write_yaml(Path(output_folder) / "inputs" / f"{name}.yaml", cfg,
                         header=f"# input.yaml of HPO trial {self.trial.number} (petclick hpo)")
        self.algo.set_data_source(str(src))
        self.trial.set_user_attr("bundle", str(Path(output_folder, name).resolve()))
        self.algo.export_to_disk(output_folder, name, fold=self.fold)
        preflight(Path(self.algo.get_output_path()))
        self.obj_filename = algo_to_json(self.algo, template_path=self.algo.template_path)

    def run_algo(self, obj_filename: str, output_folder: str = ".", template_path: Any = None) -> None:
        """OptunaGen.run_algo with the watched training and petclick's objective."""
        if not os.path.isfile(obj_filename):
            raise ValueError(f"{obj_filename} is not found")
        self.algo, _ = algo_from_json(obj_filename, template_path=template_path)
        self.update_params(self.get_hyperparameters())
        self.generate(output_folder)
        self.train_watched()
        acc = self.score()
        algo_to_json(self.algo, template_path=self.algo.template_path, **{str(AlgoKeys.SCORE): acc})
        self.set_score(acc)

    # -- training and scoring ----------------------------------------------------------------
    def _ckpt_path(self) -> Path:
        return Path(self.algo.get_output_path()) / "model"

    def _repeat_entries(self) -> list[list[dict[str, Any]]]:
        dirs = sorted(self._ckpt_path().glob("repeat*"), key=lambda p: int(re.sub(r"\D", "", p.name) or 0))
        return [e for e in (read_progress(d / PROGRESS) for d in dirs) if e]

    def _report(self, reported: set[int]) -> None:
        """Report repeat 0's new validations (epoch = step) to the trial."""
        try:
            entries = read_progress(self._ckpt_path() / "repeat0" / PROGRESS)
        except Exception:  # a file caught mid-write: read it at the next poll
            return
        for e in entries:
            epoch = e.get("epoch")
            if epoch is None or int(epoch) in reported or e.get("avg_dice_score") is None:
                continue
            try:
                value = self.objective.read(e)
            except Exception:
                continue
            self.trial.report(value, int(epoch))
            reported.add(int(epoch))

    def train_watched(self) -> None:
        """Run the bundle's train.py; report validations; kill and raise TrialPruned when pruned."""
        import optuna

        self.algo.device_setting["CMD_PREFIX"] = sys.executable
        log_path = Path(self.algo.get_output_path()) / TRIAL_LOG
        self.trial.set_user_attr("log", str(self._ckpt_path() / "train.log"))
        reported: set[int] = set()
        multi = int(self.algo.device_setting.get("n_devices", 1)) > 1 or int(self.algo.device_setting.get("NUM_NODES", 1)) > 1
        if multi:  # torchrun / bcprun: MONAI's own launcher, validations reported afterwards (no early stop)
            self.algo.train()
            self._report(reported)
            return
        cmd, _ = self.algo._create_cmd(None)
        cmd = re.sub(r"^\s*\w+=.*?\s+", "", cmd)
        env = os.environ.copy()
        env["CUDA_VISIBLE_DEVICES"] = str(self.algo.device_setting.get("CUDA_VISIBLE_DEVICES", ""))
        env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
        with open(log_path, "w") as out:
            proc = subprocess.Popen(cmd.split(), stdout=out, stderr=subprocess.STDOUT, env=env)
            try:
                while proc.poll() is None:
                    time.sleep(self.poll_s)
                    self._report(reported)
                    if self.trial.should_prune():
                        proc.terminate()
                        proc.wait(timeout=60)
                        raise optuna.TrialPruned(f"pruned after validation(s) at epoch(s) {sorted(reported)}")
            except BaseException:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                raise
        self._report(reported)
        if proc.returncode != 0:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
            raise TrialFailed(f"training exited with {proc.returncode} (log {log_path}): " + " | ".join(tail))

    def score(self) -> float:
        """The objective over the repeats' kept validations (objectives.trial_value)."""
        return trial_value(self.objective, self._repeat_entries())
