"""The label app against a real MONAI Label server: `petclick label` started on a free loopback
port over a small phantom studies folder with two tiny checkpoints, requests as 3D Slicer's
MONAI Label module sends them, then stopped. Skipped when monailabel is not installed
(requirements-label.txt; .ci/run installs it).

The server runs with 2 workers and a queue of 2 (--workers 2 --queue 2) and at most 6 sessions, so
that concurrent readers, a flood (429), hostile requests (a fixed list, seeded mutations of a valid
request, and a property-based test of the params), client disconnects and a read-only scratch
folder are all tried against the same real server. Then it is killed (SIGKILL) mid-session and
started again over the same folders, with MONAI Label's authentication on against a local token
issuer that answers as a Keycloak realm (tests/labelauth.py): the session is rebuilt from the
request's points, tokens are checked (none, bad, expired, forged, HMAC-confused, without the role:
refused), Slicer's login flow works and each user's session is their own. Two server starts in all."""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import random
import signal
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

if importlib.util.find_spec("monailabel") is None:
    pytest.skip("monailabel is not installed (pip install -r requirements-label.txt, then monailabel --no-deps)",
                allow_module_level=True)

import nibabel as nib  # noqa: E402
import requests  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from requests_toolbelt.multipart.decoder import MultipartDecoder  # noqa: E402

import labelstudies as L  # noqa: E402
from labelauth import ANNOTATOR_ROLE, USER_ROLE, TokenIssuer, new_key  # noqa: E402
from petclick.workflows.label.process import LabelServerProcess  # noqa: E402

START_TIMEOUT_S = 300      # imports and app start take ~10 s alone, far more on a loaded 2-core machine
STOP_TIMEOUT_S = 60
SERVER_ARGS = ["--workers", "2", "--queue", "2", "--sessions", "6"]


class Server(LabelServerProcess):
    """The server over the small studies folder and the two tiny checkpoints, with its own HOME;
    `again` starts another over the same folders (scratch included)."""

    def __init__(self, root: Path, studies: Path | None = None, models: Path | None = None, extra: list[str] = (),
                 ready_status: tuple[int, ...] = (200, 401)):
        self.root = root
        self.studies = studies or L.write_studies(root / "studies")
        self.models = models or L.write_tiny_models(root / "models")
        self.scratch = root / "scratch"
        super().__init__(self.studies, [self.models], root / f"server-{time.monotonic_ns()}.log",
                         extra=["--scratch", str(self.scratch), *SERVER_ARGS, *extra],
                         env={"HOME": str(root / "home"), "XDG_CACHE_HOME": str(root / "cache")},
                         start_timeout_s=START_TIMEOUT_S, stop_timeout_s=STOP_TIMEOUT_S, ready_status=ready_status)

    def again(self, extra: list[str] = ()) -> "Server":
        return Server(self.root, self.studies, self.models, extra)

    def infer(self, image: str, params, model: str = "petclick", **query) -> requests.Response:
        body = params if isinstance(params, str) else json.dumps(params)
        return requests.post(f"{self.url}/infer/{model}", params={"image": image, **query},
                             files={"params": (None, body)}, timeout=120)

    def status(self) -> dict:
        return requests.get(f"{self.url}/info/", timeout=30).json()["petclick"]

    def wait_idle(self, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            s = self.status()
            if s["running"] == 0 and s["queued"] == 0:
                return
            time.sleep(0.05)
        raise AssertionError(f"server still busy after {timeout_s} s: {self.status()}")


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
    assert req["path"] == "full" and req["bound"] == 1e-6 and ses["last"]["path"] == "full"   # what it did

    second = {**first, "background": [[2, 2, 2], [29, 25, 37]]}      # Slicer re-sends every point, plus the new one
    info2, mask2, _ = _decode(server.infer(case, second))
    arr2 = np.asarray(mask2.dataobj)
    assert arr2[tuple(tumour)] == 1 and arr2[2, 2, 2] == 0 and arr2[29, 25, 37] == 0
    req2, ses2 = info2["request"], info2["session"]
    assert not req2["session_opened"] and req2["computed"] and req2["step"] == 2
    assert 0 < req2["tiles_computed"] < ses2["tiles_per_pass"] and req2["tiles_reused"] > 0   # only the tiles the click reaches
    assert req2["path"] == "exact" and req2["windows_computed"] == req2["tiles_computed"] and not req2["refining"]
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
    ("petclick", "/etc/hostname", {}, 400, "image id '/etc/hostname' contains a path separator"),
    ("petclick", "", {}, 422, "no image id given"),
    ("deepedit_spleen", L.GOOD[0], {}, 404, "unknown model 'deepedit_spleen'"),
    ("petclick", L.MISMATCHED, {"tumor": [[5, 5, 5]]}, 409, "CT shape (30, 28, 40) and PET shape (32, 28, 40) differ"),
    ("petclick", L.NO_PET, {}, 409, "has no partner image fdg_0010_2020_0001.nii.gz"),
])
def test_bad_requests_are_4xx_with_a_message(server, model, image, params, status, detail):
    response = server.infer(image, params, model=model)
    assert response.status_code == status, response.text
    assert detail in response.json()["detail"]


