"""The learned tracer classifier: a small 2D MONAI network on the coronal and sagittal MIPs.

Input (`mip_input`): the two maximum-intensity projections of petclick.postprocess.tracer.mip_views
(head at the top, any voxel orientation), each divided by the median SUV of the body (voxels above
SUV 0.2, as the MIP rule normalises) so scanners and dose calibrations compare, put through
log1p (SUV spans 0.3-50) and resized to one fixed size (MONAI Resize, area mode: a resized MIP
keeps small hot spots' mean), stacked as two channels.

Checkpoints are self-describing, like the segmentation ones (petclick/runtime/checkpoint.py) and
written atomically:

    {"format": "petclick-tracer-1", "state_dict": ..., "network": {"name", "kwargs"},
     "input": {"size": [W, H], "views": ["coronal", "sagittal"], "normalise": ...},
     "tracers": ["fdg", "psma"], "metrics": {...}, "training": {...}}

`petclick predict` / `gc --tracer-model FILE.pt` use it where a case's tracer is unknown; without
it the MIP rule decides (petclick.postprocess.resolve_tracer).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from petclick.core.atomic import atomic_path
from petclick.core.errors import InputError
from petclick.io.torchfile import load_torch_file
from petclick.networks.tracer import build_tracer_network
from petclick.postprocess.tracer import BODY_SUV, TracerGuess, _axes, mip_views

FORMAT = "petclick-tracer-1"
TRACERS = ("fdg", "psma")
VIEWS = ("coronal", "sagittal")
DEFAULT_SIZE = (64, 128)                 # (in-plane, head-foot) of each resized MIP
NORMALISE = "log1p(max(SUV, 0) / median body SUV)"
REQUIRED = ("format", "state_dict", "network", "input", "tracers")


def mip_input(pet: np.ndarray, affine: np.ndarray, size: Sequence[int] = DEFAULT_SIZE) -> np.ndarray:
    """The classifier's input for one PET (SUV) volume: float32 (2, *size), see the module docstring."""
    from monai.transforms import Resize

    pet = np.clip(np.nan_to_num(np.asarray(pet, np.float32), nan=0.0), 0.0, None)
    body = pet[pet > BODY_SUV]
    reference = float(np.median(body)) if body.size else 1.0
    resize = Resize(spatial_size=tuple(int(s) for s in size), mode="area")
    views = [np.log1p(np.ascontiguousarray(v) / max(reference, 1e-6)) for v in mip_views(pet, affine)]
    return np.stack([np.asarray(resize(v[None]))[0] for v in views]).astype(np.float32)


def without_head(pet: np.ndarray, affine: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """The volume without the head-most `fraction` of its head-foot axis (a scan that starts at the
    neck or chest), and the affine that keeps every remaining voxel's position: what training with
    `head_cuts` shows the classifier, and what the benchmark tests both methods on."""
    si, head_high, _ = _axes(affine)
    n = pet.shape[si]
    cut = int(round(float(fraction) * n))
    if not 0 <= cut < n:
        raise ValueError(f"head cut fraction must be in [0, 1), got {fraction}")
    keep = slice(0, n - cut) if head_high else slice(cut, n)
    out = np.asarray(affine, np.float64).copy()
    out[:3, 3] = out[:3, :3] @ (np.eye(3)[si] * keep.start) + out[:3, 3]
    index = [slice(None)] * 3
    index[si] = keep
    return np.ascontiguousarray(pet[tuple(index)]), out


class TracerClassifier:
    """A tracer network with its input settings: `classify(pet, affine)` -> TracerGuess."""

    def __init__(self, network: str = "resnet", network_kwargs: Mapping[str, Any] | None = None,
                 size: Sequence[int] = DEFAULT_SIZE, tracers: Sequence[str] = TRACERS, device: str = "cpu"):
        self.network_name, self.network_kwargs = network, dict(network_kwargs or {})
        self.size, self.tracers = tuple(int(s) for s in size), tuple(tracers)
        if len(self.size) != 2 or min(self.size) < 16:
            raise InputError("tracer classifier", f"input size must be two sides >= 16, got {list(size)}")
        self.device = torch.device(device)
        self.model = build_tracer_network(network, len(VIEWS), len(self.tracers), **self.network_kwargs).to(self.device)
        self.metrics: dict[str, Any] = {}
        self.training: dict[str, Any] = {}
        self.source = "untrained"

    @property
    def config(self) -> dict[str, Any]:
        return {"network": {"name": self.network_name, "kwargs": self.network_kwargs},
                "input": {"size": list(self.size), "views": list(VIEWS), "normalise": NORMALISE},
                "tracers": list(self.tracers)}

    def inputs(self, pet: np.ndarray, affine: np.ndarray) -> np.ndarray:
        return mip_input(pet, affine, self.size)

    @torch.no_grad()
    def probabilities(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        """Softmax over the tracers for a batch of inputs (N, 2, *size) (or one input (2, *size))."""
        x = torch.as_tensor(np.asarray(x, np.float32))
        if x.ndim == 3:
            x = x[None]
        self.model.eval()
        return torch.softmax(self.model(x.to(self.device)).float(), dim=1).cpu().numpy()

    def classify(self, pet: np.ndarray, affine: np.ndarray) -> TracerGuess:
        """The tracer of one PET volume and the probability behind it."""
        p = self.probabilities(self.inputs(pet, affine))[0]
        n = int(np.argmax(p))
        return TracerGuess(self.tracers[n], float("nan"), float("nan"),
                           f"learned classifier {self.source}: p({self.tracers[n]}) = {p[n]:.3f}")

    def save(self, path: str | Path) -> Path:
        """Write the self-describing checkpoint atomically (temp file, then rename)."""
        path = Path(path)
        payload = {"format": FORMAT, "state_dict": {k: v.cpu() for k, v in self.model.state_dict().items()},
                   **self.config, "metrics": self.metrics, "training": self.training}
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)
        return path

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> "TracerClassifier":
        """The classifier of a checkpoint written by `save`; a missing, unreadable or foreign file
        (a segmentation checkpoint, say) raises InputError naming it."""
        path = Path(path)
        ckpt = load_torch_file(path, "tracer classifier checkpoint")
        if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT or any(k not in ckpt for k in REQUIRED):
            raise InputError(path, f"not a petclick tracer classifier (format {FORMAT!r} with keys {list(REQUIRED)})")
        net = ckpt["network"]
        out = cls(net["name"], net.get("kwargs"), ckpt["input"]["size"], ckpt["tracers"], device)
        try:
            out.model.load_state_dict(ckpt["state_dict"])
        except RuntimeError as exc:
            raise InputError(path, f"weights do not fit the network it describes ({exc})") from exc
        out.model.eval()
        out.metrics, out.training, out.source = dict(ckpt.get("metrics") or {}), dict(ckpt.get("training") or {}), path.name
        return out
