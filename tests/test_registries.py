"""Registries: a network, a click encoding or a post-processing rule is one entry; an unknown name
is an InputError (ValueError for encodings) that lists the known ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from petclick.core.errors import InputError
from petclick.core.registry import Registry


def test_registry_names_in_order_and_lists_them_for_unknown_names():
    reg: Registry[int] = Registry("thing")
    reg.register("b", 1)
    reg.add("A")(2)
    assert reg.names() == ("b", "a") and reg.get("A") == 2 and "B" in reg and len(reg) == 2
    with pytest.raises(InputError, match="unknown thing 'c'; known: b, a"):
        reg.get("c", "my.yaml")
    with pytest.raises(ValueError, match="twice"):
        reg.register("b", 3)


def test_a_new_network_is_one_spec(monkeypatch):
    from petclick.networks import build_network, fit_roi, network_summary, roi_divisors
    from petclick.networks.spec import NETWORKS, NetworkSpec

    spec = NetworkSpec("tiny", {"width": 2}, lambda i, o, kw: nn.Conv3d(i, o * kw["width"], 1),
                       lambda kw: (2, 4, 8))
    monkeypatch.setitem(NETWORKS._entries, "tiny", spec)
    model = build_network("tiny", 4, 1, width=3)
    assert model(torch.zeros(1, 4, 8, 8, 8)).shape == (1, 3, 8, 8, 8)
    assert roi_divisors("tiny") == (2, 4, 8) and fit_roi((20, 20, 24), (100, 100, 16), "tiny") == (20, 20, 16)
    summary = network_summary("tiny", width=1)
    assert summary["parameters"] == 4 + 1 and summary["kwargs"] == {"width": 1} and not summary["deep_supervision"]
    with pytest.raises(InputError, match="unknown keyword"):
        build_network("tiny", 4, 1, depth=2)


@pytest.mark.parametrize("call", ["build", "roi", "summary"])
def test_an_unknown_network_never_falls_through(call):
    from petclick.networks import build_network, network_summary, roi_divisors

    fn = {"build": lambda: build_network("unet", 4, 1), "roi": lambda: roi_divisors("unet"),
          "summary": lambda: network_summary("unet")}[call]
    with pytest.raises(InputError, match="unknown network name 'unet'; known: segresnet, dints, swinunetr"):
        fn()


def test_a_new_click_encoding_is_one_entry(monkeypatch):
    from petclick.clicks.encoding import KERNELS, ClickKernel, EncodeClicks

    cone = ClickKernel(values=lambda d2, enc: 2.0 - torch.sqrt(d2) / enc.radius, support=lambda enc: enc.radius,
                       unit=lambda enc: enc.radius_unit)
    monkeypatch.setitem(KERNELS._entries, "cone", cone)
    out = EncodeClicks(encoding="cone", radius=2.0)(np.zeros((2, 9, 9, 9), np.float32),
                                                    {"tumor": np.array([[4, 4, 4]]), "background": np.zeros((0, 3))})
    assert out.shape == (4, 9, 9, 9) and out[2, 4, 4, 4] == pytest.approx(2.0) and out[2, 4, 4, 6] == pytest.approx(1.0)
    assert out[2, 4, 4, 7] == 0 and not out[3].any()
    with pytest.raises(ValueError, match=r"unknown click encoding 'ring'; expected one of \['edt', 'disk', 'gaussian'"):
        EncodeClicks(encoding="ring")


def test_postprocessing_rules_apply_in_registry_order(monkeypatch):
    from petclick.io.clickfile import Clicks
    from petclick.io.images import CaseVolumes, Volume
    from petclick.postprocess import pipeline

    assert pipeline.RULES == ("fn_recovery", "min_volume", "suv_filter", "merge", "click_consistency")
    assert list(pipeline.DEFAULT_CONFIG)[1:] == list(pipeline.RULES)
    order = []

    def rule(name):
        return pipeline.PostprocessRule({"enabled": True}, lambda mask, x, c: order.append(name) or mask)

    entries = {"first": rule("first"), "second": rule("second")}
    monkeypatch.setattr(pipeline, "RULE_REGISTRY", Registry("post-processing rule"))
    for name, entry in entries.items():
        pipeline.RULE_REGISTRY.register(name, entry)
    monkeypatch.setattr(pipeline, "DEFAULT_CONFIG", {"threshold": 0.5, "first": {"enabled": True},
                                                      "second": {"enabled": True}})
    affine = np.eye(4)
    case = CaseVolumes(ct=Volume(np.zeros((4, 4, 4), np.float32), affine, None),
                       pet=Volume(np.zeros((4, 4, 4), np.float32), affine, None))
    pipeline.postprocess(np.zeros((4, 4, 4), np.float32), case, Clicks(), "fdg")
    assert order == ["first", "second"]
    order.clear()
    pipeline.postprocess(np.zeros((4, 4, 4), np.float32), case, Clicks(), "fdg", {"first": False})
    assert order == ["second"]
    with pytest.raises(InputError, match="unknown post-processing rule 'third'; known: first, second"):
        pipeline.make_config(None, third=True)
