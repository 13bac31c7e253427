"""Reader caches sized to the model set: the model cache grows to the ensemble's checkpoints and the
exact mode's tile cache to one pass of their tiles, within the device's memory, or they are refused
with a message naming what to set; `--device auto` in every command that runs a network."""

from __future__ import annotations

import pytest

from petclick.core.errors import InputError


def test_fit_cache_takes_what_fits_and_names_the_setting_when_not():
    from petclick.runtime.memory import GB, fit_cache

    assert fit_cache(3 * GB, "x", "PETCLICK_X_MB", available=8 * GB) == 3 * GB
    with pytest.raises(InputError, match=r"PETCLICK_X_MB.*needs 5.0 GB, more than 50% of the 8.0 GB"):
        fit_cache(5 * GB, "the x cache", "PETCLICK_X_MB", available=8 * GB)


def test_model_cache_grows_to_the_ensemble_or_refuses(tiny_model, monkeypatch):
    import petclick.runtime.memory as memory
    from petclick.inference.checkpoint_set import ModelCache

    path = tiny_model / "model.pt"
    size = path.stat().st_size
    cache = ModelCache(1, fixed=False)
    cache.reserve([path] * 3, "cpu")
    assert cache.max_bytes == 2 * 3 * size   # weights twice on CPU (PyTorch and ONNX Runtime)
    fixed = ModelCache(1, fixed=True)
    fixed.reserve([path] * 3, "cpu")
    assert fixed.max_bytes == 1               # PETCLICK_MODEL_CACHE_MB set: kept
    monkeypatch.setattr(memory, "available_bytes", lambda device="cpu": size)
    with pytest.raises(InputError, match="PETCLICK_MODEL_CACHE_MB"):
        ModelCache(1, fixed=False).reserve([path] * 3, "cpu")


def test_tile_cache_auto_holds_one_pass_or_is_refused(tiny_model, monkeypatch):
    import numpy as np

    import petclick.runtime.memory as memory
    from petclick.inference.engine import EnsembleEngine
    from petclick.inference.predictor import EnsemblePredictor
    from petclick.io.images import CaseVolumes, Volume

    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    vol = lambda a: Volume(a, affine, None)  # noqa: E731
    case = CaseVolumes(vol(np.zeros((40, 40, 40), np.float32)), vol(np.ones((40, 40, 40), np.float32)), None)
    predictor = EnsemblePredictor([tiny_model / "model.pt"])
    engine = EnsembleEngine(predictor, case, "exact", cache_mb="auto")
    assert engine.cache.limit == int(4 * engine.voxels_per_pass * 1.05) and engine.voxels_per_pass > 40**3
    monkeypatch.setattr(memory, "available_bytes", lambda device="cpu": 1000)
    with pytest.raises(InputError, match="PETCLICK_TILE_CACHE_MB.*--incremental local"):
        EnsembleEngine(predictor, case, "exact", cache_mb="auto")
    assert EnsembleEngine(predictor, case, "exact", cache_mb=1.0).cache.limit == 2**20  # a number is kept


@pytest.mark.parametrize("command", ["predict", "gc", "interactive", "label", "demo", "train-tracer"])
def test_device_defaults_to_auto_everywhere(command):
    from petclick.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    device = next(a for a in sub._actions if a.dest == "device")
    assert device.default == "auto"
