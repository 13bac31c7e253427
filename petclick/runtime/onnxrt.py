"""ONNX Runtime for CPU sliding-window passes (the `onnxruntime` inference backend).

Why: on this project's shared 2-core AVX-512 CPU a SegResNetDS pass runs 2.1-3.5x faster on ONNX
Runtime than on PyTorch at the same float32 result (max |dp| <= 3e-4; docs/benchmarks/passes.md,
benchmarks/bench_pass.py). Most of it is threads: PyTorch's OpenMP threads wait in barriers when
the cores are oversubscribed, ONNX Runtime's (no spin-waiting) do not; single-threaded the gain
is 1.1-1.3x, and on the same machine idle it is 1.17x (1.01 s against 1.18 s).

- The network is exported once per architecture (PyTorch's TorchScript ONNX exporter, batch and
  spatial axes dynamic) and every checkpoint of that architecture runs that graph with its own
  weights (ONNX Runtime's initializer override), so a 20-checkpoint ensemble pays one export.
  The TorchScript exporter (deprecated in PyTorch, still shipped) needs only `onnx` and took a
  quarter of the dynamo exporter's time (4 s against 17 s for the demo network, which also needs
  onnxscript); a network it cannot export stays on PyTorch with a warning.
- Every new window shape is checked once per checkpoint against the PyTorch network (one PyTorch
  forward); a mismatch (an export that baked in a shape, a stale weight) logs a warning and that
  checkpoint stays on PyTorch. Nothing is silently wrong.
- Threads (the label server runs sessions in parallel) share a network: its session is opened
  once under a lock. Two threads opening it at once would each build one, and the second would
  free the weight arrays the first session still reads (a segfault in ONNX Runtime).
- Frozen normalisation (petclick.runtime.normstats) runs here too, as two more graphs of the same
  architecture, exported through the same hooks: `recorded_logits` (outputs: the logits and every
  instance-norm layer's per-sample mean and variance) for full passes, and `frozen_logits` (inputs:
  the window and every layer's mean and variance) for a click's crops. Each is checked against the
  hooked PyTorch network once per window shape, as the plain graph is, and falls back to it alone.
"""

from __future__ import annotations

import copy
import io
import logging
import threading
import warnings
from typing import Any, Hashable

import numpy as np
import torch

from petclick.runtime import normstats

log = logging.getLogger(__name__)

#: A checked window may differ from PyTorch by this much (relative to its largest |logit|).
CHECK_RTOL = 1e-3
_EXPORTS: dict[Hashable, tuple[bytes, dict[str, str]]] = {}
_EXPORTS_LOCK = threading.Lock()
#: The graphs of one network: its plain forward, the forward recording instance-norm statistics,
#: and the forward with them frozen (inputs).
KINDS = ("plain", "record", "frozen")


def available() -> bool:
    """Whether onnxruntime and onnx (the exporter's dependency) import."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


class _Exported(torch.nn.Module):
    """What is exported: the network's full-resolution output (deep-supervision lists cut)."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        return out[0] if isinstance(out, (list, tuple)) else out


class _Recording(torch.nn.Module):
    """The `record` graph: the full-resolution output and, per instance-norm layer (module order),
    its per-sample mean and variance (B, C)."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with normstats.recording(self.net) as rec:
            out = self.net(x)
        y = out[0] if isinstance(out, (list, tuple)) else out
        return (y, *[t for pair in rec.stats() for t in pair])


class _Frozen(torch.nn.Module):
    """The `frozen` graph: the full-resolution output with every instance-norm layer using the
    mean and variance given as inputs (per layer (C,), shared by the batch)."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, *flat: torch.Tensor) -> torch.Tensor:
        with normstats.frozen(self.net, list(zip(flat[0::2], flat[1::2]))):
            out = self.net(x)
        return out[0] if isinstance(out, (list, tuple)) else out


def _stat_names(n_layers: int) -> list[str]:
    return [f"{k}{i}" for i in range(n_layers) for k in ("mean", "var")]


