"""End to end in a real reading-room chain: Orthanc (Debian's orthanc + orthanc-dicomweb, its own
config on a free loopback port) holds two small phantom PET/CT studies and one whose PET lacks the
dose tags; `petclick label --studies <Orthanc>/dicom-web` serves them with the suv-threshold model
(no trained model is at hand in the test suite); headless Chromium (Debian's chromium +
chromium-driver through Selenium, nothing downloaded) opens petclick's reader page, clicks a lesion,
waits for the overlay, shift-clicks the background, undoes. Asserted: the SEG the server stored back
into Orthanc honours the clicks and equals the server's mask, the screenshot shows the overlay colour
at the clicked place, bad input gets one-line errors / 4xx messages. Everything started is stopped.

Skipped, with the reason, only where a piece cannot run here: monailabel, Orthanc with its DICOMweb
plugin (server tests), chromium, chromedriver or selenium (browser tests). .ci/run installs them.
"""

from __future__ import annotations

import importlib.util
import io
import json
import shutil
import time

import numpy as np
import pytest

if importlib.util.find_spec("monailabel") is None:
    pytest.skip("monailabel is not installed (pip install -r requirements-label.txt, then monailabel --no-deps)",
                allow_module_level=True)

import requests  # noqa: E402

import dicomstudies as D  # noqa: E402
from orthancserver import OrthancServer  # noqa: E402
from petclick.io.dicom_seg import read_seg  # noqa: E402
from petclick.io.dicomweb import DicomWeb  # noqa: E402
from petclick.io.images import load_volume  # noqa: E402
from petclick.workflows.label.process import LabelServerProcess, free_port  # noqa: E402

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
MASK_GREEN = (0, 255, 0)           # reader.html MASK_RGB (alpha 0.7 over the fusion)
LESION_CASE = D.CASES[1][0]        # psma phantom: lesions
NO_DOSE_CASE = "fdg_0c0c0c0c0c_01-01-2020"


def _browser_skip_reason() -> str | None:
    if importlib.util.find_spec("selenium") is None:
        return "selenium is not installed (pip install -e '.[dev]')"
    if CHROMIUM is None or CHROMEDRIVER is None:
        return "Debian's chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)"
    return None


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """Orthanc with the studies, then `petclick label` over its DICOMweb root; both stopped after the module."""
    reason = OrthancServer.skip_reason()
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("browser_chain")
    cases = (*D.CASES, (NO_DOSE_CASE, "fdg", 5))
    data, index = D.write_dicom_cohort(root / "data", cases)

    def no_dose(ds):
        del ds.RadiopharmaceuticalInformationSequence[0].RadionuclideTotalDose
    D.rewrite_series(data / "dicom" / NO_DOSE_CASE / "PT", no_dose)
    orthanc = OrthancServer(root / "orthanc")
    try:
        assert orthanc.upload(data / "dicom") == len(cases) * 3 * D.SHAPE[2]      # CT 2x finer in z, PET
        server = LabelServerProcess(orthanc.dicomweb, ["suv-threshold"], root / "label.log",
                                    extra=["--scratch", str(root / "scratch")],
                                    env={"HOME": str(root / "home"), "XDG_CACHE_HOME": str(root / "cache")},
                                    start_timeout_s=300, stop_timeout_s=60)
    except BaseException:
        orthanc.stop()
        raise
    try:
        yield {"root": root, "data": data, "index": index, "orthanc": orthanc, "server": server}
    finally:
        assert server.stop() in (0, -2, 130)
        orthanc.stop()


def _lesion_voxel(data, case):
    label = load_volume(data / "labelsTr" / f"{case}.nii.gz").array > 0
    idx = np.argwhere(label)
    centre = idx.mean(axis=0)
    return [int(v) for v in idx[np.argmin(((idx - centre) ** 2).sum(axis=1))]]


def test_the_datastore_lists_the_pet_series_and_refuses_the_study_without_dose(chain):
    server, index = chain["server"], chain["index"]
    objects = requests.get(f"{server.url}/datastore/", params={"output": "all"}, timeout=30).json()["objects"]
    expected = {index["cases"][c]["pet_series"] for c, _, _ in D.CASES}
    assert set(objects) == expected                              # the refused study is not listed
    bad = index["cases"][NO_DOSE_CASE]["pet_series"]
    r = requests.post(f"{server.url}/infer/petclick", params={"image": bad}, files={"params": (None, "{}")}, timeout=60)
    assert r.status_code == 409 and "RadionuclideTotalDose (0018,1074)" in r.json()["detail"]
    assert "Traceback" not in r.text
    ohif = requests.get(f"{server.url}/ohif/", timeout=30)
    assert ohif.status_code == 200 and "<html" in ohif.text.lower()   # MONAI Label's OHIF is served (docs/browser.md)
    listed = requests.get(f"{server.url}/proxy/dicom/qido/studies", timeout=30)
    assert listed.status_code == 200 and len(listed.json()) == 3          # ... and its DICOMweb proxy reaches Orthanc
    stow = requests.post(f"{server.url}/proxy/dicom/wado/studies", data=b"x", timeout=30)
    assert stow.status_code == 403 and "reads only" in stow.json()["detail"]   # ... for reading only (routes.py)


