"""Time per request of the `petclick label` server (MONAI Label), as 3D Slicer's module sends them.

Two measurements:

1. Modes (default): starts `petclick label` over a studies folder (default: the demo's phantoms)
   with a model set (default: the demo's 20-checkpoint work_dir), once per incremental mode, then
   for each of the first --cases cases: the automatic task (step 0: opens the case's session, a
   full pass), then --clicks requests of the interactive task, each adding one click (the case's
   simulated clicks, tumour and background in turn) and re-sending every point so far, as Slicer
   does. Prints one table row per mode and request kind.

       python benchmarks/bench_label.py --studies demo/phantoms --models demo/work_dir
       python benchmarks/bench_label.py --models suv-threshold --modes exact --cases 2

2. Load (`--readers 1 2 4`): for each number of readers R, a fresh server (--workers, a queue long
   enough for R) over R phantoms of --shape (generated once under --out and reused), R simulated
   readers at once, each on its own phantom with its own client id: the automatic task (opens its
   session), then --clicks clicks (one more each request, every point re-sent). Bounded loops: each
   reader sends exactly 1 + --clicks requests, each with a time limit. Prints per R: per-click
   latency p50/p95/max over all readers' clicks (client time: POST until the whole answer is in),
   the session openings' median, errors (any answer but 200, or none), the server's peak resident
   memory (its process tree, sampled every 0.1 s) and the sessions' own bytes (/info/).
   Models: --models, else --random-models N untrained demo-preset SegResNet-DS checkpoints (made
   once under --out; untrained weights cost the same time as trained ones).

       python benchmarks/bench_label.py --readers 1 2 4 --out /tmp/bench_label --shape 200x200x326

Client time is POST until the whole multipart answer (JSON + NIfTI mask) is in; the server's own
figures come from the answer's JSON; --json writes every request. Needs the label install
(requirements-label.txt, then monailabel --no-deps).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

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


def send(url: str, model: str, image: str, params: dict, timeout_s: float = 600) -> tuple[float, int, dict | str]:
    """One request as Slicer sends it: (client seconds, HTTP status or 0 for none, the answer's JSON
    part when 200 with a mask, else the error)."""
    t0 = time.perf_counter()
    try:
        r = requests.post(f"{url}/infer/{model}", params={"image": image},
                          files={"params": (None, json.dumps(params))}, timeout=timeout_s)
    except requests.RequestException as exc:
        return time.perf_counter() - t0, 0, f"{type(exc).__name__}: {exc}"
    if r.status_code != 200:
        return time.perf_counter() - t0, r.status_code, r.text
    parts = {p.headers[b"Content-Disposition"].decode().split('name="')[1].split('"')[0]: p.content
             for p in MultipartDecoder.from_response(r).parts}
    seconds = time.perf_counter() - t0
    if "image" not in parts:
        return seconds, r.status_code, "no mask in the answer"
    return seconds, r.status_code, json.loads(parts["params"])


def post(url: str, model: str, image: str, params: dict) -> tuple[float, dict]:
    """Client seconds and the answer's JSON of one request that must succeed."""
    seconds, status, info = send(url, model, image, params)
    if not isinstance(info, dict):
        raise RuntimeError(f"{model} {image}: HTTP {status}: {info}")
    return seconds, info


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


# ----------------------------------------------------------------------------- load: 1, 2, 4 readers
def make_studies(out: Path, n: int, shape: tuple[int, ...], seed: int = 300) -> Path:
    """n FDG phantoms of `shape` in the autoPET layout under out/studies-<shape> (kept and reused)."""
    from petclick.phantoms import generate_case
    from petclick.phantoms.cohort import write_case

    root = out / f"studies-{'x'.join(map(str, shape))}"
    for k in range(n):
        cid = f"fdg_load{k:02d}_01"
        if not (root / "clicks" / f"{cid}_clicks.json").is_file():
            write_case(root, generate_case(cid, seed + k, shape=tuple(shape), tracer="fdg"))
    return root


class PeakRss:
    """The largest resident memory of a process and its children, sampled every `every_s` seconds."""

    def __init__(self, pid: int, every_s: float = 0.1):
        import psutil

        self.process, self.every_s, self.peak = psutil.Process(pid), every_s, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                procs = [self.process, *self.process.children(recursive=True)]
                self.peak = max(self.peak, sum(p.memory_info().rss for p in procs))
            except psutil.Error:
                pass
            self._stop.wait(self.every_s)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(5)
        return self.peak


def reader(url: str, name: str, image: str, clicks, n: int, timeout_s: float, rows: list) -> None:
    """One simulated reader: the automatic task, then n clicks (module docstring); a row per request."""
    requests_ = [("petclick_auto", {"client_id": name}, 0)]
    params: dict = {"tumor": [], "background": [], "label": "tumor", "client_id": name}
    for k, (kind, point) in enumerate(alternate(clicks.tumor, clicks.background, n), 1):
        params[kind] = [*params[kind], point]
        requests_.append(("petclick", {**params}, k))
    for model, body, k in requests_:
        seconds, status, info = send(url, model, image, body, timeout_s)
        row = {"reader": name, "image": image, "clicks": k, "kind": "open (auto)" if k == 0 else "click",
               "client_s": seconds, "status": status}
        if isinstance(info, dict):
            row.update(server_s=info["request"]["seconds"], tiles=info["request"]["tiles_computed"],
                       session_mb=info["session"]["memory_bytes"]["total"] / 2**20)
        else:
            row["error"] = info[:200]
        rows.append(row)


