"""The label app against a real MONAI Label server: `petclick label` started on a free loopback
port over a small phantom studies folder with two tiny checkpoints, requests as 3D Slicer's
MONAI Label module sends them, then stopped. Skipped when monailabel is not installed
(requirements-label.txt; .ci/run installs it)."""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

if importlib.util.find_spec("monailabel") is None:
    pytest.skip("monailabel is not installed (pip install -r requirements-label.txt, then monailabel --no-deps)",
                allow_module_level=True)

import nibabel as nib  # noqa: E402
import requests  # noqa: E402
from requests_toolbelt.multipart.decoder import MultipartDecoder  # noqa: E402

import labelstudies as L  # noqa: E402
from petclick.workflows.label.process import LabelServerProcess  # noqa: E402

START_TIMEOUT_S = 300      # imports and app start take ~10 s alone, far more on a loaded 2-core machine
STOP_TIMEOUT_S = 60


class Server(LabelServerProcess):
    """The server over the small studies folder and the two tiny checkpoints, with its own HOME."""

    def __init__(self, root: Path):
        self.studies = L.write_studies(root / "studies")
        self.models = L.write_tiny_models(root / "models")
        super().__init__(self.studies, [self.models], root / "server.log", extra=["--scratch", str(root / "scratch")],
                         env={"HOME": str(root / "home"), "XDG_CACHE_HOME": str(root / "cache")},
                         start_timeout_s=START_TIMEOUT_S, stop_timeout_s=STOP_TIMEOUT_S)

    def infer(self, image: str, params, model: str = "petclick", **query) -> requests.Response:
        body = params if isinstance(params, str) else json.dumps(params)
        return requests.post(f"{self.url}/infer/{model}", params={"image": image, **query},
                             files={"params": (None, body)}, timeout=120)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("label_server"))
    yield srv
    srv.stop()


def _decode(response: requests.Response) -> tuple[dict, nib.Nifti1Image, str]:
    """Slicer's default answer: multipart with the JSON `params` and the mask `image` parts."""
    assert response.status_code == 200, response.text
    parts = {}
    for part in MultipartDecoder.from_response(response).parts:
        disposition = part.headers[b"Content-Disposition"].decode()
        name = disposition.split('name="')[1].split('"')[0]
        parts[name] = (part.content, disposition)
    info = json.loads(parts["params"][0])
    content, disposition = parts["image"]
    assert 'filename="' in disposition and ".nii.gz" in disposition
    mask = nib.Nifti1Image.from_bytes(gzip.decompress(content))
    return info, mask, disposition


def _ct(server: Server, case: str) -> nib.Nifti1Image:
    return nib.load(str(server.studies / "imagesTr" / f"{case}_0000.nii.gz"))


def test_info_lists_the_tasks_and_the_datastore_the_cases(server):
    info = requests.get(f"{server.url}/info/", timeout=30).json()
    assert info["models"]["petclick"]["type"] == "deepedit"
    assert info["models"]["petclick_auto"]["type"] == "segmentation"
    assert info["models"]["petclick"]["labels"] == {"tumor": 1, "background": 0}
    assert "random" in info["strategies"]                   # Slicer's "Next Sample"
    objects = requests.get(f"{server.url}/datastore/", params={"output": "all"}, timeout=30).json()["objects"]
    assert sorted(objects) == sorted(L.ALL_IDS)             # one image per case, id = case id, the CT shown
    assert objects[L.GOOD[0]]["image"]["ext"] == "_0000.nii.gz"
    assert sorted(p.name for p in server.studies.iterdir()) == ["clicks", "imagesTr", "labelsTr", "labelsTr_organs",
                                                               "meta"]          # the studies folder is not written


