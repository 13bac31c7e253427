"""The fast CPU pass (petclick/runtime/onnxrt.py, prepare_network): same probabilities and masks as
the float32 PyTorch pass, one export shared by checkpoints of one architecture, every new window
shape checked, backend selection and its config key."""

from __future__ import annotations

import logging
import threading

import numpy as np
import pytest
import torch

from petclick.config.schema import rule_for
from petclick.networks.factory import build_network
from petclick.runtime import onnxrt
from petclick.runtime.window import make_inferer, prepare_network, resolve_backend, sliding_window_logits

pytestmark = pytest.mark.skipif(not onnxrt.available(), reason="onnxruntime not installed")

KWARGS = {"init_filters": 4, "blocks_down": [1, 1, 1], "dsdepth": 2, "norm": "INSTANCE"}
ARCH = "test_fastpass-segresnet-4"
DP_BOUND = 1e-4   # max |dp| of the fast pass against float32 PyTorch


@torch.no_grad()
def full(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The network's full-resolution output (eval SegResNetDS gives a tensor, training a list)."""
    out = net(x)
    return out[0] if isinstance(out, (list, tuple)) else out


def close(y: torch.Tensor, ref: torch.Tensor) -> bool:
    """Logits equal to float32 rounding: within 1e-5 of the largest |logit| (random weights give +-50)."""
    return y.shape == ref.shape and float((y - ref).abs().max()) <= 1e-5 * (1.0 + float(ref.abs().max()))


def volume(seed: int = 0, shape=(30, 22, 44)) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand((1, 4, *shape), generator=g)


def network(seed: int) -> torch.nn.Module:
    """A demo-shaped SegResNetDS whose every weight is random: InstanceNorm weights and biases too
    (initially 1 and 0 in every network), so checkpoints differ in every tensor, as trained ones do."""
    torch.manual_seed(seed)
    net = build_network("segresnet", 4, 1, **KWARGS).eval()
    with torch.no_grad():
        for p in net.parameters():
            if p.ndim == 1:
                p.add_(0.2 * torch.randn_like(p))
        net.up_layers[-1].head.bias.sub_(full(net, volume(shape=(16, 16, 24))).median())   # both classes in the masks
    return net


def pass_prob(window_net, x, roi=(16, 16, 24), overlap=0.25) -> torch.Tensor:
    inferer = make_inferer(roi, overlap, 1, "gaussian", "cpu")
    return torch.sigmoid(sliding_window_logits(window_net, x, inferer, amp=False)[0, 0])


def assert_same_masks(p: torch.Tensor, ref: torch.Tensor) -> None:
    """p > 0.5 equals ref > 0.5 on every voxel not within DP_BOUND of the threshold."""
    decided = (ref - 0.5).abs() > DP_BOUND
    assert decided.float().mean() > 0.99
    assert torch.equal((p > 0.5)[decided], (ref > 0.5)[decided])


def test_onnxruntime_pass_matches_float32_pytorch():
    net = network(0)
    x = volume()
    ref = pass_prob(prepare_network(net, {"backend": "torch"}, "cpu"), x)
    fast = prepare_network(net, {"backend": "onnxruntime"}, "cpu", arch=ARCH)
    assert isinstance(fast, onnxrt.OrtWindowNet)
    p = pass_prob(fast, x)
    assert not fast.fallback
    assert float((p - ref).abs().max()) <= DP_BOUND
    assert_same_masks(p, ref)
    assert 0.05 < float((ref > 0.5).float().mean()) < 0.95   # a real test: both classes present


def test_checkpoints_of_one_architecture_share_one_export():
    a, b = network(1), network(2)
    fa = prepare_network(a, {}, "cpu", arch=ARCH)      # backend auto: onnxruntime on CPU
    fb = prepare_network(b, {}, "cpu", arch=ARCH)
    assert isinstance(fa, onnxrt.OrtWindowNet) and isinstance(fb, onnxrt.OrtWindowNet)
    x = torch.rand(2, 4, 16, 16, 24)
    ya, yb = fa(x), fb(x)
    assert not (fa.fallback or fb.fallback)
    assert sum(1 for k in onnxrt._EXPORTS if k == ARCH) == 1
    ra, rb = full(a, x), full(b, x)
    assert close(ya, ra) and close(yb, rb)
    assert float((ra - rb).abs().max()) > 0.1           # the two checkpoints really differ


def test_batched_windows_of_other_shapes_run_on_the_same_graph():
    net = network(3)
    fast = prepare_network(net, {"backend": "onnxruntime"}, "cpu", arch=ARCH)
    for shape in [(2, 4, 16, 16, 24), (3, 4, 8, 24, 16)]:
        x = torch.rand(shape)
        ref = full(net, x)
        assert close(fast(x), ref)
    assert {(4, 16, 16, 24), (4, 8, 24, 16)} <= fast._checked and not fast.fallback


def test_statistics_graphs_equal_the_hooked_pytorch_network():
    """Frozen normalisation on ONNX Runtime: the record graph gives PyTorch's logits and every
    instance-norm layer's statistics, the frozen graph PyTorch's logits with those statistics as
    inputs (a batch sharing them), for two checkpoints of one export (their own weights, not the
    exported ones folded in)."""
    from petclick.runtime import normstats

    x = torch.rand(2, 4, 16, 16, 24)
    crop = torch.rand(2, 4, 8, 16, 16)
    outs = []
    for seed in (7, 8):
        net = network(seed)
        fast = prepare_network(net, {"backend": "onnxruntime"}, "cpu", arch=ARCH)
        y, stats = fast.recorded_logits(x)
        with normstats.recording(net) as rec:
            ref = full(net, x)
        assert close(y, ref) and len(stats) == len(rec.stats()) == len(normstats.instance_norms(net))
        for (m, v), (rm, rv) in zip(stats, rec.stats()):
            assert m.shape == rm.shape == (2, m.shape[1]) and torch.allclose(m, rm, atol=1e-5) and torch.allclose(v, rv, rtol=1e-4)
        one = [(m[1], v[1]) for m, v in stats]                  # the second window's statistics
        z = fast.frozen_logits(crop, one)
        with normstats.frozen(net, one):
            want = full(net, crop)
        assert close(z, want) and not close(z, full(net, crop))  # frozen, not the crop's own statistics
        assert not (fast.fallback or fast._fallback_kinds)
        assert ("frozen", 4, 8, 16, 16) in fast._checked
        outs.append(z)
    assert float((outs[0] - outs[1]).abs().max()) > 0.1          # each checkpoint its own weights
    assert sum(1 for k in onnxrt._EXPORTS if k == ("frozen", ARCH)) == 1


def test_a_window_that_disagrees_with_pytorch_falls_back_to_it(caplog):
    net = network(4)
    fast = prepare_network(net, {"backend": "onnxruntime"}, "cpu", arch=ARCH)
    fast(torch.rand(1, 4, 16, 16, 24))
    with torch.no_grad():                     # the ONNX session keeps the weights it was opened with
        for p in net.parameters():
            p.mul_(1.5)
    x = torch.rand(1, 4, 8, 8, 16)            # a new shape: checked against PyTorch
    with caplog.at_level(logging.WARNING, logger="petclick.runtime.onnxrt"):
        y = fast(x)
    assert fast.fallback and "runs on PyTorch" in caplog.text
    assert y.shape == (1, 1, 8, 8, 16) and torch.allclose(y, full(net, x)) and torch.allclose(fast(x), full(net, x))


def test_backend_selection(monkeypatch, caplog):
    assert resolve_backend("auto", "cpu") == "onnxruntime"
    assert resolve_backend("auto", "cuda") == "torch" and resolve_backend("torch", "cpu") == "torch"
    with pytest.raises(ValueError, match="infer.backend"):
        resolve_backend("tensorrt", "cpu")
    with pytest.raises(ValueError, match="CPU"):
        resolve_backend("onnxruntime", "cuda")
    monkeypatch.setattr(onnxrt, "available", lambda: False)
    with caplog.at_level(logging.WARNING):
        assert resolve_backend("auto", "cpu") == "torch"
    assert "onnxruntime is not installed" in caplog.text
    with pytest.raises(ValueError, match="onnxruntime"):
        resolve_backend("onnxruntime", "cpu")


def test_infer_keys_in_the_schema():
    assert rule_for("infer.backend").check("auto") is None and rule_for("infer.backend").check("onnx")
    assert rule_for("infer.compile").check("reduce-overhead") is None and rule_for("infer.compile").check(True)
    assert rule_for("infer.incremental").check("local") is None and rule_for("infer.incremental").check("fast")
    from petclick.config.presets import get_preset

    assert get_preset("demo")["infer"]["backend"] == "auto"


def test_predictor_default_cpu_path_equals_the_pytorch_path(tmp_path, monkeypatch):
    """EnsemblePredictor on a phantom: the default CPU backend (ONNX Runtime) gives the PyTorch
    float32 probabilities within DP_BOUND and the same masks."""
    from petclick.inference.checkpoint_set import BACKEND_ENV, MODELS
    from petclick.inference.predictor import EnsemblePredictor
    from petclick.io.clickfile import Clicks
    from petclick.io.images import CaseVolumes, Volume
    from petclick.phantoms import generate_case
    from petclick.runtime.checkpoint import save_checkpoint

    net = network(5)
    path = save_checkpoint(tmp_path / "model.pt", {
        "state_dict": net.state_dict(), "network": {"name": "segresnet", "kwargs": KWARGS},
        "in_channels": 4, "out_channels": 1,
        "preprocess": {"roi": [16, 16, 16], "crop_body": True, "encoding": {"encoding": "edt", "channels": "two"}},
        "infer": {"roi": [16, 16, 24], "overlap": 0.25, "sw_batch_size": 1}})
    ph = generate_case("fdg_fp_01", 5, shape=(40, 36, 48), clicks=True)
    case = CaseVolumes(Volume(ph.ct, ph.affine), Volume(ph.pet, ph.affine))
    clicks = Clicks(ph.clicks.tumor[:3], ph.clicks.background[:3])
    probs = {}
    for backend in ("torch", "auto"):
        monkeypatch.setenv(BACKEND_ENV, backend)
        MODELS.clear()
        probs[backend] = torch.as_tensor(EnsemblePredictor([path], device="cpu").predict(case, clicks))
    model = MODELS.get(path, torch.device("cpu"))
    assert isinstance(model, onnxrt.OrtWindowNet) and not model.fallback
    assert probs["auto"].shape == ph.pet.shape
    assert float((probs["auto"] - probs["torch"]).abs().max()) <= DP_BOUND
    inside = probs["torch"] > 0          # the PET grid outside the body crop is 0 in both
    assert_same_masks(probs["auto"][inside], probs["torch"][inside])
    assert np.isfinite(probs["auto"].numpy()).all()


def test_a_network_onnxruntime_cannot_run_stays_on_pytorch(monkeypatch, caplog):
    net = network(6)
    fast = prepare_network(net, {"backend": "onnxruntime"}, "cpu", arch=None)

    def unsupported(self, example):
        raise RuntimeError("Exporting the operator 'aten::foo' to ONNX is not supported")

    monkeypatch.setattr(onnxrt.OrtWindowNet, "_open", unsupported)
    x = torch.rand(1, 4, 16, 16, 24)
    with caplog.at_level(logging.WARNING, logger="petclick.runtime.onnxrt"):
        y = fast(x)
    assert fast.fallback and "aten::foo" in caplog.text and torch.equal(y, full(net, x))


def test_threads_sharing_a_network_open_its_session_once(monkeypatch):
    """The label server runs sessions in threads on shared networks: two first calls at once must
    not both open a session (the second would free the weights the first session reads)."""
    net = network(5)
    fast = prepare_network(net, {"backend": "onnxruntime"}, "cpu", arch=ARCH)
    opened, real_open = [], onnxrt.OrtWindowNet._open
    entered = threading.Barrier(2, timeout=5)

    def counted_open(self, example):
        opened.append(1)
        real_open(self, example)

    monkeypatch.setattr(onnxrt.OrtWindowNet, "_open", counted_open)
    x = torch.rand(1, 4, 16, 16, 24)
    outputs, errors = [], []

    def call():
        try:
            entered.wait()
            outputs.append(fast(x))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and len(outputs) == 2 and opened == [1] and not fast.fallback
    assert close(outputs[0], full(net, x)) and torch.equal(outputs[0], outputs[1])
