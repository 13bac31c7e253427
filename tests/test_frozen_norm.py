"""Frozen instance-norm statistics (petclick/runtime/normstats.py) and the engine's `frozen` mode:
a crop run with its tile's statistics answers as the tile did where it covers the receptive field."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from petclick.inference.engine import EnsembleEngine, LocalSettings
from petclick.inference.predictor import EnsemblePredictor
from petclick.inference.session import InteractiveSession
from petclick.io.images import CaseVolumes, Volume
from petclick.networks.factory import build_network
from petclick.phantoms import generate_case
from petclick.runtime import normstats, onnxrt
from petclick.runtime.checkpoint import save_checkpoint
from petclick.runtime.tiles import TileGrid
from petclick.runtime.window import window_logits

SEG = {"init_filters": 4, "blocks_down": [1, 1], "dsdepth": 1, "norm": "INSTANCE"}
TINY = {"segresnet": SEG,
        "dints": {"channel_mul": 0.125, "num_blocks": 3, "num_depths": 2},
        "swinunetr": {"feature_size": 12, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 1, 1]}}
ROI = [16, 16, 16]


def _net(name: str = "segresnet", seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = build_network(name, 4, 1, **TINY[name]).eval()
    with torch.no_grad():                 # instance-norm weights and biases away from 1 and 0, as trained ones
        for p in net.parameters():
            if p.ndim == 1:
                p.add_(0.2 * torch.randn_like(p))
    return net


def _x(shape, seed: int = 1) -> torch.Tensor:
    return torch.rand((1, 4, *shape), generator=torch.Generator().manual_seed(seed))


def _out(net, x) -> torch.Tensor:
    return window_logits(net, x)[0, 0]


def _reach(net, stats, shape, at) -> int:
    """How far (voxels, max over axes) one input voxel's change reaches in the output with frozen
    statistics: the receptive field's radius, measured."""
    x = _x(shape)
    y = x.clone()
    y[(0, slice(None), *at)] += 1.0
    with normstats.frozen(net, stats):
        d = (_out(net, y) - _out(net, x)).abs() > 1e-7
    idx = torch.nonzero(d).numpy()
    return int(np.abs(idx - np.asarray(at)).max())


@pytest.mark.parametrize("name", list(TINY))
def test_recorded_statistics_frozen_reproduce_the_window(name):
    """Every registry network with instance norm: a window run with its own statistics frozen gives
    its own output (the hook computes what the layer computes: affine, eps)."""
    net = _net(name)
    layers = normstats.instance_norms(net)
    assert layers, f"{name} has instance norm"
    x = _x((64,) * 3 if name == "swinunetr" else (32,) * 3)    # swinunetr: no 1-voxel bottleneck
    with normstats.recording(net) as rec:
        ref = _out(net, x)
    stats = rec.sample(0)
    assert len(stats) == len(layers) and stats[0][0].shape == (layers[0].num_features,)
    with normstats.frozen(net, stats):
        again = _out(net, x)
    assert float((again - ref).abs().max()) <= 1e-5
    assert torch.equal(_out(net, x), ref)                  # outside the context the network is itself


def test_frozen_crop_equals_its_tile_where_it_covers_the_receptive_field():
    net = _net()
    shape = (48, 48, 48)
    x = _x(shape)
    with normstats.recording(net) as rec:
        tile = _out(net, x)
    stats = rec.sample(0)
    r = _reach(net, stats, shape, (24, 24, 24))
    assert 2 <= r < 12
    lo, hi = 8, 40                                          # a 32^3 crop on the stride lattice (divisor 2)
    crop = x[:, :, lo:hi, lo:hi, lo:hi]
    with normstats.frozen(net, stats):
        frozen = _out(net, crop)
    free = _out(net, crop)
    inner = (slice(r, hi - lo - r),) * 3
    want = tile[lo + r:hi - r, lo + r:hi - r, lo + r:hi - r]
    assert float((frozen[inner] - want).abs().max()) <= 1e-5
    assert float((free[inner] - want).abs().max()) > 1e-3     # the crop's own normalisation drifts


