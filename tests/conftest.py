"""Shared fixtures: one tiny phantom cohort per test session (8 cases of 48x48x64)."""

from __future__ import annotations

import pytest

TINY_CASES = 8
TINY_SEED = 11
TINY_SHAPE = (48, 48, 64)


@pytest.fixture(scope="session")
def tiny_cohort(tmp_path_factory):
    """Path of the datalist.json of 8 phantom cases (48x48x64, 5 folds + testing), generated once."""
    from petclick.phantoms import generate_cohort

    root = tmp_path_factory.mktemp("tiny_cohort")
    return generate_cohort(root, cases=TINY_CASES, seed=TINY_SEED, shape=TINY_SHAPE)


@pytest.fixture(scope="session")
def tiny_datastats(tiny_cohort, tmp_path_factory):
    """MONAI's DataAnalyzer output on the tiny cohort (what AutoRunner hands fill_template_config)."""
    from monai.apps.auto3dseg import DataAnalyzer

    out = tmp_path_factory.mktemp("analysis") / "datastats.yaml"
    DataAnalyzer(str(tiny_cohort), str(tiny_cohort.parent), output_path=str(out), device="cpu").get_all_case_stats()
    return out


@pytest.fixture(scope="session")
def make_bundle(tiny_cohort, tiny_datastats):
    """make_bundle(root, fold=0, template="segresnet", **input_yaml_keys) -> a generated bundle folder
    (fill_template_config run as AutoRunner's BundleGen would; demo preset, 1 repeat, 1 short epoch)."""
    import importlib.util
    import shutil
    from pathlib import Path

    from petclick.core.yamlio import write_yaml

    bundles = Path(__file__).resolve().parent.parent / "petclick" / "bundles"

    def make(root: Path, fold: int = 0, template: str = "segresnet", **user) -> Path:
        bundle = Path(root) / f"{template}_{fold}"
        shutil.copytree(bundles / template, bundle)
        cfg = {"modality": "CT", "datalist": str(tiny_cohort), "dataroot": str(tiny_cohort.parent), "preset": "demo",
               "num_repeats": 1, "overrides": {"training": {"num_epochs": 1, "num_iterations_per_epoch": 2}}}
        cfg.update(user)
        write_yaml(Path(root) / "input.yaml", cfg)
        spec = importlib.util.spec_from_file_location(f"{template}_algo", bundles / template / "scripts" / "algo.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        algo = getattr(module, f"{template.capitalize()}Algo")(template_path=str(bundles))
        algo.name = template
        algo.set_data_stats(str(tiny_datastats))
        algo.set_data_source(str(Path(root) / "input.yaml"))
        algo.fill_template_config(str(tiny_datastats), str(bundle), fold=fold)
        return bundle

    return make


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """Folder of one untrained tiny SegResNetDS checkpoint (16^3 windows, overlap 0.25, edt clicks):
    for the plumbing of model predictors, not their quality."""
    import torch

    from petclick.networks.factory import build_network
    from petclick.runtime.checkpoint import save_checkpoint

    kwargs = {"init_filters": 4, "blocks_down": [1, 1], "dsdepth": 1}
    torch.manual_seed(0)
    net = build_network("segresnet", 4, 1, **kwargs)
    path = tmp_path_factory.mktemp("tiny_model") / "m" / "model.pt"
    save_checkpoint(path, {"state_dict": net.state_dict(), "network": {"name": "segresnet", "kwargs": kwargs},
                           "in_channels": 4, "out_channels": 1,
                           "preprocess": {"roi": [16, 16, 16], "crop_body": False,
                                          "encoding": {"encoding": "edt", "channels": "two"}},
                           "infer": {"roi": [16, 16, 16], "overlap": 0.25, "sw_batch_size": 2}})
    return path.parent
