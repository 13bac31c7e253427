"""The label app's parts that need no MONAI Label: options, studies, point parsing, the session cache
and the command's own checks (the server itself: tests/test_label_server.py)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import labelstudies as L
from petclick.cli import main
from petclick.core.errors import InputError
from petclick.inference.predictors import SuvThresholdPredictor
from petclick.workflows.label.access import is_loopback
from petclick.workflows.label.launch import environment
from petclick.workflows.label.options import LabelOptions, scratch_for
from petclick.workflows.label.requests import LabelRequestError, parse_clicks
from petclick.workflows.label.sessions import SessionCache
from petclick.workflows.label.studies import images_folder, pair_of


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    return L.write_studies(tmp_path_factory.mktemp("label_studies"))


def _ct(studies: Path, case: str) -> Path:
    return studies / "imagesTr" / f"{case}_0000.nii.gz"


def test_options_round_trip_through_monai_label_conf_strings():
    opts = LabelOptions(models=("a/work_dir", "b/model.pt"), incremental="frozen", show="pet", sessions=2,
                        memory_mb=512.5, workers=3, queue=0, tile_cache_mb=64, first="fast", fast_checkpoints=3)
    conf = opts.to_conf()
    assert all(isinstance(v, str) for v in conf.values())
    assert LabelOptions.from_conf(conf) == opts
    assert LabelOptions.from_conf({"models": "x, y"}).models == ("x", "y")        # `--conf models x,y` by hand
    assert LabelOptions.from_conf({"models": "suv-threshold"}).show == "ct"
    for conf, match in (({}, "no model given"), ({"models": "m", "show": "mri"}, "show"),
                        ({"models": "m", "sessions": "0"}, "at least 1"), ({"models": "m", "sessions": "two"}, "whole"),
                        ({"models": "m", "workers": "0"}, "conf workers: must be at least 1"),
                        ({"models": "m", "memory_mb": "lots"}, "conf memory_mb: must be a number"),
                        ({"models": "[oops"}, "JSON list"), ({"models": "m", "first": "now"}, "conf first"),
                        ({"models": "m", "fast_checkpoints": "0"}, "conf fast_checkpoints: must be at least 1")):
        with pytest.raises(InputError, match=match):
            LabelOptions.from_conf(conf)
    assert LabelOptions(models=("m",), memory_mb=2).memory_bytes == 2 * 2**20
    assert LabelOptions(models=("m",)).memory_bytes > 0                       # half the machine's memory


def test_studies_folder_images_and_pairs(studies, tmp_path):
    assert images_folder(studies) == (studies / "imagesTr").resolve()
    assert images_folder(studies / "imagesTr") == (studies / "imagesTr").resolve()
    assert images_folder(studies, "pet") == (studies / "imagesTr").resolve()
    with pytest.raises(InputError, match="studies folder not found"):
        images_folder(tmp_path / "none")
    with pytest.raises(InputError, match="autoPET layout"):
        images_folder(tmp_path)
    ct, pet = pair_of(_ct(studies, L.GOOD[0]))
    assert pet.name == f"{L.GOOD[0]}_0001.nii.gz" and ct == _ct(studies, L.GOOD[0])
    assert pair_of(pet, "pet") == (ct, pet)
    with pytest.raises(LabelRequestError, match="no partner image") as err:
        pair_of(_ct(studies, L.NO_PET))
    assert err.value.status == 409
    a, b = scratch_for(studies / "imagesTr"), scratch_for(tmp_path / "imagesTr")
    assert a != b and studies not in a.parents


@pytest.mark.parametrize("params,match", [
    ({"tumor": [[1, 2, 99]]}, r"tumor\[0\] \[1, 2, 99\] lies outside the volume of shape \(10, 10, 10\)"),
    ({"background": [[-1, 2, 3]]}, r"background\[0\] \[-1, 2, 3\] lies outside"),
    ({"tumor": [[1, 2]]}, "has 2 coordinates"),
    ({"tumor": [[1.5, 2, 3]]}, "fractional"),
    ({"tumor": "x"}, "must be a list"),
    ({"tumor": [["a", 1, 1]]}, "is a string"),
    ({"tumor": [[1, 2, 3]], "background": [[1, 2, 3]]}, "background click on the voxel of tumour click"),
    ({"tumor": [[1, 1, k % 10] for k in range(11)]}, "exceed the budget of 10"),
    ({"tumor": [[1, 1, 1]], "foreground": [[2, 2, 2]]}, "both 'tumor' and 'foreground'"),
])
def test_bad_points_are_422_naming_the_entry(params, match):
    with pytest.raises(LabelRequestError, match=match) as err:
        parse_clicks(params, (10, 10, 10))
    assert err.value.status == 422


def test_points_as_slicer_sends_them():
    params = {"tumor": [[1, 2, 3], [4, 5, 6]], "background": [[7, 8, 9]], "label": "tumor", "client_id": None,
              "description": "x", "model": "petclick"}
    clicks = parse_clicks(params, (10, 10, 10))
    assert clicks.tumor == [(1, 2, 3), (4, 5, 6)] and clicks.background == [(7, 8, 9)]
    assert parse_clicks({"foreground": [[1, 1, 1]]}, (10, 10, 10)).tumor == [(1, 1, 1)]     # deepgrow style
    assert len(parse_clicks({"label": "tumor"}, (10, 10, 10))) == 0


def _mask(path: str) -> tuple[np.ndarray, np.ndarray]:
    img = nib.load(path)
    return np.asarray(img.dataobj), img.affine


def test_session_cache_masks_honour_clicks_on_the_shown_grid(studies, tmp_path):
    cache = SessionCache(SuvThresholdPredictor(), max_sessions=1)
    for case in (L.GOOD[0], L.FLIPPED):
        ct_img = nib.load(str(_ct(studies, case)))
        t = L.lesion_voxel(studies, case) if case in L.GOOD else (16, 14, 20)
        params = {"tumor": [list(t)], "background": [[1, 1, 1], [30, 26, 38]]}
        path, info = cache.infer(case, _ct(studies, case), params, out_dir=tmp_path)
        mask, affine = _mask(path)
        assert mask.shape == ct_img.shape and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1}
        np.testing.assert_allclose(affine, ct_img.affine, atol=1e-4)
        assert mask[t] == 1 and mask[1, 1, 1] == 0 and mask[30, 26, 38] == 0
        assert info["label_names"] == {"tumor": 1} and info["request"]["session_opened"]
        again, info2 = cache.infer(case, _ct(studies, case), params, out_dir=tmp_path)
        assert not info2["request"]["session_opened"] and not info2["request"]["computed"]
        assert np.array_equal(_mask(again)[0], mask)
    assert cache.opened == 2 and cache.sessions == [("anonymous", L.FLIPPED)]   # one kept: the least recent dropped
    auto, info = cache.infer(L.FLIPPED, _ct(studies, L.FLIPPED), {"tumor": [[16, 14, 20]]}, interactive=False,
                             out_dir=tmp_path)
    assert info["clicks"] == {"tumor": [], "background": []} and info["request"]["computed"]
    pet_path = studies / "imagesTr" / f"{L.GOOD[1]}_0001.nii.gz"          # --show pet: the PET is the shown image
    path, info = SessionCache(SuvThresholdPredictor(), show="pet").infer(L.GOOD[1], pet_path, {"tumor": [[5, 6, 7]]},
                                                                         out_dir=tmp_path)
    mask, affine = _mask(path)
    np.testing.assert_allclose(affine, nib.load(str(pet_path)).affine, atol=1e-4)
    assert mask[5, 6, 7] == 1


@pytest.mark.parametrize("case,status,match", [(L.MISMATCHED, 409, r"CT shape \(30, 28, 40\) and PET shape"),
                                               (L.NO_PET, 409, "no partner image"), ("nope", 404, "unknown image id")])
def test_session_cache_refuses_pairs_that_do_not_match(studies, case, status, match):
    cache = SessionCache(SuvThresholdPredictor())
    with pytest.raises(LabelRequestError, match=match) as err:
        cache.infer(case, _ct(studies, case) if case != "nope" else "", {})
    assert err.value.status == status and not cache.sessions


def test_label_command_checks_before_serving(studies, tmp_path, capsys, monkeypatch):
    import petclick.commands.label as command

    monkeypatch.setattr(command.importlib.util, "find_spec", lambda name: None)
    assert main(["label", "--studies", str(studies), "--models", "suv-threshold"]) == 2
    assert "monailabel: not installed; pip install -r requirements-label.txt" in capsys.readouterr().err
    monkeypatch.setattr(command.importlib.util, "find_spec", lambda name: object())
    monkeypatch.setattr(command, "serve", lambda *a, **k: pytest.fail("the server must not start"))
    assert main(["label", "--studies", str(tmp_path / "none"), "--models", "suv-threshold"]) == 2
    assert "studies folder not found" in capsys.readouterr().err
    assert main(["label", "--studies", str(studies), "--models", str(tmp_path / "missing")]) == 2
    assert "model folder or checkpoint not found" in capsys.readouterr().err
    started = []
    monkeypatch.setattr(command, "serve", lambda *a, **k: started.append((a, k)))
    assert main(["label", "--studies", str(studies), "--models", "suv-threshold", "--scratch", str(tmp_path / "s")]) == 0
    (_, options, scratch), kwargs = started[0]
    assert options.models == ("suv-threshold",) and scratch == (tmp_path / "s").resolve()
    assert kwargs == {"host": "127.0.0.1", "port": 8000, "auth_realm": None}
    env = environment(studies, options, scratch)
    assert json.loads(env["MONAI_LABEL_APP_CONF"])["models"] == '["suv-threshold"]'
    assert Path(env["MONAI_LABEL_APP_DIR"], "main.py").is_file() and env["MONAI_LABEL_AUTH_ENABLE"] == "false"
    env = environment(studies, options, scratch, auth_realm="https://kc.example.org/realms/pet/")
    assert env["MONAI_LABEL_AUTH_ENABLE"] == "true" and env["MONAI_LABEL_AUTH_REALM_URI"].endswith("/realms/pet")


def test_label_command_refuses_an_open_address_without_authentication(studies, tmp_path, capsys, monkeypatch, caplog):
    import petclick.commands.label as command

    started = []
    monkeypatch.setattr(command.importlib.util, "find_spec", lambda name: object())
    monkeypatch.setattr(command, "serve", lambda *a, **k: started.append(k))
    monkeypatch.delenv("MONAI_LABEL_AUTH_ENABLE", raising=False)
    base = ["label", "--studies", str(studies), "--models", "suv-threshold", "--scratch", str(tmp_path / "s")]
    for host in ("0.0.0.0", "10.20.30.40", "::"):
        assert main([*base, "--host", host, "--port", "8123"]) == 2
        err = capsys.readouterr().err
        assert f"--host: {host}:8123 is reachable beyond this machine" in err and "--insecure" in err
    assert not started
    with caplog.at_level("WARNING"):
        assert main([*base, "--host", "0.0.0.0", "--port", "8123", "--insecure"]) == 0
    assert "serving WITHOUT authentication on 0.0.0.0:8123 (--insecure)" in caplog.text
    assert main([*base, "--host", "0.0.0.0", "--auth-realm", "https://kc.example.org/realms/pet"]) == 0
    monkeypatch.setenv("MONAI_LABEL_AUTH_ENABLE", "true")                 # MONAI Label's own variables count too
    monkeypatch.setenv("MONAI_LABEL_AUTH_REALM_URI", "https://kc.example.org/realms/x")
    assert main([*base, "--host", "0.0.0.0"]) == 0
    assert [k["auth_realm"] for k in started] == [None, "https://kc.example.org/realms/pet",
                                                  "https://kc.example.org/realms/x"]
    for loopback in ("127.0.0.1", "::1", "localhost"):
        assert is_loopback(loopback)
    assert not is_loopback("0.0.0.0") and not is_loopback("") and not is_loopback("192.168.1.9")


def test_a_request_may_choose_step_zero_when_it_opens_the_session():
    from petclick.workflows.label.requests import LabelRequestError
    from petclick.workflows.label.sessions import _first_param

    assert _first_param({}) is None and _first_param({"first": " Fast "}) == "fast"
    with pytest.raises(LabelRequestError, match="params first: unknown step-0 choice 'soon'"):
        _first_param({"first": "soon"})
