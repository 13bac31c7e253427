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

log = logging.getLogger(__name__)

#: A checked window may differ from PyTorch by this much (relative to its largest |logit|).
CHECK_RTOL = 1e-3
_EXPORTS: dict[Hashable, tuple[bytes, dict[str, str]]] = {}
_EXPORTS_LOCK = threading.Lock()


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


def export_onnx(model: torch.nn.Module, example: torch.Tensor) -> tuple[bytes, dict[str, str]]:
    """The ONNX graph of `model`'s architecture (batch and spatial axes dynamic) and {initializer
    name: state_dict key} of its weights, which a checkpoint overrides with its own. The graph is
    traced from a copy whose weights are all distinct (random), since the exporter merges equal
    initializers (e.g. every InstanceNorm weight still at its initial 1)."""
    import onnx

    dyn = {0: "batch", 2: "d0", 3: "d1", 4: "d2"}
    buf = io.BytesIO()
    probe = copy.deepcopy(model).cpu().float().eval()
    gen = torch.Generator().manual_seed(0)
    with warnings.catch_warnings(), torch.no_grad():
        for p in probe.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
        warnings.simplefilter("ignore")  # the exporter's notes on instance_norm's train flag and deprecation
        torch.onnx.export(_Exported(probe), (example,), buf, dynamo=False, opset_version=17,
                          input_names=["x"], output_names=["y"], dynamic_axes={"x": dyn, "y": dyn},
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
        self._opening = threading.Lock()   # sessions of a server run in threads: one open, never two

    def _open(self, example: torch.Tensor) -> None:
        import onnxruntime as ort

        if self.arch is None:                 # this model only: nothing kept beyond the session
            data, names = export_onnx(self.torch_net.net, example)
        else:
            with _EXPORTS_LOCK:
                if self.arch not in _EXPORTS:
                    _EXPORTS[self.arch] = export_onnx(self.torch_net.net, example)
                data, names = _EXPORTS[self.arch]
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
        session = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
        self._keep, self._session = keep, session

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