def export_onnx(model: torch.nn.Module, example: torch.Tensor, kind: str = "plain") -> tuple[bytes, dict[str, str]]:
    """The ONNX graph of `model`'s architecture (batch and spatial axes dynamic) and {initializer
    name: state_dict key} of its weights, which a checkpoint overrides with its own. The graph is
    traced from a copy whose weights are all distinct (random), since the exporter merges equal
    initializers (e.g. every InstanceNorm weight still at its initial 1). `kind` (KINDS): the plain
    forward (input x, output y); `record`: outputs y, mean0, var0, mean1, ... (B, C) of every
    instance-norm layer; `frozen`: inputs x, mean0, var0, ... (C,), output y."""
    import onnx

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    dyn = {0: "batch", 2: "d0", 3: "d1", 4: "d2"}
    buf = io.BytesIO()
    probe = copy.deepcopy(model).cpu().float().eval()
    gen = torch.Generator().manual_seed(0)
    n_layers = len(normstats.instance_norms(probe))
    stats = _stat_names(n_layers)
    args: tuple = (example,)
    inputs, outputs, axes = ["x"], ["y"], {"x": dyn, "y": dyn}
    with warnings.catch_warnings(), torch.no_grad():
        for p in probe.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
        warnings.simplefilter("ignore")  # the exporter's notes on instance_norm's train flag and deprecation
        wrapper: torch.nn.Module = _Exported(probe)
        if kind == "record":
            wrapper = _Recording(probe)
            outputs += stats
            axes.update({name: {0: "batch"} for name in stats})
        elif kind == "frozen":
            wrapper = _Frozen(probe)
            with normstats.recording(probe) as rec:
                probe(example[:1])
            args = (example, *[t for pair in rec.sample(0) for t in pair])
            inputs += stats
        torch.onnx.export(wrapper, args, buf, dynamo=False, opset_version=17,
                          input_names=inputs, output_names=outputs, dynamic_axes=axes,
                          do_constant_folding=False)
    data = buf.getvalue()
    keys = set(probe.state_dict())
    names = {}
    for init in onnx.load_from_string(data).graph.initializer:
        key = init.name[len("net."):] if init.name.startswith("net.") else None
        if key in keys:
            names[init.name] = key
    return data, names


