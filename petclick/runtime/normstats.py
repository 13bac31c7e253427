"""Instance-norm statistics recorded on a full window and frozen on a crop of it.

An instance-norm layer normalises each channel over its own input, so a crop of a window is
normalised over the crop's content, not the window's: its output drifts from the window's even
where the crop covers the receptive field. Here a window's statistics are recorded as it runs
(`recording`) and a crop then runs with them (`frozen`): every instance-norm layer of the crop uses
the window's per-channel mean and variance, so where the crop covers the receptive field (and
starts on the network's stride lattice within the window) it answers as the window did.

It works on any PyTorch network, without subclassing it: each `torch.nn.InstanceNorm*d` module that
normalises by its input (not by running statistics) gets one forward hook, installed once and kept
(a deep copy keeps it too). The hook acts only inside a `recording` or `frozen` context of the same
thread, so the label server's threads may share a network; outside any context it returns None and
the layer runs as it always does. A network without instance norm simply runs unchanged (its crops
are then exact by construction where they cover the receptive field). ONNX Runtime runs no hooks:
`torch_network` gives the PyTorch network of a prepared window network.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Iterator, Sequence

import torch

#: Per layer (in module order) the per-channel mean and biased variance: tensors (C,) or (B, C).
Stats = list[tuple[torch.Tensor, torch.Tensor]]

_STATE = threading.local()
_INSTALL = threading.Lock()
_FLAG = "_petclick_norm_hook"


def torch_network(model: torch.nn.Module) -> torch.nn.Module:
    """The PyTorch network behind a prepared window network (petclick.runtime.window): an ONNX
    Runtime network's PyTorch twin, else `model` itself."""
    return getattr(model, "torch_net", model)


def instance_norms(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The instance-norm layers of `model` that normalise by their input, in module order."""
    out = []
    for m in model.modules():
        if isinstance(m, torch.nn.modules.instancenorm._InstanceNorm):
            if not (m.track_running_stats and not m.training):
                out.append(m)
    return out


def _hook(module: torch.nn.Module, args: tuple, output: torch.Tensor):
    state = getattr(_STATE, "active", None)
    if state is None:
        return None
    x = args[0]
    dims = tuple(range(2, x.dim()))
    if state["mode"] == "record":
        if module in state["layers"]:
            plain = x.as_tensor() if hasattr(x, "as_tensor") else x     # MONAI MetaTensor: its data only
            var, mean = torch.var_mean(plain.float(), dim=dims, unbiased=False)
            state["seen"][module] = (mean.detach(), var.detach())
        return None
    stats = state["stats"].get(module)
    if stats is None:
        return None
    mean, var = (t.to(x.device, x.dtype) for t in stats)
    if mean.dim() == 1:
        mean, var = mean[None], var[None]
    shape = (*mean.shape, *([1] * len(dims)))
    y = (x - mean.reshape(shape)) * torch.rsqrt(var.reshape(shape) + module.eps)
    if module.affine:
        y = y * module.weight.reshape(1, -1, *([1] * len(dims))) + module.bias.reshape(1, -1, *([1] * len(dims)))
    return y


def _install(layers: Sequence[torch.nn.Module]) -> None:
    with _INSTALL:
        for m in layers:
            if not getattr(m, _FLAG, False):
                m.register_forward_hook(_hook)
                object.__setattr__(m, _FLAG, True)


class Recording:
    """What a `recording` context saw: per layer the statistics of the last forward through it."""

    def __init__(self, layers: list[torch.nn.Module]):
        self.layers = layers
        self.seen: dict[torch.nn.Module, tuple[torch.Tensor, torch.Tensor]] = {}

    def stats(self) -> Stats:
        """Per layer (module order) (mean, var), each (B, C); empty for a network without instance norm.
        A layer that did not run raises RuntimeError (e.g. the network ran on ONNX Runtime)."""
        missing = [i for i, m in enumerate(self.layers) if m not in self.seen]
        if missing:
            raise RuntimeError(f"{len(missing)} instance-norm layer(s) recorded nothing: the network did not run "
                               "on PyTorch (use torch_network)")
        return [self.seen[m] for m in self.layers]

    def sample(self, k: int) -> Stats:
        """The statistics of sample `k` of the batch: per layer (mean (C,), var (C,))."""
        return [(mean[k].clone(), var[k].clone()) for mean, var in self.stats()]


@contextlib.contextmanager
def recording(model: torch.nn.Module) -> Iterator[Recording]:
    """Record every instance-norm layer's per-sample, per-channel statistics of forwards run
    inside (this thread only)."""
    net = torch_network(model)
    layers = instance_norms(net)
    _install(layers)
    rec = Recording(layers)
    previous = getattr(_STATE, "active", None)
    _STATE.active = {"mode": "record", "layers": set(layers), "seen": rec.seen}
    try:
        yield rec
    finally:
        _STATE.active = previous


@contextlib.contextmanager
def frozen(model: torch.nn.Module, stats: Stats) -> Iterator[None]:
    """Run forwards inside with every instance-norm layer using `stats` (per layer, module order,
    as `Recording.sample` gives them; (C,) stats apply to every sample of a batch)."""
    net = torch_network(model)
    layers = instance_norms(net)
    if len(stats) != len(layers):
        raise ValueError(f"{len(stats)} recorded layer statistics for a network with {len(layers)} instance-norm layers")
    _install(layers)
    previous = getattr(_STATE, "active", None)
    _STATE.active = {"mode": "frozen", "stats": dict(zip(layers, stats))}
    try:
        yield
    finally:
        _STATE.active = previous
