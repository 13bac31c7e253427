"""petclick runs from an installed wheel, without the source tree: the wheel carries the bundles and
the input template, and `petclick demo` writes everything under --out in any folder.

The wheel is built from a copy of the package files and installed with --no-deps into a fresh
virtual environment that sees this environment's dependencies (torch, MONAI) through a .pth line,
so the test takes seconds, not a download."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{cmd} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with petclick installed from its wheel (dependencies from this environment)."""
    pytest.importorskip("setuptools")  # the build backend (a dependency of tensorboard)
    root = tmp_path_factory.mktemp("installed")
    src = root / "src"
    src.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "petclick", src / "petclick", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(root / "wheels"),
          str(src)], cwd=root)
    wheel = next((root / "wheels").glob("petclick-*.whl"))
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=root)
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", str(wheel)], cwd=root)
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     cwd=root).stdout.strip())
    (site / "petclick_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}


def test_the_installed_package_holds_its_bundles_and_template(installed, tmp_path):
    out = _run([str(installed / "bin" / "python"), "-c",
                "import petclick; from petclick.config.packaged import BUNDLES, INPUT_TEMPLATE, bundle_names; "
                "print(petclick.__file__); print(BUNDLES); print(INPUT_TEMPLATE.is_file()); print(bundle_names())"],
               cwd=tmp_path, env=_env()).stdout.splitlines()
    assert Path(out[0]).is_relative_to(installed) and Path(out[1]).is_relative_to(installed)
    assert out[2] == "True" and out[3] == "['dints', 'segresnet', 'swinunetr']"
    for algo in ("dints", "segresnet", "swinunetr"):
        for part in ("configs/hyper_parameters.yaml", "configs/inference.yaml", "scripts/algo.py", "scripts/train.py",
                     "scripts/infer.py"):
            assert (Path(out[1]) / algo / part).is_file(), f"{algo}/{part} is not in the wheel"


def test_demo_first_stage_in_an_empty_folder_writes_only_under_out(installed, tmp_path):
    """`petclick demo --prepare-only` (cohort + input.yaml), then AutoRunner's analysis and bundle
    generation from the installed templates (the demo's second stage without training)."""
    work = tmp_path / "empty"
    work.mkdir()
    _run([str(installed / "bin" / "petclick"), "demo", "--out", "run", "--prepare-only", "--cases", "8", "--seed", "3",
          "--shape", "32", "32", "40", "--folds", "2"], cwd=work, env=_env())
    assert sorted(p.name for p in work.iterdir()) == ["run"]  # nothing beside --out
    run = work / "run"
    assert (run / "phantoms" / "datalist.json").is_file() and len(list((run / "phantoms" / "imagesTr").glob("*"))) == 16
    cfg = yaml.safe_load((run / "input.yaml").read_text())
    assert Path(cfg["dataroot"]) == (run / "phantoms").resolve() and Path(cfg["work_dir"]) == (run / "work_dir").resolve()
    templates = Path(cfg["templates_path_or_url"])
    assert templates.is_relative_to(installed) and (templates / "segresnet" / "scripts" / "algo.py").is_file()
    assert cfg["preset"] == "demo" and cfg["algos"] == ["segresnet"] and cfg["num_fold"] == 2

    _run([str(installed / "bin" / "python"), "-m", "monai.apps.auto3dseg", "AutoRunner", "run", "--input=run/input.yaml",
          "--train=False", "--ensemble=False"], cwd=work, env=_env())
    assert sorted(p.name for p in work.iterdir()) == ["run"]
    for fold in (0, 1):
        hyper = yaml.safe_load((run / "work_dir" / f"segresnet_{fold}" / "configs" / "hyper_parameters.yaml").read_text())
        assert hyper["fold"] == fold and hyper["preset"] == "demo" and hyper["network"]["name"] == "segresnet"
        assert hyper["data"]["roi"] == [32, 32, 40] and hyper["training"]["num_epochs"] == 4
    copied = run / "work_dir" / "algorithm_templates" / "segresnet" / "scripts" / "algo.py"
    assert copied.read_text() == (templates / "segresnet" / "scripts" / "algo.py").read_text()


def test_demo_input_uses_the_packaged_bundles_for_petclick_s_template(tmp_path):
    from petclick.config.packaged import BUNDLES, INPUT_TEMPLATE
    from petclick.core.errors import InputError
    from petclick.core.yamlio import write_yaml
    from petclick.workflows.demo import demo_input

    data = tmp_path / "phantoms"
    for template in (INPUT_TEMPLATE, REPO / "input.yaml"):  # the repository's input.yaml is the same file
        cfg = yaml.safe_load(demo_input(template, tmp_path / "a", data / "datalist.json", data, {"num_fold": 2}).read_text())
        assert Path(cfg["templates_path_or_url"]) == BUNDLES and cfg["num_fold"] == 2
        assert Path(cfg["dataroot"]) == data.resolve() and cfg["algos"] == ["segresnet"]
    (tmp_path / "mine" / "algos").mkdir(parents=True)
    own = write_yaml(tmp_path / "mine" / "input.yaml", {"templates_path_or_url": "./algos", "algos": ["x"]})
    cfg = yaml.safe_load(demo_input(own, tmp_path / "b", data / "datalist.json", data, {}).read_text())
    assert Path(cfg["templates_path_or_url"]) == (tmp_path / "mine" / "algos").resolve()
    write_yaml(own, {"templates_path_or_url": "./nowhere"})
    with pytest.raises(InputError, match="nowhere"):
        demo_input(own, tmp_path / "c", data / "datalist.json", data, {})
