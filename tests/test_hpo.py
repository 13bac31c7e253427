"""petclick hpo: search-space parsing, objectives, the watched training (pruning), and real studies on
the tiny phantom cohort (demo preset, 1 iteration, validation at steps 0 and 10): a 2-trial study,
its resumption by a second invocation with a broken trial recorded as failed, and the export."""

from __future__ import annotations

import math
import sys
import textwrap
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from petclick.core.errors import InputError
from petclick.workflows.hpo import get_objective, load_space, nested, parse_space
from petclick.workflows.hpo.objectives import kept_entry, trial_value

REPO = Path(__file__).resolve().parent.parent
optuna.logging.set_verbosity(optuna.logging.WARNING)

SPACE = {
    "algo": "segresnet",
    "objective": "dice_auc",
    "pruner": {"n_startup_trials": 5},  # no pruning in these short studies (pruning: the watched-training tests)
    "fixed": {"training#num_epochs": 1, "training#num_iterations_per_epoch": 1, "training#val_every": 1,
              "clicks#val_steps": [0, 10]},
    "params": {
        "training#lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
        "clicks#encoding#encoding": {"type": "categorical", "choices": ["edt", "gaussian"]},
        "clicks#encoding#sigma": {"type": "float", "low": 1.0, "high": 3.0,
                                  "when": {"clicks#encoding#encoding": "gaussian"}},
        "data#roi": {"type": "categorical", "choices": [[32, 32, 48], [48, 48, 64]]},
    },
}


# -- search spaces ------------------------------------------------------------------------------
def test_shipped_spaces_parse():
    for algo in ("segresnet", "dints", "swinunetr"):
        space = load_space(REPO / "hpo" / f"{algo}.yaml", algo)
        names = [p.name for p in space.params]
        assert "training#lr" in names and "clicks#encoding#encoding" in names and "data#roi" in names
        lr = next(p for p in space.params if p.name == "training#lr")
        assert lr.type == "float" and lr.log and 0 < lr.low < lr.high


def test_shipped_space_paths_exist_in_the_bundle_config():
    """Every searched key lands in a section the training reads (no silently ignored typos)."""
    from petclick.networks.factory import DEFAULT_KWARGS
    from petclick.config.presets import get_preset

    cfg = get_preset("autopet")
    for algo in ("segresnet", "dints", "swinunetr"):
        for p in load_space(REPO / "hpo" / f"{algo}.yaml", algo).params:
            *parents, key = p.name.split("#")
            node = cfg
            for part in parents:
                assert isinstance(node.get(part), dict), f"{algo}: {p.name}: no section {part!r}"
                node = node[part]
            if parents == ["network", "kwargs"]:
                assert key in DEFAULT_KWARGS[algo], f"{algo}: {p.name} is not a {algo} network kwarg"
            elif parents != ["clicks", "encoding"]:  # encoding keys: checked by the encoder (preflight)
                assert key in node, f"{algo}: {p.name}: {key!r} is not a config key"


def test_sampling_conditions_and_list_choices():
    space = parse_space(SPACE, "space.yaml")
    gauss = space.sample(optuna.trial.FixedTrial({"training#lr": 1e-3, "clicks#encoding#encoding": "gaussian",
                                                  "clicks#encoding#sigma": 2.0, "data#roi": "[48, 48, 64]"}))
    assert gauss == {"training#lr": 1e-3, "clicks#encoding#encoding": "gaussian", "clicks#encoding#sigma": 2.0,
                     "data#roi": [48, 48, 64]}
    edt = space.sample(optuna.trial.FixedTrial({"training#lr": 1e-3, "clicks#encoding#encoding": "edt",
                                                "data#roi": "[32, 32, 48]"}))
    assert "clicks#encoding#sigma" not in edt and edt["data#roi"] == [32, 32, 48]
    assert nested(gauss) == {"training": {"lr": 1e-3}, "clicks": {"encoding": {"encoding": "gaussian", "sigma": 2.0}},
                             "data": {"roi": [48, 48, 64]}}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    for _ in range(20):
        t = study.ask()
        p = space.sample(t)
        assert 1e-4 <= p["training#lr"] <= 1e-2 and p["data#roi"] in ([32, 32, 48], [48, 48, 64])
        assert ("clicks#encoding#sigma" in p) == (p["clicks#encoding#encoding"] == "gaussian")
        study.tell(t, 0.0)