def test_the_reader_page_passes_the_guard_and_two_browser_readers_keep_their_own_masks(server):
    """petclick's reader page (/reader/, issue 28) behind the guard (issue 31): its API is served, a
    browser tab's client id keys its session, bad ids are refused; OHIF is not served over NIfTI."""
    case, lesion = L.GOOD[1], list(L.lesion_voxel(server.studies, L.GOOD[1]))
    page = requests.get(f"{server.url}/reader/", timeout=30)
    assert page.status_code == 200 and "client_id" in page.text
    listed = requests.get(f"{server.url}/reader/api/images", timeout=30)
    assert listed.status_code == 200, listed.text
    listed = listed.json()
    errors = {i["id"]: i.get("error", "") for i in listed}
    assert "has no partner image" in errors[L.NO_PET] and "differ" in errors[L.MISMATCHED]    # listed with the reason
    assert not errors[case]
    shape = tuple(next(i for i in listed if i["id"] == case)["shape"])
    volume = requests.get(f"{server.url}/reader/api/volume/{case}/pet", timeout=60)
    assert volume.status_code == 200 and len(volume.content) == int(np.prod(shape))
    plans = {"reader-aaaa": {"tumor": [lesion], "background": [[2, 2, 2]]},
             "reader-bbbb": {"tumor": [[2, 2, 2]], "background": [lesion]}}          # opposite clicks, same voxels
    for client, clicks in plans.items():
        answer = server.infer(case, {**clicks, "client_id": client}, output="json")
        assert answer.status_code == 200 and answer.json()["request"]["reader"] == client
    masks = {}
    for client in plans:
        r = requests.get(f"{server.url}/reader/api/mask/{case}", params={"client_id": client}, timeout=30)
        assert r.status_code == 200, r.text
        masks[client] = np.frombuffer(r.content, np.uint8).reshape(shape, order="F")
    a, b = masks["reader-aaaa"], masks["reader-bbbb"]
    assert a[tuple(lesion)] == 1 and a[2, 2, 2] == 0 and b[tuple(lesion)] == 0 and b[2, 2, 2] == 1
    for target, status, detail in [
            (f"/reader/api/mask/{case}?client_id=..%2Fx", 400, "client_id"),
            ("/reader/api/volume/fdg%3A0001/ct", 400, "drive separator"),
            ("/reader/api/volume/..%2F..%2Fetc/ct", 400, "'..' segment"),
            ("/reader/api/mask/fdg_9999_2020?client_id=reader-aaaa", 404, "unknown image id"),
            ("/ohif/", 403, "DICOMweb studies only"), ("/proxy/dicom/qido/studies", 403, "DICOMweb studies only")]:
        r = requests.get(f"{server.url}{target}", timeout=30)
        assert r.status_code == status and detail in r.json()["detail"], (target, r.status_code, r.text)


