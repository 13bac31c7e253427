"""Networks: building from YAML kwargs, ROI rules, deep supervision, DiNTS codes and search,
checkpoint input-channel expansion. Tiny sizes, CPU."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from petclick.core.errors import InputError
from petclick.networks import (
    as_list,
    build_network,
    check_roi,
    count_parameters,
    default_arch_code,
    expand_input_channels,
    fit_roi,
    load_arch_code,
    network_summary,
    resolve_network_kwargs,
    roi_divisor,
    roi_divisors,
    save_arch_code,
    search_dints_topology,
    validate_arch_code,
)

TINY = {
    "segresnet": {"init_filters": 4, "blocks_down": [1, 1, 1], "dsdepth": 3},
    "dints": {"channel_mul": 0.125, "num_blocks": 3, "num_depths": 2},
    "swinunetr": {"feature_size": 12, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 1, 1]},
}
NAMES = list(TINY)


@pytest.fixture(autouse=True)
def _quiet_and_seeded():
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def test_autopet_divisors_follow_the_networks():
    assert roi_divisor("segresnet") == 16  # blocks_down (1,2,2,4,4): 4 halvings
    assert roi_divisor("segresnet", blocks_down=[1, 2, 2, 4]) == 8
    assert roi_divisor("dints") == 16  # 4 depths + downsampling stem
    assert roi_divisor("dints", num_depths=3, use_downsample=False) == 4
    assert roi_divisor("swinunetr") == 32
    # anisotropic SegResNetDS: per-axis factors equal MONAI's own shape_factor()
    kw = {"init_filters": 4, "blocks_down": [1, 1, 1, 1, 1], "resolution": [1.0, 1.0, 5.0]}
    net = build_network("segresnet", 4, 1, **kw)
    assert roi_divisors("segresnet", **kw) == tuple(int(f) for f in net.shape_factor()) == (16, 16, 4)


@pytest.mark.parametrize("name", NAMES)
def test_forward_shapes_at_fitted_roi(name):
    kw = TINY[name]
    roi = fit_roi((64, 64, 64), (40, 50, 70), name, **kw)
    div = roi_divisor(name, **kw)
    expected = {4: (40, 48, 64), 32: (32, 32, 64)}[div]
    assert roi == expected
    net = build_network(name, 4, 1, **kw).eval()
    with torch.no_grad():
        out = net(torch.randn(1, 4, *roi))
    assert isinstance(out, torch.Tensor) and out.shape == (1, 1, *roi)


def test_segresnet_deep_supervision_list_full_resolution_first():
    net = build_network("segresnet", 4, 2, **dict(TINY["segresnet"], blocks_down=[1, 1, 1, 1])).train()
    outs = net(torch.randn(2, 4, 16, 16, 32))
    assert isinstance(outs, list) and len(outs) == 3
    assert [tuple(o.shape) for o in outs] == [(2, 2, 16, 16, 32), (2, 2, 8, 8, 16), (2, 2, 4, 4, 8)]
    assert as_list(outs) == outs
    net.eval()
    with torch.no_grad():
        single = net(torch.randn(1, 4, 16, 16, 16))
    assert as_list(single)[0] is single and len(as_list(single)) == 1
    # at most one head per decoder level: dsdepth 4 on 2 levels gives 2 outputs
    shallow = build_network("segresnet", 4, 1, init_filters=4, blocks_down=[1, 1, 1], dsdepth=4).train()
    assert len(as_list(shallow(torch.randn(1, 4, 8, 8, 8)))) == 2
    with pytest.raises(TypeError):
        as_list([])


def test_dints_divisor_is_sufficient_and_necessary():
    kw = {"channel_mul": 0.125, "num_blocks": 2, "num_depths": 3}
    div = roi_divisor("dints", **kw)
    assert div == 8
    net = build_network("dints", 2, 1, **kw).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 2, 24, 16, 40)).shape == (1, 1, 24, 16, 40)  # 3x, 2x, 5x the divisor
        with pytest.raises(RuntimeError):
            net(torch.randn(1, 2, 20, 16, 16))  # 20 is not a multiple of 8


def test_fit_roi_shrinks_rounds_and_keeps_a_trainable_minimum():
    assert fit_roi((192, 192, 384), (100, 200, 50), "segresnet") == (96, 192, 48)
    assert fit_roi([192, 192, 384], (400, 400, 326), "segresnet") == (192, 192, 320)
    assert fit_roi((128, 128, 128), (300, 300, 300), "swinunetr") == (128, 128, 128)
    # smaller than one divisor: one divisor (the sliding window pads); all axes at one divisor
    # would leave a 1-voxel bottleneck, so the image's longest axis gets two
    assert fit_roi((64, 64, 64), (10, 12, 20), "swinunetr") == (32, 32, 64)
    assert fit_roi((64, 64, 64), (10, 40, 20), "segresnet") == (16, 32, 16)


def test_explicit_roi_must_be_divisible():
    assert check_roi([96, 96, 64], "segresnet") == (96, 96, 64)
    with pytest.raises(InputError, match=r"not divisible by \[32, 32, 32\].*nearest valid ROI: \[96, 96, 32\]"):
        check_roi((100, 96, 40), "swinunetr")
    with pytest.raises(InputError, match="not divisible"):
        fit_roi((200, 192, 384), (400, 400, 326), "segresnet")
    with pytest.raises(InputError, match=r"1-voxel coarsest feature map.*at least \[64, 32, 32\]"):
        check_roi(32, "swinunetr")
    assert fit_roi(32, (100, 90, 80), "swinunetr") == (64, 32, 32)
    with pytest.raises(InputError, match="3 positive integers"):
        check_roi((96, 96), "segresnet")


def test_bad_names_and_kwargs_are_clear_errors():
    with pytest.raises(InputError, match="unknown network name 'unet'.*segresnet, dints, swinunetr"):
        build_network("unet", 4, 1)
    with pytest.raises(InputError, match=r"unknown keyword\(s\) \['img_size'\]"):
        build_network("swinunetr", 4, 1, img_size=[96, 96, 96])
    with pytest.raises(InputError, match="feature_size must be a multiple of 12"):
        build_network("swinunetr", 4, 1, feature_size=16)
    with pytest.raises(InputError, match="unknown network name"):
        roi_divisor("nnunet")


def test_instance_nvfuser_falls_back_to_instance_norm_on_cpu():
    with pytest.warns(UserWarning, match="INSTANCE_NVFUSER"):
        net = build_network("segresnet", 4, 1, init_filters=4, blocks_down=[1, 1], norm="INSTANCE_NVFUSER")
    assert any(isinstance(m, torch.nn.InstanceNorm3d) for m in net.modules())


def test_summary_counts_parameters():
    s = network_summary("segresnet", 4, 1, **TINY["segresnet"])
    net = build_network("segresnet", 4, 1, **TINY["segresnet"])
    assert s["parameters"] == count_parameters(net) == sum(p.numel() for p in net.parameters())
    assert s["roi_divisors"] == (4, 4, 4) and s["deep_supervision"] is True
    net.encoder.conv_init.weight.requires_grad_(False)
    assert count_parameters(net, trainable_only=True) == s["parameters"] - net.encoder.conv_init.weight.numel()


# ---- checkpoint input-channel expansion ---------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_expanded_model_equals_original_without_clicks(name, tmp_path):
    kw = TINY[name]
    old = build_network(name, 2, 1, **kw).eval()
    new = build_network(name, 4, 1, **kw).eval()
    path = tmp_path / "ckpt.pt"
    torch.save({"state_dict": old.state_dict(), "network": {"name": name, "kwargs": kw}, "in_channels": 2}, path)
    expanded = expand_input_channels(new, path, image_channels=2)
    raw_input_layers = {
        "segresnet": ["encoder.conv_init.weight"],
        "dints": ["stem_down.0.mod.1.weight", "stem_down.1.mod.1.weight"],
        "swinunetr": [
            "encoder1.layer.conv1.conv.weight",
            "encoder1.layer.conv3.conv.weight",
            "swinViT.patch_embed.proj.weight",
        ],
    }[name]
    assert expanded == raw_input_layers
    roi = fit_roi((64, 64, 64), (32, 32, 48), name, **kw)  # swinunetr: (32, 32, 64), no 1-voxel bottleneck
    image = torch.randn(1, 2, *roi)
    with torch.no_grad():
        ref = old(image)
        at_zero = new(torch.cat([image, torch.zeros(1, 2, *roi)], 1))
        with_clicks = new(torch.cat([image, torch.rand(1, 2, *roi)], 1))  # zero-initialised click weights
    assert torch.allclose(at_zero, ref, atol=1e-5)
    assert torch.allclose(with_clicks, ref, atol=1e-5)
    for key in raw_input_layers:
        weight = dict(new.named_parameters())[key]
        assert torch.count_nonzero(weight[:, 2:]) == 0 and torch.equal(weight[:, :2], old.state_dict()[key])


def test_expansion_accepts_plain_and_ddp_state_dicts():
    old = build_network("segresnet", 1, 1, **TINY["segresnet"])
    new = build_network("segresnet", 4, 1, **TINY["segresnet"])
    ddp = {f"module.{k}": v for k, v in old.state_dict().items()}
    assert expand_input_channels(new, ddp) == ["encoder.conv_init.weight"]
    same = build_network("segresnet", 4, 1, **TINY["segresnet"])
    assert expand_input_channels(same, new.state_dict()) == []  # same channel count: plain strict load
    assert torch.equal(same.encoder.conv_init.weight, new.encoder.conv_init.weight)


def test_expansion_errors_name_the_problem(tmp_path):
    new = build_network("segresnet", 4, 1, **TINY["segresnet"])
    wider = build_network("segresnet", 2, 1, **dict(TINY["segresnet"], init_filters=8))
    with pytest.raises(InputError, match=r"encoder.conv_init.weight: checkpoint shape \(8, 2, 3, 3, 3\)"):
        expand_input_channels(new, wider.state_dict())
    deeper = build_network("segresnet", 2, 1, **dict(TINY["segresnet"], blocks_down=[1, 1, 1, 1]))
    with pytest.raises(InputError, match="does not match the network: missing"):
        expand_input_channels(new, deeper.state_dict())
    two = build_network("segresnet", 2, 1, **TINY["segresnet"])
    with pytest.raises(InputError, match="checkpoint has 2 input channels, expected image_channels=1"):
        expand_input_channels(new, two.state_dict(), image_channels=1)
    more = build_network("segresnet", 5, 1, **TINY["segresnet"])
    with pytest.raises(InputError, match="only the input-channel dim 1 may grow"):
        expand_input_channels(new, more.state_dict())
    with pytest.raises(InputError, match="checkpoint file not found"):
        expand_input_channels(new, tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_text("not a checkpoint")
    with pytest.raises(InputError, match="bad.pt: cannot read checkpoint"):
        expand_input_channels(new, bad)
    with pytest.raises(InputError, match="no state_dict of tensors"):
        expand_input_channels(new, {"epoch": 3})


# ---- DiNTS architecture codes and search ------------------------------------------------


def test_default_dints_code_is_a_valid_ladder():
    code = default_arch_code(4, 3)
    assert validate_arch_code(code) == code
    a = np.array(code["arch_code_a"])
    assert a.shape == (4, 7) and a[:, [0, 3, 6]].all()  # every level keeps its stream
    assert a[:2, [2, 5]].all() and not a[:2, [1, 4]].any()  # encoder half: down paths only
    assert a[2:, [1, 4]].all() and not a[2:, [2, 5]].any()  # decoder half: up paths only
    net = build_network("dints", 4, 1, channel_mul=0.125, num_blocks=4, num_depths=3)
    assert net.num_blocks == 4 and net.num_depths == 3


def test_invalid_dints_codes_are_rejected(tmp_path):
    code = default_arch_code(3, 2)
    broken = dict(code, arch_code_a=[[0, 0, 0, 0]] + code["arch_code_a"][1:])
    with pytest.raises(InputError, match="block 0 has no active path"):
        validate_arch_code(broken)
    dead_input = dict(code, node_a=[[1, 0]] + code["node_a"][1:])
    with pytest.raises(InputError, match="block 0: path\\(s\\) \\[3\\] start from an inactive node"):
        validate_arch_code(dead_input)
    with pytest.raises(InputError, match="cell operation indices"):
        validate_arch_code(dict(code, arch_code_c=[[5, 1, 1, 1]] * 3))
    with pytest.raises(InputError, match="num_blocks=5 requested but the architecture code has 3"):
        build_network("dints", 4, 1, arch_code=code, num_blocks=5)
    path = save_arch_code(code, tmp_path / "arch.json")
    with pytest.raises(InputError, match="either arch_code or arch_code_path"):
        build_network("dints", 4, 1, arch_code=code, arch_code_path=str(path))
    with pytest.raises(InputError, match="architecture code file not found"):
        build_network("dints", 4, 1, arch_code_path=str(tmp_path / "none.pt"))


def test_arch_code_files_round_trip(tmp_path):
    code = default_arch_code(3, 2)
    assert load_arch_code(save_arch_code(code, tmp_path / "a.json")) == code
    assert load_arch_code(save_arch_code(code, tmp_path / "a.pt")) == code
    # the MONAI Auto3DSeg dints template's arch_code.pth: numpy arrays, code_a/code_c keys
    legacy = {
        "node_a": np.array(code["node_a"]),
        "code_a": np.array(code["arch_code_a"], dtype=np.float64),
        "code_c": np.array(code["arch_code_c"]),
        "iter_num": 7,
    }
    torch.save(legacy, tmp_path / "arch_code.pth")
    loaded = load_arch_code(tmp_path / "arch_code.pth")
    assert loaded["arch_code_a"] == code["arch_code_a"] and loaded["arch_code_c"] == code["arch_code_c"]
    inlined = resolve_network_kwargs("dints", {"arch_code_path": str(tmp_path / "a.json"), "channel_mul": 0.25})
    assert inlined == {"arch_code": code, "channel_mul": 0.25}


def test_dints_search_gives_a_code_the_trainer_builds(tmp_path):
    gen = torch.Generator().manual_seed(0)
    batches = [
        {"image": torch.randn(1, 4, 40, 32, 32, generator=gen), "label": (torch.rand(1, 1, 40, 32, 32, generator=gen) > 0.8).float()}
        for _ in range(4)
    ]
    code = search_dints_topology(batches, 4, 1, (32, 32, 32), 2, num_blocks=3, num_depths=3, channel_mul=0.125)
    assert code["source"] == "search" and code["num_blocks"] == 3 and code["num_depths"] == 3
    assert validate_arch_code(code)["arch_code_a"] == code["arch_code_a"]
    history = code["search"]["history"]
    assert len(history) == 2 and "arch_loss" not in history[0] and np.isfinite(history[1]["arch_loss"])
    path = save_arch_code(code, tmp_path / "arch_code.json")
    net = build_network("dints", 4, 1, arch_code_path=str(path), channel_mul=0.125).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 4, 32, 32, 32)).shape == (1, 1, 32, 32, 32)
    with pytest.raises(InputError, match="not divisible"):
        search_dints_topology(batches, 4, 1, (30, 32, 32), 1, num_blocks=3, num_depths=3)
    with pytest.raises(InputError, match="smaller than the ROI"):
        search_dints_topology(batches, 4, 1, (48, 32, 32), 1, num_blocks=2, num_depths=2, channel_mul=0.125)


def test_cover_roi_grows_only_slightly_shorter_axes_to_one_window():
    from petclick.networks import cover_roi

    # autoPET volume: 326 slices > the 320 fitted ROI -> one 336 window instead of two of 320
    assert cover_roi((192, 192, 320), (400, 400, 326), "segresnet") == (192, 192, 336)
    # axes far longer than the ROI keep it (sliding is needed anyway); shorter axes get one covering window
    assert cover_roi((96, 96, 96), (400, 90, 100), "segresnet") == (96, 96, 112)
    assert cover_roi((128, 128, 128), (140, 130, 300), "swinunetr") == (160, 160, 128)
    # a window larger than the image shrinks to it (rounded up to the divisor): less padding per pass
    assert cover_roi((64, 64, 96), (48, 46, 64), "segresnet", blocks_down=(1, 1, 1)) == (48, 48, 64)
    # never a 1-voxel bottleneck: a tiny image keeps the ROI
    assert cover_roi((32, 32, 32), (10, 10, 10), "segresnet") == (32, 32, 32)


# ---------------------------------------------------------------------------- output prior
@pytest.mark.parametrize("name,kwargs,heads", [
    ("segresnet", {"init_filters": 8, "blocks_down": (1, 1, 1), "dsdepth": 2}, ["up_layers.0.head", "up_layers.1.head"]),
    ("dints", {"channel_mul": 0.25}, ["stem_finals.1"]),
    ("swinunetr", {"feature_size": 12}, ["out.conv.conv"]),
])
def test_output_prior_sets_every_output_head(name, kwargs, heads):
    from petclick.networks.output_prior import init_output_prior

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_network(name, 4, 1, **kwargs)
    assert init_output_prior(model, 0.01) == heads
    for head in heads:
        bias = model.get_submodule(head).bias
        assert torch.allclose(bias, torch.full_like(bias, np.log(0.01 / 0.99)))
    model.eval()
    with torch.no_grad():  # zero input: the mean probability sits near the prior, far below 0.5
        prob = torch.sigmoid(as_list(model(torch.zeros(1, 4, 64, 64, 64)))[0])
    assert float(prob.mean()) < 0.1


def test_output_prior_rejects_bad_values_and_headless_models():
    from petclick.networks.output_prior import init_output_prior, prior_logit

    assert prior_logit(0.5) == 0.0 and prior_logit(0.007) == pytest.approx(-4.955, abs=1e-3)
    model = build_network("segresnet", 4, 1, init_filters=8, blocks_down=(1, 1, 1), dsdepth=2)
    for bad in (0.0, 1.0, -0.1, 2, "often", None):
        with pytest.raises(InputError, match="output_prior"):
            init_output_prior(model, bad)
    with pytest.raises(InputError, match="no convolution with 1 output"):
        init_output_prior(torch.nn.Sequential(torch.nn.Conv3d(4, 1, 1, bias=False)), 0.01)