def test_a_network_without_instance_norm_just_runs():
    torch.manual_seed(0)
    net = build_network("segresnet", 4, 1, **dict(SEG, norm="BATCH")).eval()
    x = _x((16, 16, 16))
    with normstats.recording(net) as rec:
        ref = _out(net, x)
    assert rec.sample(0) == []
    with normstats.frozen(net, []):
        assert torch.equal(_out(net, x), ref)
    with pytest.raises(ValueError, match="instance-norm layers"):
        with normstats.frozen(_net(), []):
            pass


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("frozen_models")
    for seed in (0, 1):
        net = _net(seed=seed)
        save_checkpoint(root / f"r{seed}" / "model.pt", {
            "state_dict": net.state_dict(), "network": {"name": "segresnet", "kwargs": SEG},
            "in_channels": 4, "out_channels": 1,
            "preprocess": {"roi": ROI, "crop_body": False, "encoding": {"encoding": "edt", "channels": "two"}},
            "infer": {"roi": ROI, "overlap": 0.25, "sw_batch_size": 2}})
    return root


def test_frozen_engine_crops_answer_as_their_tile(models):
    """The engine's frozen window lies inside the tile nearest the click, on its stride lattice, and
    runs with that tile's statistics recorded at the full pass: where it covers the receptive
    field it equals the tile's output."""
    ph = generate_case("fdg_frozen_01", 3, shape=(32, 28, 40), tracer="fdg")
    case = CaseVolumes(Volume(ph.ct, ph.affine), Volume(ph.pet, ph.affine))
    predictor = EnsemblePredictor(sorted(models.rglob("model.pt")))
    s = InteractiveSession(predictor, case, mode="frozen", local=LocalSettings(max_grow=0))
    s.predict()
    e = s.engine
    g = e.groups[0]
    m = g.members[0]
    assert len(m.tiled.norm_record) == len(m.tiled.grid)        # every tile's statistics recorded
    size = np.array([16, 16, 16])
    point = np.array([17.0, 13.0, 21.0])
    lo = e._snap(g, point, np.clip(point.astype(int) - 8, 0, np.asarray(g.shape) - size), size)
    box = (tuple(int(v) for v in lo), tuple(int(v) for v in lo + size))
    t = m.tiled
    k = EnsembleEngine._frozen_tile(t, box)
    start = t.grid.starts[k] - np.asarray(t.grid.pad_lo)
    assert np.all(lo >= start) and np.all(lo + size <= start + np.asarray(t.grid.roi))
    assert np.all((lo - start) % 2 == 0)                            # the stride lattice (divisor 2)
    net = normstats.torch_network(t.model())          # the reference: PyTorch, the tile's own pass
    tile = window_logits(net, t.grid.window_input(g.x, k)[None])[0, 0]
    crop = g.x[(slice(None), *(slice(a, b) for a, b in zip(*box)))]
    on_crop = t.on_grid(TileGrid(tuple(int(v) for v in size), tuple(int(v) for v in size), t.grid.overlap, t.grid.mode))
    on_crop.norm_frozen = t.norm_record[k]
    frozen = on_crop.logits_of([crop])[0]                # the engine's crop path (ONNX Runtime where installed)
    if onnxrt.available():
        assert isinstance(t.model(), onnxrt.OrtWindowNet) and not t.model()._fallback_kinds
    r = 5
    off = lo - start
    inner = tuple(slice(r, int(n) - r) for n in size)
    want = tile[tuple(slice(int(o) + r, int(o + n) - r) for o, n in zip(off, size))]
    assert float((frozen[inner] - want).abs().max()) <= 1e-5
    # a click then costs one crop per member, not the tiles it touches
    before = e.counters.computed
    s.add_clicks(tumor=[tuple(int(v) for v in point)])
    p = s.predict()
    assert e.counters.computed - before == p.tiles_computed == len(g.members)
    assert s.counters["last"]["path"] == "frozen" and s.counters["last"]["bound"] is None
