"""`petclick interactive` end to end on a tiny datalist, checked against the protocol and `evaluate`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from petclick.cli import main as cli_main
from petclick.io.clickfile import Clicks, write_clicks
from petclick.io.images import load_case, save_volume
from petclick.inference.protocol import run_protocol
from petclick.metrics.report import read_cases_csv
from petclick.inference.predictors import SuvThresholdPredictor

AFFINE = np.diag([2.0, 2.0, 3.0, 1.0])
SHAPE = (16, 16, 12)
A = np.s_[2:5, 2:5, 2:5]
B = np.s_[10:13, 10:13, 6:9]
C = np.s_[2:5, 11:14, 8:11]


def write_case(root, case, lesions, clicks: Clicks):
    pet = np.ones(SHAPE, np.float32)
    pet[C] = 8.0
    label = np.zeros(SHAPE, np.uint8)
    for box, suv in lesions:
        pet[box] = suv
        label[box] = 1
    save_volume(root / "imagesTr" / f"{case}_0000.nii.gz", np.zeros(SHAPE, np.float32), AFFINE)
    save_volume(root / "imagesTr" / f"{case}_0001.nii.gz", pet, AFFINE)
    save_volume(root / "labelsTr" / f"{case}.nii.gz", label, AFFINE)
    write_clicks(root / "clicks" / f"{case}_clicks.json", clicks)
    return {"image": f"imagesTr/{case}_0000.nii.gz", "pet": f"imagesTr/{case}_0001.nii.gz",
            "label": f"labelsTr/{case}.nii.gz", "clicks": f"clicks/{case}_clicks.json"}


@pytest.fixture
def cohort(tmp_path):
    root = tmp_path / "data"
    testing = [
        write_case(root, "fdg_p1_2020", [(A, 6.0), (B, 2.0)], Clicks([(3, 3, 3), (11, 11, 7)], [(3, 12, 9)])),
        write_case(root, "psma_p2_2021", [(B, 5.0)], Clicks([(11, 11, 7)] * 2, [(3, 12, 9)])),
        write_case(root, "fdg_p3_2020", [], Clicks([], [(3, 12, 9)])),           # negative control
        write_case(root, "psma_p4_2022", [(A, 6.0)], Clicks([(30, 3, 3)], [])),  # click outside the volume
    ]
    (root / "datalist.json").write_text(json.dumps({"training": [], "testing": testing}))
    return root


def test_interactive_suv_threshold_end_to_end(cohort, tmp_path, capsys):
    out = tmp_path / "run"
    rc = cli_main(["interactive", "--predictor", "suv-threshold", "--datalist", str(cohort / "datalist.json"),
                   "--split", "testing", "--out", str(out), "--save-predictions", "--postprocess", "off"])
    assert rc == 0
    console = capsys.readouterr().out
    assert "evaluated 3 of 4 cases" in console and "psma_p4_2022" in console
    assert "masks: prob >= 0.5, no post-processing" in console

    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_evaluated"] == 3 and summary["n_skipped"] == 1
    assert summary["mode"] == "official" and summary["predictor"] == "suv-threshold"
    assert summary["postprocess"] is None and summary["scoring"] == "prob >= 0.5, no post-processing"
    assert "outside the volume" in summary["skipped"][0]["reason"]
    assert summary["overall"]["n_negative"] == 1

    rows = read_cases_csv(out / "cases.csv")
    assert len(rows) == 33
    # The same numbers as running the protocol directly.
    case = load_case(cohort / "imagesTr/fdg_p1_2020_0000.nii.gz", cohort / "imagesTr/fdg_p1_2020_0001.nii.gz",
                     cohort / "labelsTr/fdg_p1_2020.nii.gz")
    direct = run_protocol(SuvThresholdPredictor(), case, Clicks([(3, 3, 3), (11, 11, 7)], [(3, 12, 9)]))
    got = [r for r in rows if r["case"] == "fdg_p1_2020"]
    for d, g in zip(direct, got):
        assert (g["step"], g["dice"], g["fpv_ml"], g["fnv_ml"]) == pytest.approx((d["step"], d["dice"], d["fpv_ml"], d["fnv_ml"]))
        assert g["tumor_clicks"] == d["tumor_clicks"]
    # Lesion B (SUV 2.0) is below the threshold: never found, FNV stays at its 27 voxels.
    assert got[10]["fnv_ml"] == pytest.approx(27 * 0.012) and got[10]["fpv_ml"] == 0.0
    neg = [r for r in rows if r["case"] == "fdg_p3_2020"]
    assert neg[0]["fpv_ml"] == pytest.approx(27 * 0.012) and neg[1]["fpv_ml"] == 0.0  # background click removes C

    assert sorted(p.name for p in (out / "mip").iterdir()) == ["fdg_p1_2020.png", "fdg_p3_2020.png", "psma_p2_2021.png"]
    assert (out / "curves.png").is_file()
    assert len(list((out / "predictions").glob("*_pred*.nii.gz"))) == 33

    # Saved predictions scored by `petclick evaluate` give the same report numbers.
    rc = cli_main(["evaluate", "--gt", str(cohort / "labelsTr"), "--pred", str(out / "predictions"),
                   "--out", str(tmp_path / "eval"), "--no-mip"])
    assert rc == 0
    again = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert again["n_evaluated"] == 3 and again["n_skipped"] == 1  # psma_p4_2022: no prediction
    for key in ("dice_auc", "fpv_auc", "fnv_auc", "dice_final", "fpv_final", "fnv_final"):
        assert again["overall"][key]["mean"] == pytest.approx(summary["overall"][key]["mean"], nan_ok=True)


def test_interactive_compare_and_case_subset(cohort, tmp_path):
    out = tmp_path / "cmp"
    rc = cli_main(["interactive", "--predictor", "suv-threshold", "--compare", "suv-threshold",
                   "--datalist", str(cohort / "datalist.json"), "--out", str(out), "--no-mip",
                   "--cases", "fdg_p1_2020", "psma_p2_2021"])
    assert rc == 0
    compare = json.loads((out / "compare.json").read_text())["predictors"]
    assert list(compare) == ["suv-threshold", "suv-threshold_2"]  # one report folder per predictor
    assert compare["suv-threshold_2"]["predictor"] == "suv-threshold"
    assert compare["suv-threshold"]["dice_auc"] == compare["suv-threshold_2"]["dice_auc"]
    assert (out / "suv-threshold" / "summary.json").is_file() and (out / "suv-threshold_2" / "summary.json").is_file()
    assert (out / "compare_curves.png").is_file() and not (out / "suv-threshold" / "mip").exists()
    s = json.loads((out / "suv-threshold" / "summary.json").read_text())
    assert s["n_evaluated"] == 2 and s["n_skipped"] == 0


def test_interactive_bad_arguments(cohort, tmp_path, capsys):
    dl = str(cohort / "datalist.json")
    assert cli_main(["interactive", "--predictor", "suv-threshold", "--datalist", dl, "--split", "validation",
                     "--out", str(tmp_path / "x")]) == 2
    assert "no split 'validation'" in capsys.readouterr().err
    assert cli_main(["interactive", "--predictor", "nope", "--datalist", dl, "--out", str(tmp_path / "x")]) == 2
    assert "unknown predictor" in capsys.readouterr().err
    assert cli_main(["interactive", "--predictor", "suv-threshold", "--datalist", dl, "--out", str(tmp_path / "x"),
                     "--cases", "fdg_zz_1"]) == 2


def test_interactive_error_driven(cohort, tmp_path):
    pytest.importorskip("petclick.clicks.error_driven")
    out = tmp_path / "ed"
    rc = cli_main(["interactive", "--predictor", "suv-threshold", "--datalist", str(cohort / "datalist.json"),
                   "--out", str(out), "--mode", "error-driven", "--no-mip"])
    assert rc == 0
    rows = read_cases_csv(out / "cases.csv")
    assert all(r["n_tumor_clicks"] <= r["step"] and r["n_background_clicks"] <= r["step"] for r in rows)
    assert json.loads((out / "summary.json").read_text())["mode"] == "error-driven"


def test_interactive_on_generated_phantoms(tmp_path):
    phantoms = pytest.importorskip("petclick.phantoms")
    pytest.importorskip("petclick.clicks.simulate")  # the generator places the official clicks with it
    if not hasattr(phantoms, "generate_cohort"):
        pytest.skip("phantom generator not there yet")
    datalist = phantoms.generate_cohort(tmp_path / "ph", cases=3, seed=0, shape=(48, 48, 64), negatives=0.0)
    data = json.loads(datalist.read_text())
    split = "testing" if data.get("testing") else "training"
    out = tmp_path / "run"
    rc = cli_main(["interactive", "--predictor", "suv-threshold", "--datalist", str(datalist), "--split", split,
                   "--out", str(out), "--no-mip"])
    summary = json.loads((out / "summary.json").read_text())
    assert rc == 0 and summary["n_skipped"] == 0 and summary["n_evaluated"] == len(data[split])
    rows = read_cases_csv(out / "cases.csv")
    assert len(rows) == 11 * len(data[split])
    assert all(0.0 <= r["dice"] <= 1.0 for r in rows)  # no negatives were asked for
    # Clicks steer the baseline: at step 10 it never keeps more than at step 0 (tumour clicks select).
    by = {(r["case"], r["step"]): r for r in rows}
    assert all(by[(c, 10)]["pred_ml"] <= by[(c, 0)]["pred_ml"] for c, _ in by)


def test_interactive_with_a_model_checkpoint(cohort, tmp_path):
    """`--predictor PATH` goes through petclick.inference (an untrained tiny network: plumbing, not quality)."""
    pytest.importorskip("petclick.clicks.encoding")
    pytest.importorskip("petclick.clicks.geometry")
    checkpoint = pytest.importorskip("petclick.runtime.checkpoint")
    import torch

    from petclick.networks.factory import build_network
    kwargs = {"init_filters": 4, "blocks_down": [1, 1], "dsdepth": 1}
    torch.manual_seed(0)
    net = build_network("segresnet", 4, 1, **kwargs)
    ckpt = checkpoint.save_checkpoint(tmp_path / "m" / "model.pt", {
        "state_dict": net.state_dict(), "network": {"name": "segresnet", "kwargs": kwargs},
        "in_channels": 4, "out_channels": 1,
        "preprocess": {"roi": [16, 16, 16], "crop_body": False, "encoding": {"encoding": "edt", "channels": "two"}},
        "infer": {"roi": [16, 16, 16], "overlap": 0.25, "sw_batch_size": 1}})
    out = tmp_path / "model_run"
    rc = cli_main(["interactive", "--predictor", str(ckpt.parent), "--compare", "suv-threshold",
                   "--datalist", str(cohort / "datalist.json"), "--out", str(out), "--no-mip",
                   "--cases", "fdg_p1_2020", "fdg_p3_2020"])
    assert rc == 0
    compare = json.loads((out / "compare.json").read_text())["predictors"]
    assert len(compare) == 2 and all(row["n_evaluated"] == 2 for row in compare.values())
    rows = read_cases_csv(next(Path(row["folder"]) for row in compare.values()
                               if row["predictor"] != "suv-threshold") / "cases.csv")
    assert len(rows) == 22 and all(0.0 <= r["dice"] <= 1.0 for r in rows if r["case"] == "fdg_p1_2020")


def test_interactive_algo_weights_recorded(cohort, tmp_path, capsys):
    """--algo-weights reaches the model ensembles (not the baseline) and the summary meta; bad values name the option."""
    pytest.importorskip("petclick.clicks.encoding")
    checkpoint = pytest.importorskip("petclick.runtime.checkpoint")
    import torch

    from petclick.networks.factory import build_network
    kwargs = {"init_filters": 4, "blocks_down": [1, 1], "dsdepth": 1}
    torch.manual_seed(0)
    ckpt = checkpoint.save_checkpoint(tmp_path / "m" / "model.pt", {
        "state_dict": build_network("segresnet", 4, 1, **kwargs).state_dict(), "algo": "segresnet",
        "network": {"name": "segresnet", "kwargs": kwargs}, "in_channels": 4, "out_channels": 1,
        "preprocess": {"roi": [16, 16, 16], "crop_body": False, "encoding": {"encoding": "edt", "channels": "two"}},
        "infer": {"roi": [16, 16, 16], "overlap": 0.25, "sw_batch_size": 1}})
    out = tmp_path / "weighted"
    common = ["--datalist", str(cohort / "datalist.json"), "--no-mip", "--cases", "fdg_p3_2020"]
    assert cli_main(["interactive", "--predictor", "suv-threshold", "--compare", str(ckpt.parent),
                     "--algo-weights", "segresnet=2", "dints=0.5", "--out", str(out), *common]) == 0
    metas = {Path(row["folder"]).name: json.loads((Path(row["folder"]) / "summary.json").read_text())
             for row in json.loads((out / "compare.json").read_text())["predictors"].values()}
    assert metas["suv-threshold"]["algo_weights"] is None
    assert metas["m"]["algo_weights"] == {"segresnet": 2.0}
    assert cli_main(["interactive", "--predictor", str(ckpt.parent), "--algo-weights", "segresnet=-1",
                     "--out", str(tmp_path / "bad"), *common]) == 2
    err = capsys.readouterr().err
    assert "--algo-weights" in err and ">= 0" in err


def test_interactive_scores_as_demo_predict_and_gc_by_default(cohort, tmp_path, capsys):
    """One scoring behaviour: without --postprocess, `interactive` post-processes each step's mask with
    the shipped rules, as `demo` (the job's default), `predict` and `gc` do, and its report says so."""
    from petclick.commands.predict import postprocess_config
    from petclick.postprocess import make_config
    from petclick.workflows.interactive import InteractiveJob

    out = tmp_path / "default"
    assert cli_main(["interactive", "--predictor", "suv-threshold", "--compare", "suv-threshold", "--no-mip",
                     "--datalist", str(cohort / "datalist.json"), "--out", str(out), "--cases", "fdg_p1_2020"]) == 0
    console = capsys.readouterr().out
    assert "masks: prob >= 0.5, click_consistency (grow suv-replace)" in console
    summary = json.loads((out / "suv-threshold" / "summary.json").read_text())
    assert summary["postprocess"] == make_config() and "click_consistency" in summary["scoring"]
    assert json.loads((out / "compare.json").read_text())["scoring"] == summary["scoring"]
    # the scores are those of the protocol run on a session that post-processes as shipped
    case = load_case(cohort / "imagesTr/fdg_p1_2020_0000.nii.gz", cohort / "imagesTr/fdg_p1_2020_0001.nii.gz",
                     cohort / "labelsTr/fdg_p1_2020.nii.gz")
    clicks = Clicks([(3, 3, 3), (11, 11, 7)], [(3, 12, 9)])
    shipped = run_protocol(SuvThresholdPredictor(), case, clicks, session={"postprocess": make_config(), "tracer": "fdg"})
    raw = run_protocol(SuvThresholdPredictor(), case, clicks)
    got = read_cases_csv(out / "suv-threshold" / "cases.csv")
    assert [g["dice"] for g in got] == pytest.approx([r["dice"] for r in shipped])
    assert [g["pred_ml"] for g in got] != pytest.approx([r["pred_ml"] for r in raw])  # the rules did change masks
    # the demo's job, `predict` and `gc` use the same configuration
    job = InteractiveJob(predictor="suv-threshold", datalist=Path("d.json"), out=Path("o"))
    assert job.postprocess == make_config()
    from petclick.cli import build_parser
    for argv in (["predict", "--models", "m", "--input", "i", "--out", "o"], ["gc"]):
        assert postprocess_config(build_parser().parse_args(argv)) == make_config()
