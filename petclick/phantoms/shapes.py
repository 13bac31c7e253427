"""Geometric primitives in body-frame mm, evaluated only inside their own bounding box.

Each shape gives `bounds()` (lo, hi corners in mm) and `q(grid, sl)`: a float32 array over the
box of slices `sl` that is <= 1 inside the shape (a normalised squared radius for ellipsoids
and capsules). Painting a shape costs its bounding box, never the whole volume.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from petclick.phantoms.grid import Grid


def rotation(rng: np.random.Generator | None = None, axis: str | None = None, angle: float = 0.0) -> np.ndarray:
    """3x3 rotation: about one body axis ('u', 'v', 'w') by `angle` radians, or uniformly random from `rng`."""
    if axis is None:
        q = rng.standard_normal(4)
        q /= np.linalg.norm(q)
        a, b, c, d = q
        return np.array([[a*a+b*b-c*c-d*d, 2*(b*c-a*d), 2*(b*d+a*c)],
                         [2*(b*c+a*d), a*a-b*b+c*c-d*d, 2*(c*d-a*b)],
                         [2*(b*d-a*c), 2*(c*d+a*b), a*a-b*b-c*c+d*d]])
    c, s = np.cos(angle), np.sin(angle)
    i, j = {"u": (1, 2), "v": (0, 2), "w": (0, 1)}[axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


class Shape:
    """Interface of a primitive: its mm bounding box and its inside measure q (<= 1 inside)."""

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def q(self, grid: Grid, sl) -> np.ndarray:
        raise NotImplementedError

    def box(self, grid: Grid, margin_vox: int = 0):
        lo, hi = self.bounds()
        return grid.slices(lo, hi, margin_vox)

    def mask(self, grid: Grid, margin_vox: int = 0, scale: float = 1.0):
        """(slices, boolean mask) of the voxels inside the shape (q <= scale**2); (None, None) if off-grid."""
        sl = self.box(grid, margin_vox)
        if sl is None:
            return None, None
        return sl, self.q(grid, sl) <= scale * scale


@dataclass
class Ellipsoid(Shape):
    center: np.ndarray
    axes: np.ndarray
    rot: np.ndarray | None = None  # columns: the ellipsoid's own axes in body coordinates

    def __post_init__(self) -> None:
        self.center = np.asarray(self.center, dtype=float)
        self.axes = np.asarray(self.axes, dtype=float)

    def bounds(self):
        if self.rot is None:
            ext = self.axes
        else:
            ext = np.sqrt(((self.rot * self.axes[None, :]) ** 2).sum(axis=1))
        return self.center - ext, self.center + ext

    def q(self, grid: Grid, sl) -> np.ndarray:
        u, v, w = grid.coords(sl)
        du, dv, dw = u - np.float32(self.center[0]), v - np.float32(self.center[1]), w - np.float32(self.center[2])
        if self.rot is None:
            a = self.axes.astype(np.float32)
            return (du / a[0]) ** 2 + (dv / a[1]) ** 2 + (dw / a[2]) ** 2
        out = None
        for n in range(3):
            r = self.rot[:, n].astype(np.float32) / np.float32(self.axes[n])
            term = (du * r[0] + dv * r[1]) + dw * r[2]
            term *= term
            out = term if out is None else out + term
        return out

    def surface_distance(self, direction: np.ndarray) -> float:
        """Distance from the centre to the surface along a unit direction (body frame)."""
        d = np.asarray(direction, float)
        local = d if self.rot is None else self.rot.T @ d
        return float(1.0 / np.sqrt(np.sum((local / self.axes) ** 2)))

    def scaled(self, factor: float) -> "Ellipsoid":
        return Ellipsoid(self.center.copy(), self.axes * factor, self.rot)


@dataclass
class Capsule(Shape):
    """A tube of `radius` around the segment p0-p1 (vessels, airways, long bones, rami)."""

    p0: np.ndarray
    p1: np.ndarray
    radius: float

    def __post_init__(self) -> None:
        self.p0 = np.asarray(self.p0, dtype=float)
        self.p1 = np.asarray(self.p1, dtype=float)

    def bounds(self):
        return np.minimum(self.p0, self.p1) - self.radius, np.maximum(self.p0, self.p1) + self.radius

    def q(self, grid: Grid, sl) -> np.ndarray:
        u, v, w = grid.coords(sl)
        d = (self.p1 - self.p0).astype(np.float32)
        du, dv, dw = u - np.float32(self.p0[0]), v - np.float32(self.p0[1]), w - np.float32(self.p0[2])
        t = (du * (d[0] / np.float32(d @ d)) + dv * (d[1] / np.float32(d @ d))) + dw * (d[2] / np.float32(d @ d))
        np.clip(t, 0.0, 1.0, out=t)
        out = (du - t * d[0]) ** 2
        out += (dv - t * d[1]) ** 2
        out += (dw - t * d[2]) ** 2
        out *= np.float32(1.0 / self.radius ** 2)
        return out


@dataclass
class Extrusion(Shape):
    """A stack of axial super-ellipses whose centre and semi-axes vary with depth w (piecewise linear).

    Knot arrays: w (increasing), cu, cv (centre), a (lateral semi-axis), b_ant / b_post (anterior and
    posterior semi-axes), `power` the super-ellipse exponent (2 = ellipse, larger = boxier).
    """

    w: np.ndarray
    cu: np.ndarray
    cv: np.ndarray
    a: np.ndarray
    b_ant: np.ndarray
    b_post: np.ndarray
    power: float = 2.0

    def bounds(self):
        lo = np.array([np.min(self.cu - self.a), np.min(self.cv - self.b_ant), self.w[0]])
        hi = np.array([np.max(self.cu + self.a), np.max(self.cv + self.b_post), self.w[-1]])
        return lo, hi

    def profile(self, w: np.ndarray):
        """Centre and semi-axes at depths w (1-D arrays)."""
        f = lambda y: np.interp(w, self.w, y).astype(np.float32)  # noqa: E731
        return f(self.cu), f(self.cv), np.maximum(f(self.a), 1e-3), np.maximum(f(self.b_ant), 1e-3), np.maximum(f(self.b_post), 1e-3)

    def q(self, grid: Grid, sl) -> np.ndarray:
        u, v, w = grid.coords(sl)
        cu, cv, a, ba, bp = self.profile(w[0, 0, :])
        tu = np.abs((u - cu[None, None, :]) / a[None, None, :])           # (nx, 1, nz)
        dv = v - cv[None, None, :]                                        # (1, ny, nz)
        tv = np.abs(np.where(dv < 0, dv / ba[None, None, :], dv / bp[None, None, :]))
        p = np.float32(self.power)
        if self.power != 2.0:
            tu, tv = tu ** p, tv ** p
        else:
            tu, tv = tu * tu, tv * tv
        out = tu + tv                                                     # (nx, ny, nz): the only 3-D op
        outside = (w[0, 0, :] < self.w[0]) | (w[0, 0, :] > self.w[-1])
        if outside.any():
            out[:, :, outside] = np.inf
        return out

    def shrunk(self, by_mm: np.ndarray | float) -> "Extrusion":
        """The same extrusion with every semi-axis reduced by `by_mm` (per knot or scalar), for inner layers."""
        return Extrusion(self.w, self.cu, self.cv, np.maximum(self.a - by_mm, 1e-3),
                         np.maximum(self.b_ant - by_mm, 1e-3), np.maximum(self.b_post - by_mm, 1e-3), self.power)


def paint(organs: np.ndarray, grid: Grid, shape: Shape, label: int, only: tuple[int, ...] | None = None,
          scale: float = 1.0):
    """Write `label` into `organs` inside `shape` (only over voxels whose label is in `only`, if given).

    Returns (slices, mask of the voxels written) for follow-up edits, or (None, None)."""
    sl, mask = shape.mask(grid, scale=scale)
    if sl is None:
        return None, None
    view = organs[sl]
    if only is not None:
        mask &= np.isin(view, only)
    view[mask] = label
    return sl, mask