@pytest.mark.parametrize("params, key, words", [
    ({"training#lr": {"type": "flaot", "low": 1, "high": 2}}, "params.training#lr", "unknown type"),
    ({"training#lr": {"type": "float", "low": 0.0, "high": 1.0, "log": True}}, "params.training#lr", "low > 0"),
    ({"training#lr": {"type": "float", "low": 2.0, "high": 1.0}}, "params.training#lr", "below high"),
    ({"training#lr": {"type": "float", "high": 1.0}}, "params.training#lr", "needs 'low'"),
    ({"lr": {"type": "float", "low": 1e-4, "high": 1e-2}}, "params.lr", "section"),
    ({"model#lr": {"type": "float", "low": 1e-4, "high": 1e-2}}, "params.model#lr", "section"),
    ({"data#roi": {"type": "categorical", "choices": []}}, "params.data#roi", "non-empty"),
    ({"data#num_crops": {"type": "int", "low": 1, "high": 2.5}}, "params.data#num_crops", "integer"),
    ({"training#lr": {"type": "float", "low": 1e-4, "high": 1e-2, "lgo": True}}, "params.training#lr", "lgo"),
    ({"clicks#encoding#sigma": {"type": "float", "low": 1, "high": 2, "when": {"clicks#encoding#encoding": "gaussian"}}},
     "params.clicks#encoding#sigma.when", "defined above"),
])
def test_bad_space_names_file_and_key(tmp_path, params, key, words):
    path = tmp_path / "bad_space.yaml"
    path.write_text(yaml.safe_dump({"params": params}))
    with pytest.raises(InputError) as err:
        load_space(path)
    assert str(path) in str(err.value) and key in str(err.value) and words in str(err.value)