# ----------------------------------------------------------------------------- concurrent readers, flood
def _reader_clicks(image_index: int, swap: bool) -> tuple[list, list]:
    """Three tumour and three background points of a reader; `swap` gives the other reader of the
    image the opposite kinds on the same voxels."""
    a = [[5, 5, 5], [10, 10, 10], [20, 20, 20 + image_index]]
    b = [[25, 5, 5], [5, 20, 30], [15, 15, 35 - image_index]]
    return (b, a) if swap else (a, b)


def test_concurrent_readers_each_get_masks_of_their_own_clicks(server):
    """4 readers at once, two per image with opposite clicks on the same voxels, 3 clicks each."""
    results, errors = {}, []
    barrier = threading.Barrier(4)

    def reader(name: str, image: str, tumour: list, background: list):
        try:
            barrier.wait(30)
            for k in range(1, 4):
                params = {"tumor": tumour[:k], "background": background[:k], "client_id": name}
                info, mask, _ = _decode(server.infer(image, params))
                arr = np.asarray(mask.dataobj)
                results[(name, k)] = (info, [int(arr[tuple(p)]) for p in tumour[:k]],
                                      [int(arr[tuple(p)]) for p in background[:k]])
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(f"{name}: {exc!r}")

    plan = {f"r{i}": (L.GOOD[i % 2], *_reader_clicks(i % 2, swap=i >= 2)) for i in range(4)}
    threads = [threading.Thread(target=reader, args=(n, *a)) for n, a in plan.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors
    for (name, k), (info, inside, outside) in results.items():
        tumour, background = plan[name][1][:k], plan[name][2][:k]
        assert info["request"]["reader"] == name and info["request"]["step"] == k
        assert info["clicks"] == {"tumor": tumour, "background": background}     # never another reader's points
        assert inside == [1] * k and outside == [0] * k
    assert len(results) == 12 and server.status()["readers"] >= 4


def test_a_flood_beyond_the_queue_gets_429_and_the_queue_is_visible(server):
    n = 16
    barrier, answers = threading.Barrier(n), []

    def flood(i: int):
        barrier.wait(30)
        answers.append(server.infer(L.GOOD[1], {"tumor": [[5, 6, 7]], "client_id": f"flood{i}"}, output="json"))

    threads = [threading.Thread(target=flood, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    codes = sorted(r.status_code for r in answers)
    busy = [r for r in answers if r.status_code == 429]
    assert len(answers) == n and set(codes) == {200, 429} and len(busy) <= n - 4, codes   # 2 run + 2 wait at least
    assert all("server busy" in r.json()["detail"] and r.headers["Retry-After"] for r in busy)
    server.wait_idle()
    status = server.status()
    assert (status["workers"], status["queue_limit"], status["peak_queued"]) == (2, 2, 2)
    assert status["refused_busy"] >= len(busy) and status["served"] >= n - len(busy)
    assert status["sessions"] <= status["max_sessions"] == 6 and status["memory_bytes"] <= status["memory_limit_bytes"]
    assert status["sessions"] == status["sessions_opened"] - sum(status["sessions_dropped"].values())
    if status["sessions_opened"] > 6:                       # after the tests above: the least recently used went
        assert status["sessions_dropped"]["count"] > 0
        assert "session dropped, least recently used (more than 6 sessions open)" in server.log.read_text()


# ----------------------------------------------------------------------------- hostile requests
def _files_outside_scratch(server: Server) -> dict:
    """Every file under the test's folder except the scratch folder and the server logs (path -> size)."""
    out = {}
    for path in server.root.rglob("*"):
        rel = path.relative_to(server.root)
        if path.is_file() and rel.parts[0] != "scratch" and not rel.name.startswith("server-"):
            out[str(rel)] = path.stat().st_size
    return out


def _raw(server: Server, request: bytes, timeout: float = 60) -> tuple[int, bytes]:
    """Send raw bytes, return (status, body) of the answer (0 when the server closed without one)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(request)                  # and keep it open: a half-closed socket is a client gone
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    if not data.startswith(b"HTTP/1.1 "):
        return 0, data
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def _multipart(params: str, boundary: str = "petclickfuzz") -> tuple[bytes, str]:
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"params\"\r\n\r\n{params}\r\n"
            f"--{boundary}--\r\n").encode()
    return body, f"multipart/form-data; boundary={boundary}"


def _http(method: str, target: str, body: bytes = b"", content_type: str | None = None) -> bytes:
    head = f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
    if content_type:
        head += f"Content-Type: {content_type}\r\n"
    if body or method in ("POST", "PUT"):
        head += f"Content-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


HOSTILE = [  # (method, target, body, content type, status, detail)
    ("POST", "/infer/petclick?image=..%2F..%2Fetc%2Fpasswd", "{}", None, 400, "path separator"),
    ("POST", "/infer/petclick?image=%2Fetc%2Fpasswd", "{}", None, 400, "path separator"),
    ("POST", "/infer/petclick?image=..%5Cstudies%5CimagesTr", "{}", None, 400, "path separator"),
    ("POST", "/infer/petclick?image=C:%5Cwindows", "{}", None, 400, "drive separator"),
    ("POST", "/infer/petclick?image=fdg_0001_2020%00", "{}", None, 400, "control character"),
    ("POST", "/infer/petclick?image=..%252F..%252Fetc", "{}", None, 400, "'..'"),
    ("POST", "/infer/petclick%00?image=fdg_0001_2020", "{}", None, 400, "control character"),
    ("POST", "/infer/..%2Finfo?image=fdg_0001_2020", "{}", None, 400, "'..' segment"),
    ("POST", "/infer/deepedit_spleen?image=fdg_0001_2020", "{}", None, 404, "unknown model"),
    ("POST", "/infer/petclick?image=fdg_0001_2020", "{not json", None, 422, "params is not valid JSON"),
    ("POST", "/infer/petclick?image=fdg_0001_2020", "[" * 5000 + "]" * 5000, None, 422, "nests 5000 levels deep"),
    ("POST", "/infer/petclick?image=fdg_0001_2020", '{"tumor": ' + "[" * 100_000 + "]" * 100_000 + "}", None,
     413, "more than 131072 bytes"),
    ("POST", "/infer/petclick?image=fdg_0001_2020", json.dumps({"tumor": [[1, 2, 3]] * 300_000}), None, 413,
     "more than 131072 bytes"),
    ("POST", "/infer/petclick?image=fdg_0001_2020", json.dumps({"tumor": [[1, 2, 3]] * 3000}), None, 422,
     "exceed the budget of 10"),
    ("POST", "/infer/petclick?image=fdg_0001_2020", '{"save_label": true, "label_tag": "../../../x"}', None, 422,
     "may not set 'save_label', 'label_tag'"),
    ("POST", "/infer/petclick?image=fdg_0001_2020", '{"image": "/etc/passwd"}', None, 422, "may not set 'image'"),
    ("POST", "/infer/petclick?image=fdg_0001_2020", '{"client_id": "../x"}', None, 422, "params client_id"),
    ("POST", "/infer/petclick?image=fdg_0001_2020", '{"tumor": [[1, 2, 3]]}', "application/json", 415,
     "takes a form"),
    ("PATCH", "/infer/petclick?image=fdg_0001_2020", "", None, 405, "method not allowed"),
    ("DELETE", "/datastore/image?id=fdg_0001_2020", "", None, 403, "studies folder is read-only"),
    ("PUT", "/datastore/?image=x", "", None, 403, "studies folder is read-only"),
    ("PUT", "/model/petclick", "", None, 403, "models are loaded at start"),
    ("DELETE", "/model/petclick", "", None, 403, "models are loaded at start"),
    ("POST", "/reload", "", None, 403, "restart the server"),
    ("GET", "/datastore/dataset", "", None, 403, "archive"),
    ("PUT", "/session/", "", None, 403, "Next Sample"),
    ("GET", "/ohif/..%2F..%2F..%2Fetc%2Fpasswd", "", None, 400, "'..' segment"),
    ("POST", "/train/", "", None, 403, "off"),
    ("GET", "/etc/passwd", "", None, 404, "no such endpoint"),
    ("GET", "/datastore/image?image=..%2F..%2Fimages", "", None, 400, "path separator"),
    ("GET", "/datastore/label?label=fdg_0001_2020&tag=..%2F..%2Fx", "", None, 400, "label tag"),
    ("POST", "/activelearning/random", "[" * 3000 + "]" * 3000, "application/json", 422, "nests 3000 levels deep"),
    ("GET", "/info/?" + "&".join(f"k{i}=1" for i in range(40)), "", None, 400, "more than 32 fields"),
    ("GET", "/info/?x=" + "a" * 9000, "", None, 414, "more than 8192"),
]


@pytest.mark.parametrize("method,target,params,content_type,status,detail", HOSTILE)
def test_hostile_requests_are_refused_with_one_line(server, method, target, params, content_type, status, detail):
    if method == "POST" and target.startswith("/infer/") and content_type is None:
        body, content_type = _multipart(params)
    else:
        body = params.encode()
    code, answer = _raw(server, _http(method, target, body, content_type))
    assert code == status, answer[:300]
    text = json.loads(answer)["detail"]
    assert detail in text and "\n" not in text and len(text) < 400


def test_web_pages_of_other_origins_cannot_use_the_server(server):
    url = f"{server.url}/datastore/image?image={L.GOOD[0]}"
    rebound = requests.get(url, headers={"Host": f"evil.example:{server.port}"}, timeout=30)   # DNS rebinding
    assert rebound.status_code == 403 and "is not this machine" in rebound.json()["detail"]
    foreign = requests.get(url, headers={"Origin": "https://evil.example"}, timeout=30)
    assert foreign.status_code == 403 and "cross-origin request" in foreign.json()["detail"]
    assert "access-control-allow-origin" not in foreign.headers
    preflight = requests.options(f"{server.url}/infer/petclick", timeout=30,
                                 headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert preflight.headers.get("access-control-allow-origin") is None            # MONAI Label's "*" is gone
    own = requests.get(url, headers={"Origin": server.url}, timeout=30)             # a page of the server itself
    assert own.status_code == 200 and own.content[:2] == b"\x1f\x8b"                # the CT, gzip


def test_chunked_bodies_and_mutated_requests_never_get_a_5xx(server):
    before = _files_outside_scratch(server)
    chunked = requests.post(f"{server.url}/infer/petclick", params={"image": L.GOOD[0]},
                            data=iter([b"params=%7B%7D"]), timeout=60)       # a generator: chunked, no length
    assert chunked.status_code == 411 and "Content-Length" in chunked.json()["detail"]
    rng = random.Random(31)
    valid = json.dumps({"tumor": [[5, 5, 5]], "background": [[2, 2, 2]], "client_id": "fuzz"})
    codes = []
    for _ in range(40):
        params, target = list(valid), list(f"/infer/petclick?image={L.GOOD[0]}&output=json")
        for _ in range(rng.randint(1, 4)):                  # flip, insert or delete a byte of the params
            i = rng.randrange(len(params))
            choice = rng.random()
            if choice < 0.4:
                params[i] = chr(rng.randrange(32, 127))
            elif choice < 0.7:
                params.insert(i, rng.choice('[]{}",:0-9e\\'))
            else:
                del params[i]
        if rng.random() < 0.3:                               # or one of the query's characters
            j = rng.randrange(len("/infer/petclick?"), len(target))
            target[j] = rng.choice(["%2F", "%00", "%2e%2e", "&image=", "%", "..", "%ff", "\\"])
        body, kind = _multipart("".join(params), boundary=rng.choice(["petclickfuzz", "x" * 70]))
        if rng.random() < 0.2:
            body = body[: rng.randrange(len(body))]          # truncated multipart, its length stated right
        code, answer = _raw(server, _http("POST", "".join(target), body, kind))
        codes.append(code)
        assert 200 <= code < 500, answer[:300]
        if code >= 400 and answer.startswith(b"{"):
            assert "\n" not in json.loads(answer)["detail"]
    assert 200 in codes and any(400 <= c < 500 for c in codes)
    assert _files_outside_scratch(server) == before


@settings(max_examples=15, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(params=L.params_objects)
def test_any_params_against_the_server_give_a_mask_or_one_4xx_line(server, params):
    response = server.infer(L.GOOD[0], {**params, "client_id": "hypothesis"}, output="json")
    if response.status_code == 200:
        clicks = response.json()["clicks"]
        assert all(0 <= p[a] < s for kind in clicks.values() for p in kind for a, s in enumerate(L.SHAPE))
    else:
        assert 400 <= response.status_code < 500, response.text
        assert "\n" not in response.json()["detail"]


def test_submitted_labels_stay_in_the_scratch_folder(server):
    before = _files_outside_scratch(server)
    mask = gzip.compress(nib.Nifti1Image(np.zeros(L.SHAPE, np.uint8), np.eye(4)).to_bytes())

    def submit(tag: str, filename: str = "label.nii.gz", image: str = L.GOOD[0]) -> requests.Response:
        return requests.put(f"{server.url}/datastore/label", params={"image": image, "tag": tag},
                            files={"label": (filename, mask), "params": (None, '{"client_id": "r0"}')}, timeout=60)

    ok = submit("final")
    assert ok.status_code == 200, ok.text
    assert (server.scratch / "labels" / "final" / f"{L.GOOD[0]}.nii.gz").is_file()
    for tag, filename, image, status, detail in (
            ("../../../escaped", "label.nii.gz", L.GOOD[0], 400, "label tag"),
            ("final", "../../escaped.nii.gz", L.GOOD[0], 200, ""),          # only the suffix of a name is used
            ("final", "label.sh", L.GOOD[0], 422, "is not .nii.gz, .nii, .nrrd"),
            ("final", "label.nii.gz", "fdg_9999_2020", 404, "unknown image id")):
        answer = submit(tag, filename, image)
        assert answer.status_code == status, answer.text
        assert detail in answer.json().get("detail", "")
    assert not list(server.root.rglob("escaped*")) and _files_outside_scratch(server) == before


# ----------------------------------------------------------------------------- faults
def _reference_mask(server: Server, params: dict, reader: str) -> np.ndarray:
    info, mask, _ = _decode(server.infer(L.GOOD[0], {**params, "client_id": reader}))
    assert info["request"]["session_opened"]
    return np.asarray(mask.dataobj)


def test_a_client_gone_mid_request_leaves_a_whole_session(server):
    first = {"tumor": [[5, 5, 5], [10, 10, 10]], "background": [[25, 5, 5]], "client_id": "gone"}
    body, kind = _multipart(json.dumps(first))
    log = server.scratch / "logs" / "server.log"
    opened = log.read_text().count("(reader gone): session opened")
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        sock.sendall(_http("POST", f"/infer/petclick?image={L.GOOD[0]}", body, kind))
        deadline = time.monotonic() + 120
        while log.read_text().count("(reader gone): session opened") == opened:   # computing now
            assert time.monotonic() < deadline, "the request never started"
            time.sleep(0.02)
    server.wait_idle()                                      # it went on without its client
    again, mask, _ = _decode(server.infer(L.GOOD[0], first))
    assert not again["request"]["session_opened"] and not again["request"]["computed"]
    assert again["request"]["step"] == 1
    assert np.array_equal(np.asarray(mask.dataobj), _reference_mask(server, first, "gone-reference"))
    half = _http("POST", f"/infer/petclick?image={L.GOOD[0]}", body, kind)
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:   # gone mid-upload
        sock.sendall(half[: len(half) - len(body) // 2])
    server.wait_idle()
    after, _, _ = _decode(server.infer(L.GOOD[0], first))
    assert not after["request"]["computed"] and after["request"]["step"] == 1 and after["session"]["predictions"] == 3


def test_a_read_only_scratch_folder_is_a_503_and_the_server_goes_on(server):
    results = server.scratch / "results"
    moved = results.with_name("results-writable")
    results.rename(moved)
    if os.geteuid() == 0:                 # root writes through permissions: point it at a folder nobody may write
        results.symlink_to("/sys", target_is_directory=True)
    else:
        moved.rename(results)
        results.chmod(0o500)
    try:
        refused = server.infer(L.GOOD[0], {"tumor": [[5, 5, 5]], "client_id": "ro"})
        assert refused.status_code == 503, refused.text
        assert "the server cannot write" in refused.json()["detail"] and "read-only" in refused.json()["detail"]
        assert requests.get(f"{server.url}/info/", timeout=30).status_code == 200
    finally:
        if results.is_symlink():
            results.unlink()
            moved.rename(results)
        else:
            results.chmod(0o700)
    assert "ERROR petclick.workflows.label.server: cannot write" in (server.scratch / "logs" / "server.log").read_text()
    info, mask, _ = _decode(server.infer(L.GOOD[0], {"tumor": [[5, 5, 5]], "client_id": "ro"}))
    assert np.asarray(mask.dataobj)[5, 5, 5] == 1 and not info["request"]["session_opened"]


def test_no_request_left_a_traceback_or_a_500(server):
    response = server.infer(L.GOOD[0], {}, session_id="abc")
    assert response.status_code == 422 and "open the case from the server" in response.json()["detail"]
    assert requests.get(f"{server.url}/info/", timeout=30).status_code == 200
    log = server.log.read_text()
    assert "Traceback" not in log and " 500" not in log, log[-3000:]


# ----------------------------------------------------------------------------- killed, restarted with authentication
USERS = {"alice": ("alice-pw", [USER_ROLE, ANNOTATOR_ROLE]), "bob": ("bob-pw", [USER_ROLE]), "carol": ("carol-pw", [])}
KILL_CLICKS = {"tumor": [[5, 5, 5], [20, 20, 20]], "background": [[25, 5, 5], [5, 20, 30]]}


@pytest.fixture(scope="module")
def realm():
    issuer = TokenIssuer(USERS)
    yield issuer
    issuer.stop()


@pytest.fixture(scope="module")
def restarted(server, realm):
    """The server killed (SIGKILL) mid-session, alice's reference mask of two steps taken before, and
    the server started again over the same folders, now with authentication (the realm above)."""
    step1 = {k: v[:1] for k, v in KILL_CLICKS.items()}
    _decode(server.infer(L.GOOD[0], {**step1, "client_id": "alice"}))
    reference = _reference_mask(server, KILL_CLICKS, "kill-reference")
    os.killpg(server.proc.pid, signal.SIGKILL)                # no shutdown
    server.proc.wait(30)
    (server.scratch / "results" / "petclick-label-left.nii.gz").write_bytes(b"a mask the killed server left")
    again = server.again(["--auth-realm", realm.realm])
    again.reference = reference
    yield again
    again.stop()


def _auth(token: str | None) -> dict:
    return {"Authorization": f"Bearer {token}"} if token else {}


def _infer_as(server: Server, token: str | None, params: dict) -> requests.Response:
    return requests.post(f"{server.url}/infer/petclick", params={"image": L.GOOD[0], "output": "json"},
                         headers=_auth(token), files={"params": (None, json.dumps(params))}, timeout=60)


def test_a_killed_server_restarted_rebuilds_the_session_from_the_points(restarted, realm):
    assert not list((restarted.scratch / "results").iterdir())   # what the killed server left is gone
    response = requests.post(f"{restarted.url}/infer/petclick", params={"image": L.GOOD[0]},
                             headers=_auth(realm.token("alice")), files={"params": (None, json.dumps(KILL_CLICKS))},
                             timeout=60)
    info, mask, _ = _decode(response)
    assert info["request"]["session_opened"] and info["clicks"] == KILL_CLICKS and info["request"]["reader"] == "alice"
    assert np.array_equal(np.asarray(mask.dataobj), restarted.reference)


def test_with_authentication_requests_without_a_valid_token_are_refused(restarted, realm):
    forged = realm.token("alice", key=new_key())
    expired = realm.token("alice", expires_in=-60)
    confused = realm.hmac_token("alice")                          # HS256 with the public key as the secret
    for token in (None, "not-a-jwt", forged, expired, confused):
        for answer in (requests.get(f"{restarted.url}/info/", headers=_auth(token), timeout=60),
                       requests.get(f"{restarted.url}/datastore/?output=all", headers=_auth(token), timeout=60),
                       requests.get(f"{restarted.url}/reader/api/images", headers=_auth(token), timeout=60),
                       requests.get(f"{restarted.url}/reader/", headers=_auth(token), timeout=60),
                       _infer_as(restarted, token, {"tumor": [[5, 5, 5]]})):
            assert answer.status_code == 401, (token, answer.text)
            assert answer.json()["detail"] in ("Not authenticated", "Could not validate credentials")
    no_role = realm.token("carol")
    assert requests.get(f"{restarted.url}/info/", headers=_auth(no_role), timeout=60).status_code == 403
    assert "monailabel-user" in _infer_as(restarted, no_role, {}).json()["detail"]
    refused = requests.put(f"{restarted.url}/datastore/label", params={"image": L.GOOD[0]},
                           headers=_auth(realm.token("bob")), files={"label": ("label.nii.gz", b"x")}, timeout=60)
    assert refused.status_code == 403 and "monailabel-annotator" in refused.json()["detail"]
    assert requests.get(f"{restarted.url}/", timeout=60).status_code == 200      # the API page holds no data


def test_with_authentication_slicer_logs_in_and_each_user_has_their_own_session(restarted, realm):
    url = restarted.url
    assert requests.get(f"{url}/auth/", timeout=60).json()["enabled"] is True
    login = requests.post(f"{url}/auth/token", data={"username": "bob", "password": "bob-pw"}, timeout=60)
    assert login.status_code == 200, login.text
    bob = login.json()["access_token"]
    wrong = requests.post(f"{url}/auth/token", data={"username": "bob", "password": "nope"}, timeout=60)
    assert wrong.status_code == 401 and "refused the credentials" in wrong.json()["detail"]
    assert requests.get(f"{url}/auth/token/valid", headers=_auth(bob), timeout=60).json()["username"] == "bob"
    a = _infer_as(restarted, realm.token("alice"), {"tumor": [[5, 5, 5]], "background": [[20, 20, 20]],
                                                    "client_id": "bob"})
    b = _infer_as(restarted, bob, {"tumor": [[20, 20, 20]], "background": [[5, 5, 5]], "client_id": "alice"})
    assert a.status_code == b.status_code == 200, (a.text, b.text)
    assert a.json()["request"]["reader"] == "alice" and b.json()["request"]["reader"] == "bob"   # not the client id
    assert not a.json()["request"]["session_opened"] and b.json()["request"]["session_opened"]
    assert a.json()["clicks"]["tumor"] == [[5, 5, 5]] and b.json()["clicks"]["tumor"] == [[20, 20, 20]]
    masks = [requests.get(f"{url}/reader/api/mask/{L.GOOD[0]}", params={"client_id": "alice"}, headers=_auth(token),
                          timeout=60) for token in (bob, realm.token("alice"))]          # the reader page's mask route
    assert [m.status_code for m in masks] == [200, 200]
    shape = tuple(int(v) for v in masks[0].headers["X-Shape"].split(","))
    of_bob, of_alice = (np.frombuffer(m.content, np.uint8).reshape(shape, order="F") for m in masks)
    assert of_bob[20, 20, 20] == 1 and of_bob[5, 5, 5] == 0 and of_alice[5, 5, 5] == 1    # the user's, not client_id's
    info = requests.get(f"{url}/info/", headers=_auth(bob), timeout=60).json()["petclick"]
    assert info["authentication"] is True and info["readers"] == 2


def test_the_server_stops_on_interrupt(restarted):
    assert restarted.stop() is not None and restarted.proc.poll() is not None
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{restarted.url}/info/", timeout=5)