def run_load(args, readers: int, studies: Path, models: list[str], log_dir: Path) -> dict:
    """One server, `readers` readers at once (module docstring); the summary row."""
    from petclick.io.clickfile import read_click_file

    extra = ["--scratch", str(log_dir / f"scratch-{readers}"), "--workers", str(args.workers),
             "--queue", str(max(readers, 1)), "--device", args.device, "--sessions", str(max(8, readers))]
    rows: list[dict] = []
    with LabelServerProcess(studies, models, log_dir / f"server-{readers}.log", extra=extra) as server:
        peak = PeakRss(server.proc.pid)
        images = sorted(requests.get(f"{server.url}/datastore/", params={"output": "all"}, timeout=60).json()["objects"])
        threads = []
        t0 = time.perf_counter()
        for k in range(readers):
            image = images[k % len(images)]
            clicks = read_click_file(Path(studies) / "clicks" / f"{image}_clicks.json")
            threads.append(threading.Thread(target=reader, args=(server.url, f"reader{k}", image, clicks, args.clicks,
                                                                 args.timeout, rows)))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        status = requests.get(f"{server.url}/info/", timeout=60).json()["petclick"]
        peak_bytes = peak.stop()
    clicks = [r["client_s"] for r in rows if r["kind"] == "click" and "error" not in r]
    opens = [r["client_s"] for r in rows if r["kind"] != "click" and "error" not in r]
    return {"readers": readers, "workers": args.workers, "requests": len(rows), "clicks": len(clicks),
            "p50_s": float(np.percentile(clicks, 50)) if clicks else float("nan"),
            "p95_s": float(np.percentile(clicks, 95)) if clicks else float("nan"),
            "max_s": max(clicks, default=float("nan")), "open_median_s": statistics.median(opens) if opens else float("nan"),
            "errors": sum("error" in r for r in rows), "peak_rss_mb": peak_bytes / 2**20,
            "sessions_mb": status["memory_bytes"] / 2**20, "wall_s": wall, "rows": rows}


def load_main(args) -> int:
    out = args.out or Path(tempfile.mkdtemp(prefix="bench_label_load_"))
    out.mkdir(parents=True, exist_ok=True)
    shape = tuple(int(v) for v in args.shape.lower().split("x"))
    studies = make_studies(out, max(args.readers), shape)
    if args.models:
        models = list(args.models)
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from bench_interactive import make_models

        models = [str(make_models(out, args.random_models, list(shape), 0))]
    table = []
    for readers in args.readers:
        row = run_load(args, readers, studies, models, out)
        table.append(row)
        print(f"  {readers} reader(s): {row['requests']} requests in {row['wall_s']:.0f} s, {row['errors']} error(s)",
              file=sys.stderr, flush=True)
    print(f"models: {' '.join(models)}; phantoms {args.shape}; {args.workers} workers; {args.clicks} clicks per reader")
    print("| readers | clicks | p50 s per click | p95 s | max s | session open (median s) | errors | peak RSS MB | "
          "sessions MB (/info/) | wall s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for t in table:
        print(f"| {t['readers']} | {t['clicks']} | {t['p50_s']:.2f} | {t['p95_s']:.2f} | {t['max_s']:.2f} | "
              f"{t['open_median_s']:.2f} | {t['errors']} | {t['peak_rss_mb']:.0f} | {t['sessions_mb']:.0f} | "
              f"{t['wall_s']:.0f} |")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "load": table},
                                        indent=1, default=str) + "\n")
    return 0 if all(t["errors"] == 0 for t in table) else 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--studies", default="demo/phantoms", help="autoPET-layout folder with clicks/ (default demo/phantoms)")
    ap.add_argument("--models", nargs="+", default=None,
                    help="models (default: demo/work_dir; with --readers: --random-models untrained checkpoints)")
    ap.add_argument("--modes", nargs="+", default=["exact", "naive"], choices=["naive", "exact", "local"])
    ap.add_argument("--cases", type=int, default=3, help="cases to time (the first ids)")
    ap.add_argument("--clicks", type=int, default=None,
                    help="interactive requests per case or reader, one click more each (default 6; 10 with --readers)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", type=Path, default=None, help="write every request's figures here")
    ap.add_argument("--logs", type=Path, default=None, help="keep the servers' logs and scratch here (default: a temp dir)")
    ap.add_argument("--readers", type=int, nargs="+", default=None, help="load: numbers of simultaneous readers (1 2 4)")
    ap.add_argument("--workers", type=int, default=2, help="load: the server's --workers (default 2)")
    ap.add_argument("--shape", default="200x200x326", help="load: phantom shape (default 200x200x326)")
    ap.add_argument("--random-models", type=int, default=2, help="load: untrained demo checkpoints when no --models")
    ap.add_argument("--timeout", type=float, default=900, help="load: seconds a request may take")
    ap.add_argument("--out", type=Path, default=None, help="load: phantoms, models, logs (kept and reused)")
    args = ap.parse_args(argv)
    if args.readers:
        args.clicks = 10 if args.clicks is None else args.clicks
        return load_main(args)
    args.clicks = 6 if args.clicks is None else args.clicks
    args.models = args.models or ["demo/work_dir"]
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