def test_clicks_give_a_mask_on_the_image_grid_then_one_more_click_is_incremental(server):
    case = L.GOOD[0]
    ct = _ct(server, case)
    tumour = list(L.lesion_voxel(server.studies, case))
    first = {"tumor": [tumour], "background": [[2, 2, 2]], "label": "tumor"}
    info, mask, _ = _decode(server.infer(case, first))
    arr = np.asarray(mask.dataobj)
    assert arr.shape == ct.shape and set(np.unique(arr)) <= {0, 1}
    np.testing.assert_allclose(mask.affine, ct.affine, atol=1e-4)
    assert arr[tuple(tumour)] == 1 and arr[2, 2, 2] == 0
    assert info["label_names"] == {"tumor": 1} and info["clicks"] == {"tumor": [tumour], "background": [[2, 2, 2]]}
    req, ses = info["request"], info["session"]
    assert req["session_opened"] and req["computed"] and ses["mode"] == "exact"
    assert req["tiles_computed"] == ses["tiles_per_pass"] > 0 and req["tiles_reused"] == 0     # a full first pass

    second = {**first, "background": [[2, 2, 2], [29, 25, 37]]}      # Slicer re-sends every point, plus the new one
    info2, mask2, _ = _decode(server.infer(case, second))
    arr2 = np.asarray(mask2.dataobj)
    assert arr2[tuple(tumour)] == 1 and arr2[2, 2, 2] == 0 and arr2[29, 25, 37] == 0
    req2, ses2 = info2["request"], info2["session"]
    assert not req2["session_opened"] and req2["computed"] and req2["step"] == 2
    assert 0 < req2["tiles_computed"] < ses2["tiles_per_pass"] and req2["tiles_reused"] > 0   # only the tiles the click reaches
    assert ses2["predictions"] == 2 and ses2["tiles_computed"] == ses["tiles_computed"] + req2["tiles_computed"]

    info3, mask3, _ = _decode(server.infer(case, second))             # nothing new: nothing computed
    assert not info3["request"]["computed"] and info3["request"]["tiles_computed"] == 0
    assert np.array_equal(np.asarray(mask3.dataobj), arr2)


def test_clicks_index_the_file_on_a_flipped_affine_and_the_auto_task_is_step_zero(server):
    ct = _ct(server, L.FLIPPED)
    info, mask, _ = _decode(server.infer(L.FLIPPED, {"tumor": [[3, 14, 20]], "background": [[28, 14, 20]]}))
    arr = np.asarray(mask.dataobj)
    np.testing.assert_allclose(mask.affine, ct.affine, atol=1e-4)       # the file's own orientation, not RAS
    assert arr[3, 14, 20] == 1 and arr[28, 14, 20] == 0
    auto, auto_mask, _ = _decode(server.infer(L.GOOD[1], {}, model="petclick_auto"))
    assert auto["clicks"] == {"tumor": [], "background": []} and auto["request"]["step"] == 0
    assert auto_mask.shape == _ct(server, L.GOOD[1]).shape
    only_json = server.infer(L.GOOD[1], {}, model="petclick_auto", output="json")
    assert only_json.status_code == 200 and only_json.json()["lesion_voxels"] == auto["lesion_voxels"]


@pytest.mark.parametrize("model,image,params,status,detail", [
    ("petclick", L.GOOD[0], {"tumor": [[99, 0, 0]]}, 422, "tumor[0] [99, 0, 0] lies outside the volume of shape (32, 28, 40)"),
    ("petclick", L.GOOD[0], {"background": [[0, -1, 0]]}, 422, "background[0] [0, -1, 0] lies outside"),
    ("petclick", L.GOOD[0], {"tumor": [[1, 2]]}, 422, "has 2 coordinates"),
    ("petclick", L.GOOD[0], {"tumor": "12,20,16"}, 422, "must be a list of [i, j, k] clicks"),
    ("petclick", L.GOOD[0], "{not json", 422, "params is not valid JSON"),
    ("petclick", L.GOOD[0], "[[1, 2, 3]]", 422, "params must be a JSON object"),
    ("petclick", "fdg_9999_2020", {}, 404, "unknown image id 'fdg_9999_2020'"),
    ("petclick", "/etc/hostname", {}, 404, "unknown image id '/etc/hostname'"),
    ("petclick", "", {}, 422, "no image id given"),
    ("deepedit_spleen", L.GOOD[0], {}, 404, "unknown model 'deepedit_spleen'"),
    ("petclick", L.MISMATCHED, {"tumor": [[5, 5, 5]]}, 409, "CT shape (30, 28, 40) and PET shape (32, 28, 40) differ"),
    ("petclick", L.NO_PET, {}, 409, "has no partner image fdg_0010_2020_0001.nii.gz"),
])
def test_bad_requests_are_4xx_with_a_message(server, model, image, params, status, detail):
    response = server.infer(image, params, model=model)
    assert response.status_code == status, response.text
    assert detail in response.json()["detail"]


def test_session_mode_is_refused_and_no_request_left_a_traceback(server):
    response = server.infer(L.GOOD[0], {}, session_id="abc")
    assert response.status_code == 422 and "open the case from the server" in response.json()["detail"]
    assert requests.get(f"{server.url}/info/", timeout=30).status_code == 200
    log = server.log.read_text()
    assert "Traceback" not in log and " 500 " not in log, log[-3000:]


def test_the_server_stops_on_interrupt(server):
    assert server.stop() is not None and server.proc.poll() is not None
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{server.url}/info/", timeout=5)