class OrtWindowNet(torch.nn.Module):
    """A network run by ONNX Runtime on CPU: `forward(windows (B, C, *roi))` -> float32 logits
    (B, out, *roi), the full-resolution output. `arch` (hashable, e.g. the checkpoint's network
    name, kwargs and channels) shares one export between checkpoints; None exports this model."""

    def __init__(self, model: torch.nn.Module, arch: Hashable | None = None, threads: int | None = None):
        super().__init__()
        self.torch_net = _Exported(model).eval()
        self.arch = arch
        self.threads = int(threads or torch.get_num_threads())
        self._session: Any = None
        self._keep: list = []      # the override arrays must outlive the session
        self._checked: set[tuple[int, ...]] = set()
        self.fallback = False
        self._graphs: dict[str, tuple[Any, list]] = {}     # the record and frozen graphs' sessions, once opened
        self._fallback_kinds: set[str] = set()             # graphs that run on PyTorch instead
        self._opening = threading.Lock()   # sessions of a server run in threads: one open, never two

    def _open(self, example: torch.Tensor) -> None:
        self._session, self._keep = self._open_kind("plain", example)

    def _open_kind(self, kind: str, example: torch.Tensor) -> tuple[Any, list]:
        """An ONNX Runtime session of this checkpoint's `kind` graph (KINDS) and the weight arrays
        it reads (they must outlive it)."""
        import onnxruntime as ort

        if self.arch is None:                 # this model only: nothing kept beyond the session
            data, names = export_onnx(self.torch_net.net, example, kind)
        else:
            key = self.arch if kind == "plain" else (kind, self.arch)
            with _EXPORTS_LOCK:
                if key not in _EXPORTS:
                    _EXPORTS[key] = export_onnx(self.torch_net.net, example, kind)
                data, names = _EXPORTS[key]
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")  # shared CPUs: no busy-waiting
        state = self.torch_net.net.state_dict()
        keep = []
        for name, k in names.items():
            arr = np.ascontiguousarray(state[k].detach().cpu().numpy())  # its own dtype (int64 index buffers too)
            value = ort.OrtValue.ortvalue_from_numpy(arr)
            keep.append((arr, value))
            opts.add_initializer(name, value)
        # the record and frozen graphs reshape instance-norm weights: ONNX Runtime's constant folding
        # would fold the exported (random) weights into them before the override applies
        disabled = [] if kind == "plain" else ["ConstantFolding"]
        return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"], disabled_optimizers=disabled), keep

    def _graph(self, kind: str, example: torch.Tensor) -> Any:
        """The open session of the `record` or `frozen` graph (opened once, under the lock)."""
        if kind not in self._graphs:
            with self._opening:
                if kind not in self._graphs:
                    self._graphs[kind] = self._open_kind(kind, example)
        return self._graphs[kind][0]

    def _fall_back(self, kind: str, why: str) -> None:
        log.warning("cannot run the %s graph of this network on onnxruntime (%s); it runs on PyTorch", kind, why)
        self._fallback_kinds.add(kind)

    def _torch_record(self, x: torch.Tensor) -> tuple[torch.Tensor, normstats.Stats]:
        with normstats.recording(self.torch_net.net) as rec:
            y = self.torch_net(x)
        return y.float(), rec.stats()

    def _torch_frozen(self, x: torch.Tensor, stats: normstats.Stats) -> torch.Tensor:
        with normstats.frozen(self.torch_net.net, stats):
            return self.torch_net(x).float()

    def _check(self, kind: str, out: torch.Tensor, ref: torch.Tensor) -> bool:
        """Whether `out` of a newly seen window shape agrees with PyTorch's `ref`; else fall back."""
        err = float((out - ref).abs().max()) if out.shape == ref.shape else float("inf")
        if err > CHECK_RTOL * (1.0 + float(ref.abs().max())):
            self._fall_back(kind, f"it differs from PyTorch by {err:.3g}")
            return False
        return True

    @torch.no_grad()
    def recorded_logits(self, windows: torch.Tensor) -> tuple[torch.Tensor, normstats.Stats]:
        """Logits (B, out, *roi) of `windows` and every instance-norm layer's statistics as
        normstats.Recording.stats gives them (per layer (mean, var), each (B, C))."""
        x = windows.detach().to("cpu", torch.float32).contiguous()
        if self.fallback or "record" in self._fallback_kinds:
            return self._torch_record(x)
        try:
            res = self._graph("record", x).run(None, {"x": x.numpy()})
        except Exception as exc:  # an operator the exporter or ONNX Runtime lacks
            self._fall_back("record", f"{type(exc).__name__}: {str(exc)[:200]}")
            return self._torch_record(x)
        out = torch.from_numpy(res[0])
        stats = [(torch.from_numpy(res[i]), torch.from_numpy(res[i + 1])) for i in range(1, len(res), 2)]
        shape = ("record", *x.shape[1:])
        if shape not in self._checked:
            ref, ref_stats = self._torch_record(x)
            ok = self._check("record", out, ref) and len(stats) == len(ref_stats) and all(
                self._check("record", a, b) for pair, ref_pair in zip(stats, ref_stats) for a, b in zip(pair, ref_pair))
            if not ok:
                if "record" not in self._fallback_kinds:
                    self._fall_back("record", "its statistics differ from PyTorch's")
                return ref, ref_stats
            self._checked.add(shape)
        return out, stats

    @torch.no_grad()
    def frozen_logits(self, windows: torch.Tensor, stats: normstats.Stats) -> torch.Tensor:
        """Logits (B, out, *roi) of `windows` with every instance-norm layer using `stats` (per
        layer (mean, var) of shape (C,), as normstats.Recording.sample gives them)."""
        x = windows.detach().to("cpu", torch.float32).contiguous()
        if self.fallback or "frozen" in self._fallback_kinds:
            return self._torch_frozen(x, stats)
        feed = {"x": x.numpy()}
        for name, t in zip(_stat_names(len(stats)), (t for pair in stats for t in pair)):
            feed[name] = np.ascontiguousarray(t.detach().to("cpu", torch.float32).reshape(-1).numpy())
        try:
            out = torch.from_numpy(self._graph("frozen", x).run(None, feed)[0])
        except Exception as exc:  # an operator the exporter or ONNX Runtime lacks
            self._fall_back("frozen", f"{type(exc).__name__}: {str(exc)[:200]}")
            return self._torch_frozen(x, stats)
        shape = ("frozen", *x.shape[1:])
        if shape not in self._checked:
            ref = self._torch_frozen(x, stats)
            if not self._check("frozen", out, ref):
                return ref
            self._checked.add(shape)
        return out

    def _run(self, x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self._session.run(None, {"x": x})[0])

    @torch.no_grad()
    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        if self.fallback:
            return self.torch_net(windows)
        x = windows.detach().to("cpu", torch.float32).contiguous()
        try:
            if self._session is None:
                with self._opening:
                    if self._session is None:  # another thread may have opened it meanwhile
                        self._open(x)
            out = self._run(x.numpy())
        except Exception as exc:  # an operator the exporter or ONNX Runtime lacks, a shape it cannot run
            log.warning("cannot run this network on onnxruntime (%s: %s); it runs on PyTorch",
                        type(exc).__name__, str(exc)[:200])
            self.fallback = True
            return self.torch_net(x)
        shape = tuple(x.shape[1:])
        if shape not in self._checked:
            ref = self.torch_net(x).float()
            err = float((out - ref).abs().max()) if out.shape == ref.shape else float("inf")
            if err > CHECK_RTOL * (1.0 + float(ref.abs().max())):
                log.warning("onnxruntime differs from PyTorch by %.3g on a %s window; this checkpoint runs on "
                            "PyTorch", err, list(shape[1:]))
                self.fallback = True
                return ref
            self._checked.add(shape)
        return out
