"""Time per request of the `petclick label` server (MONAI Label), as 3D Slicer's module sends them.

Starts `petclick label` over a studies folder (default: the demo's phantoms) with a model set
(default: the demo's 20-checkpoint work_dir), once per incremental mode, then for each of the
first --cases cases: the automatic task (step 0: opens the case's session, a full pass), then
--clicks requests of the interactive task, each adding one click (the case's simulated clicks,
tumour and background in turn) and re-sending every point so far, as Slicer does. Client time
is POST until the whole multipart answer (JSON + NIfTI mask) is in; the server's own figures come
from the answer's JSON. Prints one table row per mode and request kind; --json writes every request.

    python benchmarks/bench_label.py --studies demo/phantoms --models demo/work_dir
    python benchmarks/bench_label.py --models suv-threshold --modes exact --cases 2
Needs the label install (requirements-label.txt, then monailabel --no-deps).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests
from requests_toolbelt.multipart.decoder import MultipartDecoder

from petclick.io.clickfile import read_click_file
from petclick.workflows.label.process import LabelServerProcess


def alternate(tumor: list, background: list, n: int) -> list[tuple[str, list]]:
    """The first n clicks, tumour and background in turn (the rest of one kind when the other runs out)."""
    out, i = [], 0
    while len(out) < n and (i < len(tumor) or i < len(background)):
        for kind, points in (("tumor", tumor), ("background", background)):
            if i < len(points) and len(out) < n:
                out.append((kind, list(points[i])))
        i += 1
    return out


def post(url: str, model: str, image: str, params: dict) -> tuple[float, dict]:
    """Client seconds and the answer's JSON of one request (Slicer's default multipart answer)."""
    t0 = time.perf_counter()
    r = requests.post(f"{url}/infer/{model}", params={"image": image}, files={"params": (None, json.dumps(params))},
                      timeout=600)
    if r.status_code != 200:
        raise RuntimeError(f"{model} {image}: HTTP {r.status_code}: {r.text}")
    parts = {p.headers[b"Content-Disposition"].decode().split('name="')[1].split('"')[0]: p.content
             for p in MultipartDecoder.from_response(r).parts}
    seconds = time.perf_counter() - t0
    if "image" not in parts:
        raise RuntimeError(f"{model} {image}: no mask in the answer")
    return seconds, json.loads(parts["params"])


def run_mode(args, mode: str, log_dir: Path) -> tuple[float, list[dict]]:
    extra = ["--scratch", str(log_dir / f"scratch-{mode}"), "--incremental", mode, "--device", args.device]
    with LabelServerProcess(args.studies, args.models, log_dir / f"server-{mode}.log", extra=extra) as server:
        try:
            return server.start_seconds, requests_of(args, mode, server)
        except Exception:
            print(f"server log ({server.log}):\n{server.tail()}", file=sys.stderr)
            raise


def requests_of(args, mode: str, server: LabelServerProcess) -> list[dict]:
    """The auto request and the interactive ones of each timed case (module docstring)."""
    rows = []
    ids = sorted(requests.get(f"{server.url}/datastore/", params={"output": "all"}, timeout=60).json()["objects"])
    for image in ids[: args.cases]:
        clicks = read_click_file(Path(args.studies) / "clicks" / f"{image}_clicks.json")
        seconds, info = post(server.url, "petclick_auto", image, {})
        rows.append({"mode": mode, "image": image, "kind": "step 0 (auto, opens the session)", "clicks": 0,
                     "client_s": seconds, **info["request"], "tiles_per_pass": info["session"].get("tiles_per_pass")})
        params: dict = {"tumor": [], "background": [], "label": "tumor"}
        sequence = alternate(clicks.tumor, clicks.background, args.clicks)
        for n, (kind, point) in enumerate(sequence, 1):
            params[kind].append(point)
            seconds, info = post(server.url, "petclick", image, params)
            rows.append({"mode": mode, "image": image, "kind": "one more click", "clicks": n, "client_s": seconds,
                         **info["request"], "tiles_per_pass": info["session"].get("tiles_per_pass")})
        print(f"  {mode} {image}: {1 + len(sequence)} requests", file=sys.stderr)
    return rows


def summary(rows: list[dict]) -> list[dict]:
    out = []
    for key in dict.fromkeys((r["mode"], r["kind"]) for r in rows):
        sel = [r for r in rows if (r["mode"], r["kind"]) == key]
        client = [r["client_s"] for r in sel]
        tiles = [r["tiles_computed"] for r in sel]
        out.append({"mode": key[0], "kind": key[1], "n": len(sel), "client_median_s": statistics.median(client),
                    "client_max_s": max(client), "server_median_s": statistics.median(r["seconds"] for r in sel),
                    "tiles_median": statistics.median(tiles), "tiles_per_pass": sel[0]["tiles_per_pass"]})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--studies", default="demo/phantoms", help="autoPET-layout folder with clicks/ (default demo/phantoms)")
    ap.add_argument("--models", nargs="+", default=["demo/work_dir"], help="models (default demo/work_dir)")
    ap.add_argument("--modes", nargs="+", default=["exact", "naive"], choices=["naive", "exact", "local"])
    ap.add_argument("--cases", type=int, default=3, help="cases to time (the first ids)")
    ap.add_argument("--clicks", type=int, default=6, help="interactive requests per case, one click more each")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", type=Path, default=None, help="write every request's figures here")
    ap.add_argument("--logs", type=Path, default=None, help="keep the servers' logs and scratch here (default: a temp dir)")
    args = ap.parse_args(argv)
    rows, starts = [], {}
    with tempfile.TemporaryDirectory(prefix="bench_label_") as tmp:
        logs = args.logs or Path(tmp)
        logs.mkdir(parents=True, exist_ok=True)
        for mode in args.modes:
            starts[mode], mode_rows = run_mode(args, mode, logs)
            rows += mode_rows
    table = summary(rows)
    print(f"models: {' '.join(args.models)}; studies: {args.studies}; server start to first /info/: "
          + ", ".join(f"{m} {s:.1f} s" for m, s in starts.items()))
    print(f"{'mode':6} {'request':34} {'n':>3} {'client median s':>16} {'client max s':>13} {'server median s':>16} "
          f"{'tiles run (median / per pass)':>30}")
    for t in table:
        tiles = "-" if t["tiles_per_pass"] is None else f"{t['tiles_median']:g} / {t['tiles_per_pass']}"
        print(f"{t['mode']:6} {t['kind']:34} {t['n']:3d} {t['client_median_s']:16.3f} {t['client_max_s']:13.3f} "
              f"{t['server_median_s']:16.3f} {tiles:>30}")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "start_s": starts,
                                         "summary": table, "requests": rows}, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
