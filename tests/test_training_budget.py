"""The training time budget (petclick.training.budget): the plan's arithmetic, and a fold trained
under a budget too small for the recipe trains fewer iterations per epoch, keeps its plan on resume."""

from __future__ import annotations

from pathlib import Path

import pytest

from petclick.core.yamlio import read_yaml
from petclick.training.budget import plan_budget, process_elapsed, validation_count


def test_validation_count_of_repeats():
    assert validation_count([45, 2, 2, 2], 15) == 3 + 1 + 1 + 1      # 15, 30, 45; each cycle's end
    assert validation_count([10], 4) == 3                            # 4, 8 and the end


def test_plan_fits_the_budget_and_never_exceeds_the_recipe():
    plan = plan_budget(100.0, elapsed_s=10.0, step_s=0.1, validation_case_s=1.0, epochs=[10, 2], val_every=5,
                       validation_cases=2, recipe_iterations=100)
    # 3 validations of 2 cases = 6 s; 95 - 10 - 6 = 79 s for 12 epochs of 0.1 s steps: 65 iterations each
    assert plan.validations == 3 and plan.iterations_per_epoch == 65 and plan.scale == pytest.approx(0.65)
    assert plan.predicted_s <= 100.0 * 0.95 + 1e-9
    generous = plan_budget(10_000.0, 10.0, 0.1, 1.0, [10, 2], 5, 2, recipe_iterations=100)
    assert generous.iterations_per_epoch == 100                      # capped at the recipe (max scale 1)
    assert plan_budget(10_000.0, 10.0, 0.1, 1.0, [10, 2], 5, 2, 100, max_scale=2.0).iterations_per_epoch == 200
    hopeless = plan_budget(5.0, 10.0, 0.1, 1.0, [10, 2], 5, 2, recipe_iterations=100)
    assert hopeless.iterations_per_epoch == 1                       # past the budget already: one per epoch


def test_process_elapsed_counts_this_process():
    assert 0.0 < process_elapsed() < 24 * 3600


def test_a_fold_under_a_small_budget_trains_fewer_iterations(make_bundle, tmp_path):
    from petclick.config.bundle import load_bundle_config
    from petclick.training.loop import train_fold

    bundle = make_bundle(tmp_path, overrides={"training": {
        "num_epochs": 2, "num_iterations_per_epoch": 400, "val_every": 2, "lr": 0.01,
        "time_budget_s": 1.0}})  # far too little for 800 steps: the plan keeps one step per epoch
    cfg = load_bundle_config([bundle / "configs" / "hyper_parameters.yaml", bundle / "configs" / "inference.yaml"])
    train_fold(cfg)
    plan = read_yaml(Path(cfg["ckpt_path"]) / "budget.yaml")
    assert plan["recipe_iterations_per_epoch"] == 400 and plan["iterations_per_epoch"] == 1
    assert plan["step_s"] > 0 and plan["validation_case_s"] > 0 and plan["validations"] == 1
    import yaml

    status = yaml.safe_load((Path(cfg["ckpt_path"]) / "repeat0" / "progress.yaml").read_text())
    assert status[-1]["epoch"] == 2
    # a rerun (resume) keeps the stored plan instead of measuring again
    plan_file = Path(cfg["ckpt_path"]) / "budget.yaml"
    before = plan_file.read_text()
    train_fold(cfg)
    assert plan_file.read_text() == before
