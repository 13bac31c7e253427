"""ROI (patch size) rules derived from each network's downsampling, not per dataset.

Each network module states its divisors (NetworkSpec.roi_divisors: segresnet 2**(len(blocks_down)
- 1), or per axis with `resolution`; dints 2**(num_depths - 1 + use_downsample); swinunetr
patch_size**5); the functions here apply them to a requested ROI and an image.

Instance normalisation fails on a 1-voxel feature map, so an ROI whose every axis equals one
divisor is too small to train: :func:`fit_roi` then doubles the longest axis.
"""

from __future__ import annotations

from typing import Any, Sequence

from petclick.core.errors import InputError
from petclick.networks.factory import check_name, network_kwargs, network_spec


def roi_divisors(name: str, **kwargs: Any) -> tuple[int, int, int]:
    """Per-axis multiple that every ROI axis of network `name` (with YAML `kwargs`) must be (the
    network module's rule; an unknown name is an InputError listing the known ones)."""
    spec = network_spec(name)
    return tuple(int(d) for d in spec.roi_divisors(network_kwargs(spec.name, **kwargs)))  # type: ignore[return-value]


def roi_divisor(name: str, **kwargs: Any) -> int:
    """The single multiple every ROI axis must be (the largest per-axis divisor; all are powers of 2)."""
    return max(roi_divisors(name, **kwargs))


def _as_shape(values: Sequence[int] | int, what: str) -> tuple[int, int, int]:
    vals = (values,) * 3 if isinstance(values, int) else tuple(values)
    if len(vals) != 3 or any(int(v) != v or int(v) < 1 for v in vals):
        raise InputError(what, f"must be 3 positive integers, got {values!r}")
    return tuple(int(v) for v in vals)  # type: ignore[return-value]


def _check_divisible(roi: Sequence[int] | int, name: str, **kwargs: Any) -> tuple[int, int, int]:
    shape = _as_shape(roi, "roi")
    div = roi_divisors(name, **kwargs)
    bad = [a for a in range(3) if shape[a] % div[a]]
    if bad:
        near = tuple(max(div[a], round(shape[a] / div[a]) * div[a]) for a in range(3))
        raise InputError(
            "roi",
            f"{list(shape)} is not divisible by {list(div)} for network {check_name(name)} (axes {bad}); "
            f"nearest valid ROI: {list(near)}",
        )
    return shape


def check_roi(roi: Sequence[int] | int, name: str, **kwargs: Any) -> tuple[int, int, int]:
    """Return `roi` as a 3-tuple if every axis is a multiple of the network's divisor and the
    coarsest feature map has more than one voxel (instance norm needs it); else raise InputError
    saying which axes fail and the nearest valid sizes."""
    shape = _check_divisible(roi, name, **kwargs)
    div = roi_divisors(name, **kwargs)
    if all(shape[a] == div[a] for a in range(3)):
        raise InputError(
            "roi",
            f"{list(shape)} leaves a 1-voxel coarsest feature map in network {check_name(name)}; "
            f"use at least {[2 * div[0], div[1], div[2]]} (two divisors on one axis)",
        )
    return shape


def fit_roi(roi: Sequence[int] | int, image_shape: Sequence[int], name: str, **kwargs: Any) -> tuple[int, int, int]:
    """The ROI to train/infer with: the requested `roi` (which must already be divisible) shrunk on every axis where the image is smaller, rounded down to a
    multiple of the divisor so a crop stays inside the data, never below one divisor (the
    sliding window pads images smaller than that). If all axes end at one divisor, the axis where
    the image is longest gets two, so the coarsest feature map has more than one voxel."""
    shape = _check_divisible(roi, name, **kwargs)
    image = _as_shape(image_shape, "image_shape")
    div = roi_divisors(name, **kwargs)
    out = [max(div[a], min(shape[a], (image[a] // div[a]) * div[a])) for a in range(3)]
    if all(out[a] == div[a] for a in range(3)):
        longest = max(range(3), key=lambda a: (image[a], -a))
        out[longest] = 2 * div[longest]
    return tuple(out)  # type: ignore[return-value]


def cover_roi(roi: Sequence[int] | int, image_shape: Sequence[int], name: str, max_growth: float = 1.25,
              **kwargs: Any) -> tuple[int, int, int]:
    """The sliding-window ROI for inference, fitted to the image: on every axis the image does not
    exceed by more than `max_growth` times, the window is the image length rounded up to the
    network's divisor, so one window covers that axis (the inferer pads the few extra voxels)
    instead of two mostly overlapping windows, or one window mostly made of padding.

    Examples: a 192x192x320 training ROI on a 400x400x326 volume gives 192x192x336 (16 windows
    instead of 32 at overlap 0.625); a 64x64x96 ROI on a 48x48x64 image gives 48x48x64 (2.7 times
    fewer voxels per pass). Fully convolutional networks accept any divisible window. A window of
    one divisor on every axis (a 1-voxel bottleneck) is never returned: the ROI is kept instead.
    """
    shape = _as_shape(roi, "roi")
    image = _as_shape(image_shape, "image_shape")
    div = roi_divisors(name, **kwargs)
    out = []
    for a in range(3):
        covered = -(-image[a] // div[a]) * div[a]
        out.append(covered if image[a] <= max_growth * shape[a] else shape[a])
    if all(out[a] == div[a] for a in range(3)):
        return shape
    return tuple(out)  # type: ignore[return-value]
