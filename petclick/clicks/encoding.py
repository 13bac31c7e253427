"""Click encodings: turn tumour/background clicks into extra network input channels.

Encodings (chosen by a plain YAML mapping, see `encoder_from_config`; each is one ClickKernel entry
of the KERNELS registry below, so a new encoding is one entry plus its YAML name):

- ``edt``: a ball of radius ``radius`` whose value falls linearly from 1 at the click to 0 at its rim.
- ``disk``: the binary ball of radius ``radius`` (1 inside, 0 outside).
- ``gaussian``: exp(-d^2 / 2 sigma^2) truncated at ``truncate`` sigma; ``gaussian_norm: peak`` gives 1 at
  the click, ``unit`` scales each click's kernel to sum to 1 (like the challenge's published heat maps).
- ``stroke`` (autoPET V scribbles, every stroke voxel a point): the Gaussian blur of the stroke mask,
  exp(-d^2 / 2 sigma^2) / (sqrt(2 pi) sigma) per voxel combined by sum (its default), so a straight
  stroke of voxel-spaced points reads about 1 along its line (sigma in voxels; a diagonal one about
  0.7), a lone voxel 1 / (sqrt(2 pi) sigma), and a stroke drawn twice (the official loop repeats a
  stroke the model ignored) reads twice as strong. With ``combine: max`` the ``edt``, ``disk`` and
  ``gaussian`` encodings of stroke voxels are already the truncated EDT, dilation and peak Gaussian
  of the stroke mask (the maximum of a falling function of the distance to each voxel is that
  function of the distance to the mask).

- ``uptake``: the click's uptake region, for networks that should start from what a reader's
  iso-contour would outline: the ``edt`` ball of ``radius``, joined (max) to the voxels within
  ``uptake_radius`` of the click that are connected (26) to it and whose PET reaches
  ``lo + uptake_fraction x (peak - lo)``, where peak is the PET maximum in the click's 3x3x3
  neighbourhood and lo the minimum over its ball (background-corrected, so an intensity shift or
  scale of the PET channel leaves the region unchanged). A region filling more than half of the
  ball is flat uptake, not a bounded hot spot, and is left out (only the ball remains), as the
  click rule of petclick.postprocess does. Both kinds get it: a background click on the bladder
  marks the bladder. The PET is the input's channel ``pet_channel`` (1: CT, PET).

Radii/sigmas are in voxels or in mm (``radius_unit`` / ``sigma_unit``; mm uses the image spacing taken
from its affine, so balls stay round in physical space on anisotropic grids). Overlapping clicks
combine by maximum (``combine: max``, the default of every encoding but ``stroke``) or by sum.
``channels: two`` appends fg then bg (CT, PET, fg, bg); ``signed`` appends one channel fg - bg.

Every click is computed only inside its local box, all clicks of a kind at once (one scatter into the
flattened channel), on the image's device: no per-voxel Python loops and no host synchronisation, so
the same code runs on CPU and CUDA tensors. Click positions may be sub-voxel (floats).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import cc3d
import numpy as np
import torch
from monai.transforms import MapTransform, Transform
from monai.utils import convert_to_dst_type

from petclick.config.presets import DEFAULT_ENCODING
from petclick.core.registry import Registry

CHANNEL_MODES = ("two", "signed")
UNITS = ("voxel", "mm")
GAUSSIAN_NORMS = ("peak", "unit")
COMBINES = ("max", "sum")
KINDS = ("tumor", "background")

_CONFIG_KEYS = {
    "encoding", "radius", "radius_unit", "sigma", "sigma_unit", "gaussian_norm", "norm",
    "truncate", "channels", "combine", "spacing", "uptake_radius", "uptake_fraction", "pet_channel",
}
UNBOUNDED_FRACTION = 0.5  # an uptake region filling more of its ball than this is flat uptake (as the click rule)


def _choice(name: str, value: Any, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ValueError(f"unknown click {name} {value!r}; expected one of {list(allowed)}")
    return str(value)


def _positive(name: str, value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"click {name} must be a positive number, got {value!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"click {name} must be a positive number, got {value!r}")
    return v


@dataclass(frozen=True)
class ClickKernel:
    """One click encoding: the value at squared distance `d2` (in the kernel's unit) before the
    support mask, the support radius, the unit its size is given in, and whether each click's kernel
    is normalised to sum 1."""

    values: Callable[[torch.Tensor, "EncodeClicks"], torch.Tensor]
    support: Callable[["EncodeClicks"], float]
    unit: Callable[["EncodeClicks"], str]
    unit_sum: Callable[["EncodeClicks"], bool] = lambda enc: False
    combine: str = "max"  # how overlapping kernels combine when the config names no `combine`
    uses_image: bool = False  # the value also depends on the PET around the click (`uptake`)


#: The click encodings by YAML name (`clicks.encoding.encoding`), in registration order.
KERNELS: Registry[ClickKernel] = Registry("click encoding")
KERNELS.register("edt", ClickKernel(values=lambda d2, enc: torch.clamp(1.0 - torch.sqrt(d2) / enc.radius, min=0.0),
                                    support=lambda enc: enc.radius, unit=lambda enc: enc.radius_unit))
KERNELS.register("disk", ClickKernel(values=lambda d2, enc: torch.ones_like(d2),
                                     support=lambda enc: enc.radius, unit=lambda enc: enc.radius_unit))
KERNELS.register("gaussian", ClickKernel(values=lambda d2, enc: torch.exp(-d2 / (2.0 * enc.sigma * enc.sigma)),
                                         support=lambda enc: enc.truncate * enc.sigma, unit=lambda enc: enc.sigma_unit,
                                         unit_sum=lambda enc: enc.gaussian_norm == "unit"))
KERNELS.register("stroke", ClickKernel(
    values=lambda d2, enc: torch.exp(-d2 / (2.0 * enc.sigma * enc.sigma)) / (math.sqrt(2.0 * math.pi) * enc.sigma),
    support=lambda enc: enc.truncate * enc.sigma, unit=lambda enc: enc.sigma_unit, combine="sum"))
KERNELS.register("uptake", ClickKernel(values=lambda d2, enc: torch.clamp(1.0 - torch.sqrt(d2) / enc.radius, min=0.0),
                                      support=lambda enc: max(enc.radius, enc.uptake_radius),
                                      unit=lambda enc: enc.radius_unit, uses_image=True))
#: Registered encoding names.
ENCODINGS = KERNELS.names()


def spacing_of(image: Any) -> tuple[float, float, float]:
    """Voxel spacing (mm) from a MetaTensor's affine: the norms of its first three columns; 1 otherwise."""
    affine = getattr(image, "affine", None)
    if affine is None:
        return (1.0, 1.0, 1.0)
    a = np.asarray(affine.detach().cpu() if isinstance(affine, torch.Tensor) else affine, dtype=np.float64)
    return tuple(float(v) for v in np.linalg.norm(a[:3, :3], axis=0))  # type: ignore[return-value]


def uptake_regions(pet: torch.Tensor, ball: torch.Tensor, half: tuple[int, int, int], fraction: float) -> torch.Tensor:
    """Each click's uptake region (the ``uptake`` encoding), all clicks at once.

    pet, ball: (N, Wx, Wy, Wz) boxes around the clicks (the box's voxel at index `half` is the
    click's), the PET and the click's ball (within the array). Returns a boolean (N, Wx, Wy, Wz): the
    voxels of the ball at or above ``lo + fraction x (peak - lo)`` (peak: the 3x3x3 maximum at the
    click; lo: the ball's minimum) connected (26) to the click: cc3d's components on a CPU, on CUDA
    repeated 3x3x3 dilation inside that set (a geodesic flood fill of plain tensor ops, no host
    synchronisation; a path winding longer than 2 (Wx + Wy + Wz) voxels is cut);
    empty where the region fills more than half of the ball (flat uptake) or the click has no contrast.
    """
    big = torch.finfo(pet.dtype).max
    hx, hy, hz = half
    near = pet[:, max(hx - 1, 0):hx + 2, max(hy - 1, 0):hy + 2, max(hz - 1, 0):hz + 2]
    near_ok = ball[:, max(hx - 1, 0):hx + 2, max(hy - 1, 0):hy + 2, max(hz - 1, 0):hz + 2]
    peak = torch.where(near_ok, near, torch.full_like(near, -big)).flatten(1).amax(1)
    lo = torch.where(ball, pet, torch.full_like(pet, big)).flatten(1).amin(1)
    thr = lo + fraction * (peak - lo)
    candidate = ball & (pet >= thr[:, None, None, None]) & (peak > lo)[:, None, None, None]
    # exact components with cc3d on a CPU (about 8x faster there than the flood)
    region = (component_at_cc3d if pet.device.type == "cpu" else component_at_flood)(candidate, half)
    flat_uptake = region.flatten(1).sum(1) > UNBOUNDED_FRACTION * ball.flatten(1).sum(1)
    return region & ~flat_uptake[:, None, None, None]


def component_at_cc3d(candidate: torch.Tensor, seed: tuple[int, int, int]) -> torch.Tensor:
    """For each box n of a boolean (N, Wx, Wy, Wz) CPU tensor, its 26-connected component holding
    voxel `seed` (empty where the seed is not in it), by cc3d."""
    region = torch.zeros_like(candidate)
    for n in range(candidate.shape[0]):
        if bool(candidate[(n, *seed)]):
            labels = cc3d.connected_components(candidate[n].numpy().astype(np.uint8), connectivity=26)
            region[n] = torch.from_numpy(labels == labels[seed])
    return region


def component_at_flood(candidate: torch.Tensor, seed: tuple[int, int, int]) -> torch.Tensor:
    """component_at_cc3d by repeated 3x3x3 dilation inside `candidate` from the seed: plain tensor ops
    on any device, no host synchronisation; a path winding longer than 2 (Wx + Wy + Wz) voxels is cut."""
    region = torch.zeros_like(candidate)
    region[(slice(None), *seed)] = candidate[(slice(None), *seed)]
    grow = region[:, None].to(torch.float32)
    cand = candidate[:, None]
    for _ in range(2 * sum(seed) + 2):
        grow = ((torch.nn.functional.max_pool3d(grow, 3, 1, 1) > 0) & cand).to(torch.float32)
    return grow[:, 0] > 0


class EncodeClicks(Transform):
    """Append click channels to a channel-first image (C, X, Y, Z): numpy, torch CPU or CUDA.

    Call as ``encoder(image, clicks)`` with ``clicks = {"tumor": (N, 3), "background": (M, 3)}`` in the
    image's current voxel coordinates (missing kinds = no clicks). Returns the same type as ``image``
    (a MetaTensor keeps its metadata) with 2 (``two``) or 1 (``signed``) channels appended, in the
    image's dtype and on its device.
    """

    def __init__(self, encoding: str | None = None, radius: float = 5.0, radius_unit: str = "voxel",
                 sigma: float = 3.0, sigma_unit: str = "voxel", gaussian_norm: str = "peak",
                 truncate: float = 3.0, channels: str | None = None, combine: str | None = None,
                 spacing: Sequence[float] | None = None, uptake_radius: float = 10.0,
                 uptake_fraction: float = 0.41, pet_channel: int = 1) -> None:
        encoding = DEFAULT_ENCODING["encoding"] if encoding is None else encoding
        channels = DEFAULT_ENCODING["channels"] if channels is None else channels
        if encoding not in KERNELS:
            raise ValueError(f"unknown click encoding {encoding!r}; expected one of {list(KERNELS.names())}")
        self.encoding = str(encoding)
        self.kernel = KERNELS.get(encoding)
        self.radius = _positive("radius", radius)
        self.radius_unit = _choice("radius_unit", radius_unit, UNITS)
        self.sigma = _positive("sigma", sigma)
        self.sigma_unit = _choice("sigma_unit", sigma_unit, UNITS)
        self.gaussian_norm = _choice("gaussian_norm", gaussian_norm, GAUSSIAN_NORMS)
        self.truncate = _positive("truncate", truncate)
        self.channels = _choice("channels", channels, CHANNEL_MODES)
        self.combine = _choice("combine", self.kernel.combine if combine is None else combine, COMBINES)
        self.uptake_radius = _positive("uptake_radius", uptake_radius)
        self.uptake_fraction = _positive("uptake_fraction", uptake_fraction)
        if self.uptake_fraction >= 1:
            raise ValueError(f"click uptake_fraction must lie in (0, 1), got {uptake_fraction!r}")
        if isinstance(pet_channel, bool) or not isinstance(pet_channel, (int, np.integer)) or pet_channel < 0:
            raise ValueError(f"click pet_channel must be a channel index >= 0, got {pet_channel!r}")
        self.pet_channel = int(pet_channel)
        self.spacing = None if spacing is None else tuple(_positive("spacing", s) for s in spacing)
        if self.spacing is not None and len(self.spacing) != 3:
            raise ValueError(f"click spacing must have 3 values, got {spacing!r}")

    @property
    def num_channels(self) -> int:
        return 2 if self.channels == "two" else 1

    # ------------------------------------------------------------------ geometry of one kernel
    def _unit_scale(self, image: Any) -> tuple[float, float, float]:
        """Length of one voxel step along each axis, in the unit the radius/sigma is given in."""
        if self.kernel.unit(self) == "voxel":
            return (1.0, 1.0, 1.0)
        return self.spacing if self.spacing is not None else spacing_of(image)  # type: ignore[return-value]

    def _support(self) -> float:
        """Radius of each click's support (same unit as radius/sigma)."""
        return float(self.kernel.support(self))

    def support_boxes(self, points: Any, shape: Sequence[int], image: Any = None) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
        """The voxel box (lo, hi), hi exclusive, clipped to `shape`, outside which each click's encoding
        is exactly 0: its kernel's local box in `kernels` (every encoding is truncated: edt/disk at
        ``radius``, gaussian at ``truncate`` sigma). An input changes only inside the boxes of the
        clicks added or removed (max, sum and signed combinations alike). Points (N, 3) in voxels."""
        pts = np.asarray(points, dtype=np.float32).reshape(-1, 3)  # float32, as `kernels` rounds them
        scale = self._unit_scale(image)
        half = [int(math.ceil(self._support() / s)) for s in scale]
        out = []
        for p in pts:
            base = np.floor(p).astype(np.int64)
            lo = tuple(int(max(0, b - h)) for b, h in zip(base, half))
            hi = tuple(int(min(n, b + h + 2)) for b, h, n in zip(base, half, shape))
            if all(h > l for l, h in zip(lo, hi)):
                out.append((lo, hi))
        return out

    # ------------------------------------------------------------------ encoding
    def kernels(self, points: Any, shape: Sequence[int], scale: Sequence[float], device: torch.device,
                dtype: torch.dtype = torch.float32, pet: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(flat voxel indices, values) of every click's local box, all clicks at once; None without clicks.

        Box entries outside the array carry value 0 at index 0 (harmless for max and sum), so the
        sizes never depend on the data (no host synchronisation on CUDA). ``pet`` (X, Y, Z) on the
        same device: the PET channel, needed by encodings that read the image (``uptake``).
        """
        if self.kernel.uses_image and pet is None:
            raise ValueError(f"the {self.encoding!r} click encoding reads the PET channel; none was given")
        shape = tuple(int(s) for s in shape)
        pts = torch.as_tensor(np.asarray(points, dtype=np.float64) if not isinstance(points, torch.Tensor)
                              else points, device=device).to(torch.float32).reshape(-1, 3)
        if pts.shape[0] == 0:
            return None
        weights = None
        if pts.device.type == "cpu" and pts.shape[0] > 1:
            # repeated points (a scribble drawn again) once each: max ignores repeats, sum weighs by the count
            # (on CPU only: the unique count is data-dependent, a host synchronisation on CUDA)
            pts, counts = torch.unique(pts, dim=0, return_counts=True)
            if self.combine == "sum" and int(counts.max()) > 1:
                weights = counts.to(torch.float32)
            if not self.kernel.uses_image and bool(torch.all(pts == torch.floor(pts))):  # voxel clicks (scribbles)
                return self._voxel_kernels(pts.to(torch.int64), weights, shape, scale, dtype)
        support = self._support()
        half = [int(math.ceil(support / s)) for s in scale]
        # window offsets -h..h+1 around floor(c) cover every voxel within the support of a sub-voxel c
        axes = [torch.arange(-h, h + 2, device=device, dtype=torch.float32) for h in half]
        base = torch.floor(pts)  # (N, 3)
        coords = [base[:, a, None] + axes[a][None, :] for a in range(3)]  # each (N, Wa)
        sq = [((coords[a] - pts[:, a, None]) * scale[a]) ** 2 for a in range(3)]
        d2 = sq[0][:, :, None, None] + sq[1][:, None, :, None] + sq[2][:, None, None, :]  # (N, Wx, Wy, Wz)
        inside = d2 <= support * support + 1e-6
        vals = self.kernel.values(d2, self) * inside
        if self.kernel.unit_sum(self):
            # normalise over the whole (unclipped) kernel so each click sums to 1 away from borders
            vals = vals / vals.flatten(1).sum(1).clamp_min(1e-12)[:, None, None, None]
        if weights is not None:
            vals = vals * weights[:, None, None, None]
        valid = [(coords[a] >= 0) & (coords[a] <= shape[a] - 1) for a in range(3)]
        ok = valid[0][:, :, None, None] & valid[1][:, None, :, None] & valid[2][:, None, None, :]
        idx = [coords[a].clamp(0, shape[a] - 1).to(torch.int64) for a in range(3)]
        flat = (idx[0][:, :, None, None] * (shape[1] * shape[2]) + idx[1][:, None, :, None] * shape[2]
                + idx[2][:, None, None, :])
        if self.kernel.uses_image:
            region = uptake_regions(pet.reshape(-1)[flat].to(torch.float32), ok & (d2 <= self.uptake_radius ** 2 + 1e-6),
                                    tuple(half), self.uptake_fraction)
            vals = torch.maximum(vals, region.to(vals.dtype))
        return flat.reshape(-1), (vals * ok).to(dtype).reshape(-1)

    def _template(self, scale: Sequence[float]) -> tuple[torch.Tensor, torch.Tensor]:
        """(offsets (K, 3) int64, values (K,)) of one click on a voxel centre: the kernel's nonzero
        support, computed once per scale (the values `kernels` gives every voxel click)."""
        key = tuple(float(s) for s in scale)
        cache = self.__dict__.setdefault("_templates", {})
        if key not in cache:
            support = self._support()
            half = [int(math.ceil(support / s)) for s in scale]
            grids = torch.meshgrid(*[torch.arange(-h, h + 1, dtype=torch.float32) for h in half], indexing="ij")
            d2 = sum((g * s) ** 2 for g, s in zip(grids, scale))
            inside = d2 <= support * support + 1e-6
            vals = self.kernel.values(d2, self) * inside
            if self.kernel.unit_sum(self):
                vals = vals / vals.sum().clamp_min(1e-12)
            keep = vals != 0
            cache[key] = (torch.stack([g[keep] for g in grids], 1).to(torch.int64), vals[keep])
        return cache[key]

    def _voxel_kernels(self, pts: torch.Tensor, weights: torch.Tensor | None, shape: tuple[int, ...],
                       scale: Sequence[float], dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """`kernels` for clicks on voxel centres (CPU): the one template shifted to every click, only
        its nonzero entries inside the array (the same values, several times fewer entries); clicks
        whose whole template lies inside need no per-entry bounds check."""
        offsets, template = self._template(scale)
        strides = torch.tensor([shape[1] * shape[2], shape[2], 1], dtype=torch.int64)
        size = torch.tensor(shape, dtype=torch.int64)
        flat_offsets = (offsets * strides).sum(-1)
        inner = ((pts + offsets.min(0).values >= 0) & (pts + offsets.max(0).values < size)).all(-1)
        flats, vals = [], []
        for sel in (inner, ~inner):
            part = pts[sel]
            if len(part) == 0:
                continue
            flat = (part * strides).sum(-1)[:, None] + flat_offsets[None, :]
            v = template[None, :].expand(len(part), -1)
            if weights is not None:
                v = weights[sel][:, None] * v
            if sel is inner:
                flats.append(flat.reshape(-1))
                vals.append(v.reshape(-1))
            else:  # clicks near the border: only the entries inside the array
                coords = part[:, None, :] + offsets[None, :, :]
                ok = ((coords >= 0) & (coords < size)).all(-1)
                flats.append(flat[ok])
                vals.append(v[ok])
        return torch.cat(flats), torch.cat(vals).to(dtype)

    def encode(self, points: Any, shape: Sequence[int], scale: Sequence[float],
               device: torch.device, dtype: torch.dtype = torch.float32,
               out: torch.Tensor | None = None, pet: torch.Tensor | None = None) -> torch.Tensor:
        """One channel (X, Y, Z) for the given points (N, 3); all clicks of the kind in one scatter.

        ``out``: a contiguous (X, Y, Z) tensor to write into (it is zeroed first), to avoid a copy.
        ``pet``: the PET channel (X, Y, Z), for encodings that read it.
        """
        if out is None:
            out = torch.zeros(tuple(int(s) for s in shape), dtype=dtype, device=device)
        else:
            out.zero_()
        k = self.kernels(points, shape, scale, device, out.dtype, pet=pet)
        if k is not None:
            self._combine_into(out.view(-1), *k)
        return out

    def _combine_into(self, flat_out: torch.Tensor, flat: torch.Tensor, vals: torch.Tensor) -> None:
        if self.combine == "max":
            flat_out.scatter_reduce_(0, flat, vals, reduce="amax", include_self=True)
        else:
            flat_out.index_add_(0, flat, vals)

    def _subtract_into(self, flat_out: torch.Tensor, flat: torch.Tensor, vals: torch.Tensor) -> None:
        """flat_out -= (bg channel), touching only the voxels of the bg boxes (no full-size temporary)."""
        if self.combine == "sum":
            flat_out.index_add_(0, flat, -vals)
            return
        uniq, inverse = torch.unique(flat, return_inverse=True)
        combined = torch.zeros(uniq.shape[0], dtype=vals.dtype, device=vals.device)
        combined.scatter_reduce_(0, inverse, vals, reduce="amax", include_self=True)
        flat_out.index_add_(0, uniq, -combined)

    def _write_channels(self, image: Any, clicks: Mapping[str, Any] | None, out: torch.Tensor) -> None:
        """Write the click channels into ``out`` ((2 or 1, X, Y, Z), contiguous, floating)."""
        clicks = clicks or {}
        unknown = set(clicks) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown click kinds {sorted(unknown)}; expected {list(KINDS)}")
        shape, scale = tuple(out.shape[1:]), self._unit_scale(image)
        empty = np.zeros((0, 3))
        if out.dtype in (torch.float16, torch.bfloat16):  # accumulate in float32, then round once
            tmp = torch.empty(out.shape, dtype=torch.float32, device=out.device)
            self._write_channels(image, clicks, tmp)
            out.copy_(tmp)
            return
        pet = self._pet(image, out.device) if self.kernel.uses_image else None
        if self.channels == "two":
            for c, kind in enumerate(KINDS):
                self.encode(clicks.get(kind, empty), shape, scale, out.device, out=out[c], pet=pet)
            return
        self.encode(clicks.get("tumor", empty), shape, scale, out.device, out=out[0], pet=pet)
        k = self.kernels(clicks.get("background", empty), shape, scale, out.device, out.dtype, pet=pet)
        if k is not None:
            self._subtract_into(out[0].view(-1), *k)

    def _pet(self, image: Any, device: torch.device) -> torch.Tensor:
        """The input's PET channel (X, Y, Z) on `device`, float32, for the encodings that read it."""
        img = self._as_tensor(image)
        if self.pet_channel >= img.shape[0]:
            raise ValueError(f"click pet_channel {self.pet_channel} is not a channel of an input with "
                             f"{img.shape[0]} channel(s)")
        pet = img[self.pet_channel]
        pet = pet.as_tensor() if hasattr(pet, "as_tensor") else pet
        return pet.to(device=device, dtype=torch.float32)

    @staticmethod
    def _as_tensor(image: Any) -> torch.Tensor:
        img = image if isinstance(image, torch.Tensor) else torch.as_tensor(np.asarray(image))
        if img.ndim != 4:
            raise ValueError(f"image must be channel-first (C, X, Y, Z), got shape {tuple(img.shape)}")
        return img

    def click_channels(self, image: Any, clicks: Mapping[str, Any] | None) -> torch.Tensor:
        """The click channels alone, (2 or 1, X, Y, Z), as a plain torch tensor on the image's device."""
        img = self._as_tensor(image)
        dtype = img.dtype if img.dtype.is_floating_point else torch.float32
        out = torch.empty((self.num_channels, *img.shape[1:]), dtype=dtype, device=img.device)
        self._write_channels(image, clicks, out)
        return out

    def __call__(self, image: Any, clicks: Mapping[str, Any] | None = None) -> Any:  # type: ignore[override]
        img = self._as_tensor(image)
        dtype = img.dtype if img.dtype.is_floating_point else torch.float32
        c = img.shape[0]
        # one output allocation: image channels copied in, click channels written in place
        out = torch.empty((c + self.num_channels, *img.shape[1:]), dtype=dtype, device=img.device)
        out[:c].copy_(img.as_tensor() if hasattr(img, "as_tensor") else img)
        self._write_channels(image, clicks, out[c:])
        if isinstance(image, torch.Tensor):
            return convert_to_dst_type(out, image, dtype=dtype)[0]
        return out.numpy()


class EncodeClicksd(MapTransform):
    """Dictionary version: data[image_key] gets the click channels of data[clicks_key] appended.

    Keyword options are those of a YAML encoding mapping (see `encoder_from_config`).
    A missing clicks entry encodes as no clicks (zero channels). ``drop_clicks=True`` removes the clicks
    entry afterwards (its ragged arrays do not collate into batches).
    """

    def __init__(self, image_key: str = "image", clicks_key: str = "clicks", encoding: str | None = None,
                 drop_clicks: bool = False, allow_missing_keys: bool = False, **kwargs: Any) -> None:
        super().__init__([image_key], allow_missing_keys)
        self.image_key = image_key
        self.clicks_key = clicks_key
        self.drop_clicks = drop_clicks
        # the same keys as a YAML encoding mapping (``norm`` alias included; unknown keys -> ValueError)
        self.encoder = encoder_from_config({"encoding": encoding, **kwargs})

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        if self.image_key not in d:
            if self.allow_missing_keys:
                return d
            raise KeyError(f"EncodeClicksd: no {self.image_key!r} in the data")
        d[self.image_key] = self.encoder(d[self.image_key], d.get(self.clicks_key))
        if self.drop_clicks:
            d.pop(self.clicks_key, None)
        return d


def _normalise_config(config: Mapping[str, Any] | str | None) -> dict[str, Any]:
    if config is None:
        return {}
    if isinstance(config, str):
        return {"encoding": config}
    if not isinstance(config, Mapping):
        raise ValueError(f"click encoding config must be a mapping or an encoding name, got {config!r}")
    unknown = set(config) - _CONFIG_KEYS
    if unknown:
        raise ValueError(f"unknown click encoding option(s) {sorted(unknown)}; expected some of {sorted(_CONFIG_KEYS)}")
    cfg = dict(config)
    if "norm" in cfg:
        cfg["gaussian_norm"] = cfg.pop("norm")
    return cfg


def encoder_from_config(config: Mapping[str, Any] | str | None = None, **overrides: Any) -> EncodeClicks:
    """An EncodeClicks from a YAML mapping, e.g. {encoding: edt, radius: 5, radius_unit: voxel, channels: two}.

    Unknown keys or values raise ValueError naming them. ``norm`` is accepted for ``gaussian_norm``.
    """
    cfg = _normalise_config(config)
    cfg.update(overrides)
    return EncodeClicks(**cfg)


def encoderd_from_config(config: Mapping[str, Any] | str | None = None, image_key: str = "image",
                         clicks_key: str = "clicks", drop_clicks: bool = False) -> EncodeClicksd:
    """The dictionary transform for a YAML encoding mapping (see `encoder_from_config`)."""
    cfg = _normalise_config(config)
    return EncodeClicksd(image_key=image_key, clicks_key=clicks_key, drop_clicks=drop_clicks, **cfg)


def num_click_channels(config: Mapping[str, Any] | str | None = None) -> int:
    """How many channels the configured encoding appends: 2 (fg, bg) or 1 (signed)."""
    return encoder_from_config(config).num_channels
