"""Report pictures: metric curves against clicks and per-case coronal PET MIPs with outlines.

Figures are built with matplotlib's object API (Figure + Agg canvas), never pyplot, so no
display or global backend is touched.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import nibabel as nib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from petclick.core.atomic import atomic_path

GT_COLOR = "#0072B2"  # blue (Okabe-Ito palette: readable with red-green colour blindness)
PRED_COLOR = "#D55E00"  # vermillion
TUMOR_CLICK_COLOR = "#D55E00"
BACKGROUND_CLICK_COLOR = "#009E73"
SUV_MAX = {"fdg": 7.0, "psma": 10.0}
PANEL_LABELS = {"dice": "Dice", "dmm": "DMM (lesion F1 at IoU >= 0.1)", "fpv": "false-positive volume (mL)",
                "fnv": "false-negative volume (mL)"}


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | Path) -> Path:
    """Save a figure atomically (the format from the final name's suffix)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png")
    return path


def _nan(values: Sequence) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def plot_curves(path: str | Path, series: Mapping[str, dict], title: str = "",
                step_label: str = "clicks of each kind (step)") -> Path:
    """Mean of each metric (Dice, FPV, FNV; DMM too under autopet-v) against the step, with its interquartile band.

    `series` maps a legend label to per-step statistics as aggregate.per_step_stats returns them;
    one panel per metric they hold.
    """
    metrics = [m for m in PANEL_LABELS if m in next(iter(series.values()))]
    fig = _new_figure(13 * len(metrics) / 3, 4)
    axes = np.atleast_1d(fig.subplots(1, len(metrics)))
    for ax, metric in zip(axes, metrics):
        label = PANEL_LABELS[metric]
        for n, (name, stats) in enumerate(series.items()):
            s = stats[metric]
            x = np.arange(len(s["mean"]))
            colour = f"C{n}"
            ax.plot(x, _nan(s["mean"]), "-o", color=colour, ms=3, label=f"{name} mean")
            ax.plot(x, _nan(s["median"]), "--", color=colour, lw=1, label=f"{name} median")
            ax.fill_between(x, _nan(s["q25"]), _nan(s["q75"]), color=colour, alpha=0.15, lw=0)
        ax.set_xlabel(step_label)
        ax.set_ylabel(label)
        ax.set_xticks(range(len(next(iter(series.values()))[metric]["mean"])))
        ax.grid(alpha=0.3)
        if metric in ("dice", "dmm"):
            ax.set_ylim(0, 1)
        else:
            ax.set_ylim(bottom=0)
    axes[0].legend(fontsize=7, loc="lower right")
    fig.suptitle((title + "  " if title else "") + "(lines: mean, dashed: median, band: 25-75th percentile)", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


class CoronalView:
    """Coronal maximum-intensity projection in the reader's orientation.

    Projects along the anterior-posterior axis of the affine; rows run head (top) to feet, columns
    put the patient's right on the viewer's left (radiological convention); the aspect ratio
    follows the voxel spacing.
    """

    def __init__(self, affine: np.ndarray, shape: Sequence[int]):
        try:
            codes = nib.aff2axcodes(affine)
            ap = next(a for a, c in enumerate(codes) if c in "AP")
            lr = next(a for a, c in enumerate(codes) if c in "LR")
            si = next(a for a, c in enumerate(codes) if c in "SI")
        except (StopIteration, ValueError, TypeError):
            codes, (lr, ap, si) = ("R", "A", "S"), (0, 1, 2)
        self.ap, self.lr, self.si = ap, lr, si
        self.flip_rows = codes[si] == "S"
        self.flip_cols = codes[lr] == "R"
        self.shape = tuple(shape)
        spacing = np.linalg.norm(np.asarray(affine)[:3, :3], axis=0)
        self.aspect = float(spacing[si] / spacing[lr])

    def project(self, volume: np.ndarray) -> np.ndarray:
        mip = np.asarray(volume).max(axis=self.ap)
        remaining = [a for a in range(3) if a != self.ap]
        if remaining.index(self.si) == 1:
            mip = mip.T
        if self.flip_rows:
            mip = mip[::-1]
        if self.flip_cols:
            mip = mip[:, ::-1]
        return mip

    def points(self, points: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
        """(column, row) display coordinates of voxel points."""
        if not len(points):
            return np.zeros(0), np.zeros(0)
        p = np.asarray(points, dtype=float).reshape(-1, 3)
        rows, cols = p[:, self.si], p[:, self.lr]
        if self.flip_rows:
            rows = self.shape[self.si] - 1 - rows
        if self.flip_cols:
            cols = self.shape[self.lr] - 1 - cols
        return cols, rows


def save_case_mip(path: str | Path, pet: np.ndarray, affine: np.ndarray, gt: np.ndarray | None,
                  predictions: Mapping[str, np.ndarray], clicks: Mapping[str, dict] | None = None,
                  tracer: str = "unknown", title: str = "", suv_max: float | None = None) -> Path:
    """One PNG: a coronal PET MIP (inverted grey) per prediction; GT outline solid blue, prediction dashed vermillion.

    `predictions` maps a panel title (e.g. "step 0", "step 10") to a mask; `clicks` optionally maps
    the same titles to {"tumor": [...], "background": [...]} drawn as markers.
    """
    view = CoronalView(affine, pet.shape)
    mip = view.project(pet)
    vmax = suv_max or SUV_MAX.get(tracer) or max(float(np.percentile(mip, 99.5)), 1e-6)
    gt_mip = None if gt is None else view.project(gt != 0).astype(np.float32)
    n = max(1, len(predictions))
    rows, cols = mip.shape
    panel_h = 6.0
    panel_w = max(2.0, panel_h * cols / (rows * view.aspect))
    fig = _new_figure(panel_w * n + 0.4, panel_h + 0.8)
    axes = np.atleast_1d(fig.subplots(1, n))
    items = list(predictions.items()) or [("PET", None)]
    for ax, (name, mask) in zip(axes, items):
        ax.imshow(mip, cmap="gray_r", vmin=0, vmax=vmax, aspect=view.aspect, interpolation="nearest")
        if gt_mip is not None and gt_mip.any():
            ax.contour(gt_mip, levels=[0.5], colors=[GT_COLOR], linewidths=2.2)
        if mask is not None:
            pm = view.project(mask != 0).astype(np.float32)
            if pm.any():
                ax.contour(pm, levels=[0.5], colors=[PRED_COLOR], linewidths=1.2, linestyles="--")
        for kind, marker, colour in (("tumor", "+", TUMOR_CLICK_COLOR), ("background", "x", BACKGROUND_CLICK_COLOR)):
            pts = (clicks or {}).get(name, {}).get(kind, [])
            x, y = view.points(pts)
            if x.size:
                ax.scatter(x, y, marker=marker, c=colour, s=70, linewidths=1.8)
        ax.set_title(name, fontsize=9)
        ax.set_axis_off()
    handles = [Line2D([], [], color=GT_COLOR, lw=2.2, label="ground truth"),
               Line2D([], [], color=PRED_COLOR, lw=1.2, ls="--", label="prediction"),
               Line2D([], [], color=TUMOR_CLICK_COLOR, marker="+", ls="", label="tumour click"),
               Line2D([], [], color=BACKGROUND_CLICK_COLOR, marker="x", ls="", label="background click")]
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=7, frameon=False)
    fig.suptitle(f"{title}  (coronal PET MIP, SUV 0-{vmax:g})".strip(), fontsize=9)
    fig.tight_layout(rect=(0, 0.04, 1, 0.97))
    return _save(fig, path)
