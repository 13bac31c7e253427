"""The label server's limits without a server: ids, names, JSON size and depth, params (a
property-based test), the endpoint policy, the request-target checks, the worker queue, and the
session cache's readers, parallelism, memory bound and failure handling (tests/test_label.py has
the rest of the cache; tests/test_label_hostile.py sends all of it to the real server)."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import labelstudies as L
from labelstudies import params_objects
from petclick.inference.footprint import session_nbytes
from petclick.inference.predictors import SuvThresholdPredictor
from petclick.core.errors import InputError
from petclick.workflows.label.access import BrowserPolicy, origin_of
from petclick.workflows.label.admission import Admission, Busy
from petclick.workflows.label.guard import check_target
from petclick.workflows.label.limits import (MAX_JSON_DEPTH, READER_KEY, check_id, check_name, decode_json,
                                             decode_params, json_depth)
from petclick.workflows.label.requests import LabelRequestError, parse_clicks, storage_failure
from petclick.workflows.label.routes import judge
from petclick.workflows.label.sessions import SessionCache

SHAPE = (10, 10, 10)
KB64 = 64 * 1024


def _refused(call, status: int, match: str) -> str:
    with pytest.raises(LabelRequestError, match=match) as err:
        call()
    assert err.value.status == status and "\n" not in err.value.detail
    return err.value.detail


@pytest.mark.parametrize("value,match", [
    ("../etc/passwd", "path separator"), ("/etc/passwd", "path separator"), ("a\\b", "path separator"),
    ("C:x", "drive separator"), ("fdg\x00", "control character"), ("fdg\n1", "control character"),
    ("..", "'..'"), ("a..b", "'..'"), ("x" * 256, "longer than 255"), ("", "empty")])
def test_ids_that_could_name_files_are_refused(value, match):
    _refused(lambda: check_id(value), 400, match)


def test_plain_ids_and_names_pass():
    for ok in ("fdg_1e7dddc7cf_14-11-2014", "1.2.840.113619.2.55.3", "psma_0002_2021"):
        assert check_id(ok) == ok
    assert check_name("user-xyz", "client id") == "user-xyz" and check_name("a.b@c.org", "x") == "a.b@c.org"
    for bad in ("final/../x", "a b", "", "x" * 129, 7):
        _refused(lambda: check_name(bad, "label tag"), 400, "label tag")


def test_json_size_depth_and_syntax():
    assert json_depth('{"a": [1, {"b": "[[[{{"}], "c": "\\"]"}') == 3        # brackets in strings do not count
    deep = "[" * 100_000 + "]" * 100_000                                       # the 500 of the issue
    assert "200000 bytes" in _refused(lambda: decode_json(deep, "params", KB64), 413, "more than the limit")
    nested = '{"tumor": ' + "[" * 5000 + "]" * 5000 + "}"
    _refused(lambda: decode_json(nested, "params", KB64), 422, f"nests 5001 levels deep, more than the limit of "
                                                                f"{MAX_JSON_DEPTH}")
    _refused(lambda: decode_json("{not json", "params", KB64), 422, "params is not valid JSON")
    _refused(lambda: decode_json(b"\xff\xfe", "body", KB64), 422, "not UTF-8")
    _refused(lambda: decode_json("9" * 5000, "params", KB64), 422, "not valid JSON")        # int digits limit
    million = json.dumps({"tumor": [[1, 2, 3]] * 1_000_000})
    _refused(lambda: decode_params(million, KB64), 413, "params is")
    _refused(lambda: decode_params("[1, 2]", KB64), 422, "must be a JSON object")
    for key in ("image", "save_label", "label_tag", "model", READER_KEY):
        _refused(lambda: decode_params(json.dumps({key: "x"}), KB64), 422, f"may not set '{key}'")
    assert decode_params("", KB64) == {} and decode_params('{"tumor": []}', KB64) == {"tumor": []}


# ----------------------------------------------------------------------------- property-based: params
@settings(max_examples=150, deadline=None, database=None)
@given(params_objects)
def test_any_params_give_clicks_inside_the_image_or_one_4xx_line(params):
    text = json.dumps(params)
    try:
        decoded = decode_params(text, KB64)
        clicks = parse_clicks(decoded, SHAPE)
    except LabelRequestError as exc:
        assert 400 <= exc.status < 500 and exc.detail and "\n" not in exc.detail
        return
    for kind in (clicks.tumor, clicks.background):
        assert len(kind) <= 10
        for p in kind:
            assert len(p) == 3 and all(isinstance(v, int) and 0 <= v < 10 for v in p)
    assert not set(clicks.tumor) & set(clicks.background)


@settings(max_examples=300, deadline=None, database=None)
@given(st.text(max_size=200))
def test_any_params_text_is_parsed_or_refused_with_a_4xx(text):
    try:
        decode_params(text, 64)
    except LabelRequestError as exc:
        assert exc.status in (413, 422) and "\n" not in exc.detail


# ----------------------------------------------------------------------------- endpoints and request targets
@pytest.mark.parametrize("method,path,status,match", [
    ("POST", "/infer/petclick", 200, ""), ("GET", "/info/", 200, ""), ("PUT", "/datastore/label", 200, ""),
    ("OPTIONS", "/infer/petclick", 200, ""), ("POST", "/activelearning/random", 200, ""),
    ("DELETE", "/datastore/image", 403, "studies folder is read-only"), ("PUT", "/datastore/", 403, "read-only"),
    ("PUT", "/model/petclick", 403, "models are loaded at start"), ("POST", "/reload", 403, "restart the server"),
    ("POST", "/train/", 403, "off"), ("POST", "/infer/wsi/petclick", 403, "whole-slide"),
    ("PUT", "/session/", 403, "Next Sample"), ("GET", "/datastore/dataset", 403, "archive"),
    ("GET", "/ohif/index.html", 403, "OHIF"), ("DELETE", "/info/", 405, "allowed: GET, HEAD"),
    ("GET", "/etc/passwd", 404, "no such endpoint")])
def test_the_endpoint_policy(method, path, status, match):
    verdict = judge(method, path)
    assert verdict.status == status and match in verdict.reason
    assert (verdict.route is not None) == (status == 200)


@pytest.mark.parametrize("method,path,nifti,dicomweb", [
    ("GET", "/reader/", 200, 200), ("GET", "/reader/api/images", 200, 200), ("GET", "/reader/api/mask/x1", 200, 200),
    ("POST", "/reader/api/images", 405, 405), ("GET", "/reader/api/volume/x1/suv", 404, 404),
    ("GET", "/ohif/", 403, 200), ("GET", "/ohif/app-config.js", 403, 200),
    ("GET", "/proxy/dicom/qido/studies", 403, 200), ("GET", "/proxy/dicom/wado/studies/1.2/series/3.4/metadata", 403, 200),
    ("POST", "/proxy/dicom/wado/studies", 403, 403), ("GET", "/proxy/dicom/stow/studies", 403, 403),
    ("POST", "/proxy/dicom/stow/studies", 403, 403), ("GET", "/proxy/dicom/studies", 403, 403),
    ("DELETE", "/proxy/dicom/qido/studies", 403, 403)])
def test_the_reader_page_always_and_ohif_with_its_read_only_proxy_for_dicomweb_studies(method, path, nifti, dicomweb):
    for studies_are_dicomweb, status in ((False, nifti), (True, dicomweb)):
        verdict = judge(method, path, dicomweb=studies_are_dicomweb)
        assert verdict.status == status, (path, studies_are_dicomweb, verdict)
    assert "DICOMweb studies only" in judge("GET", "/ohif/").reason
    assert "reads only" in judge("POST", "/proxy/dicom/wado/studies", dicomweb=True).reason
    assert judge("GET", "/reader/api/volume/x1/ct").route.admitted          # a whole volume waits for a worker


def _scope(path: str, query: bytes = b"", raw: bytes | None = None) -> dict:
    return {"type": "http", "method": "POST", "path": path, "raw_path": raw or path.encode(), "query_string": query}


@pytest.mark.parametrize("scope,status,match", [
    (_scope("/infer/petclick", b"image=..%2F..%2Fetc%2Fpasswd"), 400, "path separator"),
    (_scope("/infer/petclick", b"image=%2Fetc%2Fpasswd"), 400, "path separator"),
    (_scope("/infer/petclick", b"image=fdg%00"), 400, "control character"),
    (_scope("/infer/petclick", b"image=..%252F.."), 400, "'..'"),
    (_scope("/infer/petclick", b"image=a&image=b"), 400, "more than once"),
    (_scope("/datastore/label", b"image=a&tag=..%2Fx"), 400, "label tag"),
    (_scope("/infer/petclick", b"x=" + b"a" * 9000), 414, "more than 8192"),
    (_scope("/infer/petclick", b"&".join(b"k%d=1" % i for i in range(40))), 400, "more than 32 fields"),
    (_scope("/infer/petclick", b"image=%ff"), 400, "not UTF-8"),
    (_scope("/infer/a\x00b"), 400, "control character"),
    (_scope("/infer/../etc"), 400, "'..' segment")])
def test_request_targets_that_reach_for_files_are_refused(scope, status, match):
    _refused(lambda: check_target(scope), status, match)


def test_ordinary_request_targets_pass():
    check_target(_scope("/infer/petclick", b"image=fdg_1e7dddc7cf_14-11-2014&output=json"))
    check_target(_scope("/datastore/label", b"image=fdg_0001_2020&tag=final"))


def test_browsers_only_from_allowed_origins_and_loopback_names():
    policy = BrowserPolicy(("https://ohif.example.org",), loopback_only=True)
    for host, origin in (("127.0.0.1:8000", None), ("localhost:8000", "http://localhost:8000"),
                         ("[::1]:8000", None), ("ohif.example.org", "https://ohif.example.org"),
                         ("127.0.0.1:8000", "https://ohif.example.org"), (None, None)):
        policy.check(host, origin)                                     # Slicer sends no Origin at all
    _refused(lambda: policy.check("evil.example:8000", None), 403, "is not this machine")      # DNS rebinding
    _refused(lambda: policy.check("127.0.0.1:8000", "https://evil.example"), 403, "cross-origin request")
    _refused(lambda: policy.check("127.0.0.1:8000", "null"), 403, "cross-origin request")
    BrowserPolicy(loopback_only=False).check("petclick.example.org", None)     # bound beyond loopback
    for bad in ("ohif.example.org", "ftp://x.org", "https://x.org/path", "https://user@x.org"):
        with pytest.raises(InputError, match="is not an origin"):
            origin_of(bad)
    assert origin_of("https://OHIF.example.org:8443/") == "https://ohif.example.org:8443"


def test_a_write_that_fails_for_want_of_space_or_permission_is_a_5xx():
    import errno

    full = storage_failure(OSError(errno.ENOSPC, "No space left on device", "/scratch/results/m.nii.gz"))
    assert full.status == 507 and "cannot write /scratch/results/m.nii.gz: No space left on device" in full.detail
    assert storage_failure(OSError(errno.EROFS, "Read-only file system", "/scratch/x")).status == 503
    assert storage_failure(PermissionError(errno.EACCES, "Permission denied")).status == 503
    assert storage_failure(ConnectionResetError(errno.ECONNRESET, "reset")) is None      # not storage: a 500


# ----------------------------------------------------------------------------- the worker queue
def test_workers_then_queue_then_429_and_the_counters():
    async def scenario():
        admission = Admission(workers=1, queue=1)
        release = asyncio.Event()
        order = []

        async def request(name):
            async with admission.slot():
                order.append(name)
                await release.wait()

        first = asyncio.create_task(request("first"))
        await asyncio.sleep(0)
        second = asyncio.create_task(request("second"))           # waits in the queue
        await asyncio.sleep(0)
        assert admission.status() | {} == {"workers": 1, "queue_limit": 1, "running": 1, "queued": 1,
                                           "peak_queued": 1, "served": 0, "refused_busy": 0}
        with pytest.raises(Busy, match="1 request\\(s\\) computing, 1 waiting") as err:
            async with admission.slot():
                pass
        assert err.value.status == 429 and err.value.headers["Retry-After"]
        release.set()
        await asyncio.gather(first, second)
        assert order == ["first", "second"]
        cancelled = [asyncio.create_task(request(n)) for n in ("a", "b")]
        release.clear()
        await asyncio.sleep(0)
        cancelled[1].cancel()                                       # a queued request given up
        await asyncio.sleep(0)
        assert admission.queued == 0 and admission.running == 1
        release.set()
        await asyncio.gather(cancelled[0], return_exceptions=True)
        return admission.status()

    final = asyncio.run(scenario())
    assert final["served"] == 3 and final["refused_busy"] == 1 and final["running"] == final["queued"] == 0


# ----------------------------------------------------------------------------- sessions: readers, parallel, memory
@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    return L.write_studies(tmp_path_factory.mktemp("label_limits"))


def _ct(studies: Path, case: str) -> Path:
    return studies / "imagesTr" / f"{case}_0000.nii.gz"


def _mask(path: str) -> np.ndarray:
    return np.asarray(nib.load(path).dataobj)


def test_two_readers_on_one_image_never_see_each_others_points(studies, tmp_path):
    cache = SessionCache(SuvThresholdPredictor(), out_dir=tmp_path)
    case, lesion = L.GOOD[0], list(L.lesion_voxel(studies, L.GOOD[0]))
    alice = {"tumor": [lesion], "background": [[2, 2, 2]]}
    bob = {"tumor": [[2, 2, 2]], "background": [lesion]}                   # the opposite clicks, same voxels
    for step in range(2):
        a_path, a = cache.infer(case, _ct(studies, case), alice, reader="alice")
        b_path, b = cache.infer(case, _ct(studies, case), bob, reader="bob")
        assert a["clicks"] == {"tumor": [lesion], "background": [[2, 2, 2]]} and a["request"]["reader"] == "alice"
        assert b["clicks"] == {"tumor": [[2, 2, 2]], "background": [lesion]} and b["request"]["reader"] == "bob"
        ma, mb = _mask(a_path), _mask(b_path)
        assert ma[tuple(lesion)] == 1 and ma[2, 2, 2] == 0 and mb[tuple(lesion)] == 0 and mb[2, 2, 2] == 1
        assert a["request"]["session_opened"] == b["request"]["session_opened"] == (step == 0)
    assert sorted(cache.sessions) == [("alice", case), ("bob", case)]
    assert np.array_equal(cache.last_mask(case, "alice"), ma) and np.array_equal(cache.last_mask(case, "bob"), mb)
    assert cache.last_mask(case, "carol") is None and cache.last_mask(case) is None   # the reader page's mask route


class BarrierPredictor(SuvThresholdPredictor):
    """Predicts only once `parties` predictions run at the same time (a barrier): proves parallelism."""

    def __init__(self, parties: int):
        super().__init__()
        self.barrier = threading.Barrier(parties, timeout=30)

    def predict(self, case, clicks):
        self.barrier.wait()
        return super().predict(case, clicks)


def test_requests_of_different_sessions_run_in_parallel(studies, tmp_path):
    cache = SessionCache(BarrierPredictor(2), out_dir=tmp_path)
    answers, errors = {}, []

    def request(reader, case):
        try:
            answers[reader] = cache.infer(case, _ct(studies, case), {"tumor": [[5, 5, 5]]}, reader=reader)[1]
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=request, args=args) for args in (("r1", L.GOOD[0]), ("r2", L.GOOD[1]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and sorted(answers) == ["r1", "r2"]          # serialised requests would break the barrier


class FailingPredictor(SuvThresholdPredictor):
    def __init__(self):
        super().__init__()
        self.fail = False

    def predict(self, case, clicks):
        if self.fail:
            raise MemoryError("out of memory half-way")
        return super().predict(case, clicks)


def test_a_request_that_fails_while_predicting_drops_its_session(studies, tmp_path, caplog):
    predictor = FailingPredictor()
    cache = SessionCache(predictor, out_dir=tmp_path)
    case, ct = L.GOOD[0], _ct(studies, L.GOOD[0])
    first = {"tumor": [[5, 5, 5]]}
    cache.infer(case, ct, first, reader="r")
    predictor.fail = True
    with caplog.at_level(logging.WARNING), pytest.raises(MemoryError):
        cache.infer(case, ct, {"tumor": [[5, 5, 5]], "background": [[1, 1, 1]]}, reader="r")
    assert "session dropped (MemoryError while predicting); the next request rebuilds it" in caplog.text
    assert cache.sessions == [] and cache.status()["sessions_dropped"]["failed"] == 1
    predictor.fail = False
    path, info = cache.infer(case, ct, {"tumor": [[5, 5, 5]], "background": [[1, 1, 1]]}, reader="r")
    assert info["request"]["session_opened"] and info["clicks"]["background"] == [[1, 1, 1]]
    assert _mask(path)[1, 1, 1] == 0 and not list(tmp_path.glob("*.tmp*"))


def test_memory_bound_drops_the_least_recently_used_idle_session(studies, tmp_path, caplog):
    one = SessionCache(SuvThresholdPredictor(), out_dir=tmp_path)
    one.infer(L.GOOD[0], _ct(studies, L.GOOD[0]), {}, reader="a")
    size = one.status()["memory_bytes"]
    voxels = int(np.prod(L.SHAPE))
    session = one.entries[("a", L.GOOD[0])].session
    parts = session_nbytes(session)
    assert parts["volumes"] == 2 * 4 * voxels and parts["prediction"] == 5 * voxels and parts["total"] == size
    cache = SessionCache(SuvThresholdPredictor(), out_dir=tmp_path, memory_bytes=int(2.5 * size))
    with caplog.at_level(logging.INFO):
        for reader in ("a", "b", "c", "a", "d"):
            cache.infer(L.GOOD[0], _ct(studies, L.GOOD[0]), {}, reader=reader)
            status = cache.status()
            assert status["memory_bytes"] <= status["memory_limit_bytes"]
    assert cache.sessions == [("a", L.GOOD[0]), ("d", L.GOOD[0])]      # the bound admits two: a, b, c dropped in turn
    assert cache.status()["sessions_dropped"]["memory"] == 3
    dropped = [r.getMessage() for r in caplog.records if "session dropped, least recently used" in r.getMessage()]
    assert [m.split("(reader ")[1][0] for m in dropped] == ["a", "b", "c"] and "memory bound" in dropped[0]
    small = SessionCache(SuvThresholdPredictor(), out_dir=tmp_path, memory_bytes=size // 2)
    with caplog.at_level(logging.WARNING):
        small.infer(L.GOOD[0], _ct(studies, L.GOOD[0]), {}, reader="big")
    assert "the session alone takes" in caplog.text and small.sessions == [("big", L.GOOD[0])]


def test_a_sessions_bytes_by_part_and_checkpoints_share_their_window_grid(studies, tmp_path):
    """footprint.session_nbytes against a count by hand, on the two tiny checkpoints (one window
    grid: both use the same windows, so the count map of the padded image is held once)."""
    from petclick.inference.predictors import get_predictor
    from petclick.inference.session import InteractiveSession
    from petclick.io.images import CaseVolumes, load_volume

    models = L.write_tiny_models(tmp_path / "models")
    ct = load_volume(studies / "imagesTr" / f"{L.GOOD[0]}_0000.nii.gz")
    pet = load_volume(studies / "imagesTr" / f"{L.GOOD[0]}_0001.nii.gz")
    ct.array = ct.array.astype(np.float32)
    session = InteractiveSession(get_predictor([str(models)]), CaseVolumes(ct, pet), mode="exact")
    session.add_clicks(tumor=[(5, 5, 5)])
    session.predict()
    (group,) = session.engine.groups
    grids = {id(m.tiled.grid): m.tiled.grid for m in group.members}
    assert len(group.members) == 2 and len(grids) == 1
    (grid,) = grids.values()
    space = int(np.prod(group.shape))
    parts = session_nbytes(session)
    assert parts["volumes"] == 2 * 4 * int(np.prod(L.SHAPE)) and parts["prediction"] == 5 * int(np.prod(L.SHAPE))
    assert parts["network"] == (2 + 4 + 1) * 4 * space + 4 * int(np.prod(grid.padded)) + 4 * int(np.prod(grid.roi))
    assert parts["tile_cache"] == session.engine.cache.bytes > 0
    assert parts["total"] == sum(parts[k] for k in ("volumes", "network", "tile_cache", "journal", "prediction"))