def test_label_with_the_dicomweb_server_down_is_one_line(tmp_path, capsys):
    from petclick.cli import main as cli_main

    code = cli_main(["label", "--studies", f"http://127.0.0.1:{free_port()}/dicom-web", "--models", "suv-threshold",
                     "--scratch", str(tmp_path / "s")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "cannot reach the DICOMweb server" in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


@pytest.fixture(scope="module")
def browser(chain):
    reason = _browser_skip_reason()
    if reason:
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,900",
                "--force-device-scale-factor=1", "--disable-gpu", "--no-first-run"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER, log_output=str(chain["root"] / "chromedriver.log")),
                              options=options)
    driver.set_script_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver, condition: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not driver.execute_script(f"return !!({condition});"):
        if time.monotonic() > deadline:
            state = driver.execute_script("const s = window.petclick || {}; return {error: s.error, busy: s.busy, "
                                          "results: s.results, status: document.getElementById('status').textContent};")
            raise AssertionError(f"timed out waiting for {condition}: {state}")
        time.sleep(0.1)


def _click(driver, view: str, ijk, shift: bool = False):
    """Bring the view's slice to the voxel, then click its centre on screen (as a reader does)."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver.execute_script("window.petclick.cursor = arguments[0]; window.petclick.renderAll();", list(ijk))
    canvas = driver.find_element(By.ID, view)
    at = driver.execute_script("return window.petclick.screenOf(arguments[0], arguments[1]);", view, list(ijk))
    size = canvas.size
    actions = ActionChains(driver).move_to_element_with_offset(canvas, at["x"] - size["width"] / 2,
                                                               at["y"] - size["height"] / 2)
    if shift:
        actions = actions.key_down(Keys.SHIFT).click().key_up(Keys.SHIFT)
    else:
        actions = actions.click()
    actions.perform()
    rect = driver.execute_script("const r = arguments[0].getBoundingClientRect(); return [r.left, r.top];", canvas)
    return int(rect[0] + at["x"]), int(rect[1] + at["y"])


def _pixel(png: bytes, xy) -> tuple[int, int, int]:
    from PIL import Image

    return Image.open(io.BytesIO(png)).convert("RGB").getpixel(xy)


def _greenish(rgb) -> bool:
    r, g, b = rgb
    return g >= 170 and g - r >= 60 and g - b >= 60


def test_reader_click_shows_the_overlay_and_stores_a_seg_that_honours_the_click(chain, browser):
    server, index, data = chain["server"], chain["index"], chain["data"]
    entry = index["cases"][LESION_CASE]
    image_id = entry["pet_series"]
    t0 = time.perf_counter()
    browser.get(f"{server.url}/reader/?image={image_id}")
    _wait(browser, "window.petclick && window.petclick.loaded")
    lesion = _lesion_voxel(data, LESION_CASE)
    xy = _click(browser, "axial", lesion)
    _wait(browser, "window.petclick.results === 1 && !window.petclick.busy")
    state = browser.execute_script("return {error: window.petclick.error, last: window.petclick.last, "
                                   "clicks: window.petclick.clicks, seconds: window.petclick.lastSeconds};")
    assert state["error"] is None and state["clicks"] == [{"kind": "tumor", "ijk": lesion}]   # the click hit the voxel
    assert state["last"]["clicks"]["tumor"] == [lesion] and state["last"]["lesion_voxels"] > 0
    assert "s (server" in browser.find_element("id", "status").text                           # time per click shown
    png = browser.get_screenshot_as_png()
    assert _greenish(_pixel(png, xy)), _pixel(png, xy)                                      # overlay at the click
    canvas = browser.find_element("id", "axial").rect
    assert not _greenish(_pixel(png, (int(canvas["x"]) + 3, int(canvas["y"]) + 3)))          # ... not everywhere

    # the SEG the server stored into Orthanc: read back on the PET series, it is the server's mask
    seg_info = state["last"]["seg"]
    web = DicomWeb(chain["orthanc"].dicomweb)
    seg = web.client.retrieve_instance(seg_info["study"], seg_info["series"], seg_info["instance"])
    pet_headers = web.headers(entry["study"], entry["pet_series"])
    mask = read_seg(seg, pet_headers)
    client = browser.execute_script("return window.petclick.clientId;")
    assert client.startswith("reader-") and state["last"]["request"]["reader"] == client   # the tab's own session

    def served_mask():
        r = requests.get(f"{server.url}/reader/api/mask/{image_id}", params={"client_id": client}, timeout=30)
        assert r.status_code == 200, r.text
        return np.frombuffer(r.content, np.uint8).reshape(D.SHAPE, order="F")

    assert mask[tuple(lesion)] == 1 and np.array_equal(mask, served_mask())
    other = requests.post(f"{server.url}/infer/petclick", params={"image": image_id, "output": "json"}, timeout=60,
                          files={"params": (None, json.dumps({"background": [lesion], "client_id": "reader-other"}))})
    assert other.status_code == 200 and other.json()["request"]["reader"] == "reader-other"
    assert np.array_equal(mask, served_mask())            # another browser's points never reach this tab's session
    shot = chain["root"] / "reader.png"
    shot.write_bytes(png)

    # shift-click = background point: outside the mask; undo: back to the first result
    background = [2, 2, lesion[2]]
    _click(browser, "axial", background, shift=True)
    _wait(browser, "window.petclick.results === 2 && !window.petclick.busy")
    last = browser.execute_script("return window.petclick.last;")
    assert last["clicks"]["background"] == [background]
    browser.find_element("id", "undo").click()
    _wait(browser, "window.petclick.results === 3 && !window.petclick.busy")
    last = browser.execute_script("return window.petclick.last;")
    assert last["clicks"] == {"tumor": [lesion], "background": []} and last["lesion_voxels"] == int(mask.sum())
    print(f"browser part: {time.perf_counter() - t0:.1f} s; screenshot {shot}")
    assert json.loads(json.dumps(last["seg"]))["instance_number"] == 3     # the tab's own SEG series (reader-other has its own)
    assert last["seg"]["series"] == seg_info["series"] != other.json()["seg"]["series"]