def test_bad_space_top_level_and_cli(tmp_path, capsys):
    from petclick.cli import main

    path = tmp_path / "space.yaml"
    path.write_text("algo: dints\nparams: {training#lr: {type: float, low: 1.0e-4, high: 1.0e-2}}\n")
    with pytest.raises(InputError, match="not 'segresnet'"):
        load_space(path, "segresnet")
    path.write_text("params: {training#lr: {type: float, low: 1.0e-4, high: 1.0e-2}}\nobjective: dice\n")
    with pytest.raises(InputError, match=r"objective: unknown objective 'dice'"):
        load_space(path)
    path.write_text("parms: {}\n")
    assert main(["hpo", "--trials", "1", "--space", str(path), "--work-dir", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "parms" in err


# -- objectives ---------------------------------------------------------------------------------
def _entry(epoch, score, steps, fpv=1.0):
    return {"epoch": epoch, "avg_dice_score": score, "fpv_ml": fpv, "fnv_ml": 2.0, "per_step_dice": steps}


def test_objectives_read_validation_entries():
    e = _entry(2, 0.5, {0: 0.2, 5: 0.6, 10: 0.8})
    assert get_objective("dice_auc").read(e) == pytest.approx(5 * (0.2 + 0.6) / 2 + 5 * (0.6 + 0.8) / 2)
    assert get_objective("final_dice").read(e) == 0.8 and get_objective("first_dice").read(e) == 0.2
    assert get_objective("fpv").direction == "minimize" and get_objective("score").read(e) == 0.5
    entries = [_entry(1, 0.3, {0: 0.1, 10: 0.3}), _entry(2, 0.5, {0: 0.4, 10: 0.6}), _entry(3, 0.5, {0: 0.0, 10: 1.0})]
    assert kept_entry(entries)["epoch"] == 2  # the loop keeps the first strict improvement
    final = get_objective("final_dice")
    assert trial_value(final, [entries, [_entry(1, 0.9, {0: 0.5, 10: 0.9})]]) == pytest.approx((0.6 + 0.9) / 2)
    with pytest.raises(InputError, match="no lesion"):
        get_objective("dice_auc").read(_entry(1, 0.9, {0: None, 10: None}))
    with pytest.raises(InputError, match="unknown objective"):
        get_objective("auc")


# -- the watched training: intermediate reports and pruning -------------------------------------
class _FakeAlgo:
    """Stands for a BundleAlgo whose train.py writes one validation entry per second."""

    def __init__(self, root: Path, epochs: int):
        self.root, self.device_setting = root, {"n_devices": 1, "NUM_NODES": 1, "CUDA_VISIBLE_DEVICES": ""}
        script = root / "fake_train.py"
        script.write_text(textwrap.dedent(f"""
            import time, yaml, pathlib
            out = pathlib.Path({str(root / 'model' / 'repeat0')!r}); out.mkdir(parents=True, exist_ok=True)
            entries = []
            for epoch in range(1, {epochs} + 1):
                entries.append({{"epoch": epoch, "avg_dice_score": 0.1 * epoch, "per_step_dice": {{0: 0.1 * epoch}}}})
                (out / "progress.yaml").write_text(yaml.safe_dump(entries))
                time.sleep(0.4)
            (out.parent / "done").write_text("ok")
        """))
        self.cmd = f"{sys.executable} {script}"

    def get_output_path(self):
        return str(self.root)

    def _create_cmd(self, params=None):
        return self.cmd, ""


class _PruneAtStep(optuna.pruners.BasePruner):
    def __init__(self, step: int):
        self.step = step

    def prune(self, study, trial):
        return trial.last_step is not None and trial.last_step >= self.step


def _gen(tmp_path, epochs):
    from petclick.workflows.hpo.trial import PetclickOptunaGen

    gen = PetclickOptunaGen(algo=None, space=parse_space(SPACE, "s"), objective=get_objective("first_dice"),
                            base_input={}, fold=0, poll_s=0.1)
    gen.algo = _FakeAlgo(tmp_path, epochs)
    return gen


def test_watched_training_reports_each_validation(tmp_path):
    gen = _gen(tmp_path, 3)
    study = optuna.create_study(direction="maximize")
    gen.set_trial(study.ask())
    gen.train_watched()
    assert gen.trial.storage.get_trial(gen.trial._trial_id).intermediate_values == pytest.approx({1: 0.1, 2: 0.2, 3: 0.3})
    assert gen.score() == pytest.approx(0.3)


def test_pruned_trial_kills_its_training(tmp_path):
    gen = _gen(tmp_path, 20)
    study = optuna.create_study(direction="maximize", pruner=_PruneAtStep(2))
    gen.set_trial(study.ask())
    with pytest.raises(optuna.TrialPruned):
        gen.train_watched()
    assert not (tmp_path / "model" / "done").exists()  # killed long before its 20 validations
    steps = gen.trial.storage.get_trial(gen.trial._trial_id).intermediate_values
    assert 2 in steps and max(steps) < 20


# -- real studies on tiny phantoms --------------------------------------------------------------
@pytest.fixture(scope="module")
def hpo_setup(tiny_cohort, tmp_path_factory):
    root = tmp_path_factory.mktemp("hpo")
    (root / "input.yaml").write_text(yaml.safe_dump({
        "modality": "CT", "datalist": str(tiny_cohort), "dataroot": str(tiny_cohort.parent),
        "templates_path_or_url": str(REPO / "petclick" / "bundles"), "algos": ["segresnet"], "num_fold": 5, "sigmoid": True,
        "preset": "demo", "num_repeats": 4}))
    (root / "space.yaml").write_text(yaml.safe_dump(SPACE, sort_keys=False))
    return root


@pytest.fixture(scope="module")
def first_run(hpo_setup):
    from petclick.workflows.hpo.study import run_study

    space = load_space(hpo_setup / "space.yaml", "segresnet")
    return run_study(hpo_setup / "input.yaml", "segresnet", space, 2, hpo_setup / "work", seed=0)


def test_two_trial_study_completes(first_run):
    study, work = first_run.study, first_run.work_dir
    assert (work / "hpo.db").is_file() and first_run.storage == f"sqlite:///{work / 'hpo.db'}"
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.COMPLETE]
    for t in study.trials:
        bundle = Path(t.user_attrs["bundle"])
        assert bundle.name == f"segresnet_0_trial{t.number}" and (bundle / "model" / "repeat0" / "model.pt").is_file()
        cfg = yaml.safe_load((bundle / "configs" / "hyper_parameters.yaml").read_text())
        assert cfg["fold"] == 0 and cfg["num_repeats"] == 1 and cfg["training"]["num_epochs"] == 1
        assert cfg["training"]["lr"] == pytest.approx(t.params["training#lr"])
        assert cfg["clicks"]["encoding"]["encoding"] == t.params["clicks#encoding#encoding"]
        assert cfg["data"]["roi"] == yaml.safe_load(t.params["data#roi"])
        assert list(t.intermediate_values) == [1] and math.isfinite(t.value) and 0.0 <= t.value <= 10.0
        entries = yaml.safe_load((bundle / "model" / "repeat0" / "progress.yaml").read_text())
        assert t.value == pytest.approx(get_objective("dice_auc").read(entries[0]))


@pytest.fixture(scope="module")
def resumed(first_run, hpo_setup):
    """Second invocation (the CLI) of the same study: an enqueued broken trial (a negative Gaussian
    click sigma, as a bad space range would give) then a real one."""
    from petclick.cli import main

    study = optuna.load_study(study_name="segresnet_fold0_dice_auc", storage=first_run.storage)
    study.enqueue_trial({"training#lr": 1e-3, "clicks#encoding#encoding": "gaussian", "clicks#encoding#sigma": -1.0,
                         "data#roi": "[32, 32, 48]"}, skip_if_exists=False)
    code = main(["hpo", "--input", str(hpo_setup / "input.yaml"), "--algo", "segresnet", "--trials", "2",
                 "--space", str(hpo_setup / "space.yaml"), "--work-dir", str(first_run.work_dir),
                 "--export", str(hpo_setup / "best.yaml")])
    return code, optuna.load_study(study_name="segresnet_fold0_dice_auc", storage=first_run.storage)


def test_second_invocation_resumes_and_records_the_broken_trial(resumed):
    code, study = resumed
    assert code == 0
    states = [t.state for t in study.trials]
    assert states == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    assert sum(s == TrialState.COMPLETE for s in states) == 3
    broken = study.trials[2]
    assert broken.params["clicks#encoding#sigma"] == -1.0 and "sigma" in broken.user_attrs["error"]
    assert not (Path(broken.user_attrs["bundle"]) / "model").exists()  # failed before training started
    assert study.trials[3].user_attrs["bundle"].endswith("segresnet_0_trial3") and study.trials[3].value is not None


def test_invalid_roi_fails_when_the_trial_bundle_is_generated(first_run, hpo_setup, tmp_path):
    """An ROI the network cannot take (not a multiple of its divisor) fails in fill_template_config."""
    from monai.auto3dseg import algo_from_json

    from petclick.workflows.hpo.trial import PetclickOptunaGen

    algo, _ = algo_from_json(str(first_run.work_dir / "segresnet_0" / "algo_object.json"))
    gen = PetclickOptunaGen(algo=None, space=parse_space(SPACE, "s"), objective=get_objective("dice_auc"),
                            base_input=yaml.safe_load((first_run.work_dir / "hpo_input.yaml").read_text()), fold=0)
    gen.algo = algo
    gen.set_trial(optuna.create_study().ask())
    gen.update_params({"training#lr": 1e-3, "data#roi": [30, 30, 30]})
    with pytest.raises(InputError, match="30"):
        gen.generate(str(tmp_path))
    trial_cfg = yaml.safe_load((tmp_path / "inputs" / "segresnet_0_trial0.yaml").read_text())
    assert trial_cfg["algo_overrides"]["segresnet"]["data"]["roi"] == [30, 30, 30]
    assert trial_cfg["num_repeats"] == 1 and trial_cfg["algo_overrides"]["segresnet"]["training"]["num_epochs"] == 1


def test_export_is_an_input_fragment_with_the_best_params(resumed, hpo_setup):
    from monai.bundle import ConfigParser

    _, study = resumed
    best = study.best_trial
    assert best.value == max(t.value for t in study.trials if t.state == TrialState.COMPLETE)
    parser = ConfigParser(ConfigParser.load_config_file(str(hpo_setup / "best.yaml")))
    assert parser.get_parsed_content("algo_overrides#segresnet#training#lr") == pytest.approx(best.params["training#lr"])
    assert parser.get_parsed_content("algo_overrides#segresnet#data#roi") == yaml.safe_load(best.params["data#roi"])
    assert parser.get_parsed_content("algo_overrides#segresnet#clicks#encoding#encoding") == \
        best.params["clicks#encoding#encoding"]
    frag = parser.get_parsed_content("algo_overrides#segresnet")
    assert "num_epochs" not in frag.get("training", {})  # the trial budget is not exported
    merged = yaml.safe_load((hpo_setup / "best_input.yaml").read_text())
    assert merged["num_repeats"] == 4 and merged["preset"] == "demo"
    assert merged["algo_overrides"]["segresnet"] == frag
    # the merged input generates the final bundles with the best params (fill_template_config)
    from petclick.auto3dseg.algo import merged_config

    cfg = merged_config({"network": {"name": "segresnet"}}, merged, "segresnet")
    assert cfg["training"]["lr"] == pytest.approx(best.params["training#lr"]) and cfg["num_repeats"] == 4


def test_trial_of_a_crashed_process_is_failed_and_retried(tmp_path, monkeypatch):
    """A process killed mid-trial leaves the trial RUNNING in the database; once its heartbeat is
    stale, the next invocation marks it FAIL and runs its parameters again."""
    import subprocess

    from petclick.workflows.hpo import study as study_mod

    url = f"sqlite:///{tmp_path / 'hpo.db'}"
    crash = textwrap.dedent(f"""
        import os
        from petclick.workflows.hpo import study as s
        from petclick.workflows.hpo.objectives import get_objective
        s.HEARTBEAT_S, s.GRACE_S = 1, 2
        st = s.open_study({url!r}, "crash", get_objective("dice_auc"), {{}}, seed=0)
        def objective(trial):
            trial.suggest_float("training#lr", 1e-4, 1e-2, log=True)
            import time; time.sleep(1.5)
            os._exit(9)  # the machine dies mid-training
        st.optimize(objective, n_trials=1)
    """)
    proc = subprocess.run([sys.executable, "-c", crash], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 9, proc.stderr[-2000:]
    monkeypatch.setattr(study_mod, "HEARTBEAT_S", 1)
    monkeypatch.setattr(study_mod, "GRACE_S", 2)
    st = study_mod.open_study(url, "crash", get_objective("dice_auc"), {}, seed=0)
    assert [t.state for t in st.trials] == [TrialState.RUNNING]
    import time

    time.sleep(2.5)
    st.optimize(lambda t: t.suggest_float("training#lr", 1e-4, 1e-2, log=True), n_trials=1)
    trials = st.trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert trials[1].params == trials[0].params and trials[1].system_attrs.get("failed_trial") == 0
