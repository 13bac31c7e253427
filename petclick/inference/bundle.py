"""Inference of a trained bundle: Auto3DSeg's InferClass and `python -m monai.bundle run inference`.

- `BundleInferer(config_file, **override)` is what a bundle's `scripts/infer.py` exposes as
  `InferClass`. `infer(image_file)` takes the ensemble step's dict ({"image": CT, "pet": PET,
  "clicks": JSON}, paths already joined with dataroot) or a CT path (PET = `_0000` -> `_0001`)
  and returns the mean sigmoid probability of the bundle's repeats as a (1, X, Y, Z) MetaTensor
  on the PET grid (its affine, CT file name), which MONAI thresholds with `sigmoid: true`.
  Auto3DSeg builds a new InferClass per (file, algorithm): predictors are cached per process.
- `run_bundle_inference(...)` is what `configs/inference.yaml`'s `inference` id calls: one case
  to `<output_dir>/<case>.nii.gz` (uint8 mask), optionally `<case>_prob.nii.gz`.
Both load their models with the one loader (`get_predictor`) and predict one step of an
InteractiveSession; clicks follow the click policy of every command (`drop_outside: true` in
inference.yaml drops clicks outside the volume with a warning instead of failing).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from monai.data import MetaTensor

from petclick.core.errors import InputError
from petclick.inference.predictor import EnsemblePredictor
from petclick.inference.predictors import get_predictor
from petclick.inference.session import InteractiveSession
from petclick.io.clickfile import Clicks, read_clicks
from petclick.io.clickpolicy import BUDGET, ClickPolicy, policy_from_flags
from petclick.io.images import load_case, save_volume
from petclick.runtime.checkpoint import find_checkpoints
from petclick.config.bundle import merge_bundle_files

log = logging.getLogger(__name__)
CT_SUFFIX = re.compile(r"_0000(\.nii(\.gz)?)$")


def _device(device: str | None) -> str:
    return device or ("cuda" if torch.cuda.is_available() else "cpu")


def cached_predictor(checkpoints: Sequence[Path], device: str, tta_flip_axes: Sequence[int] = ()) -> EnsemblePredictor:
    """The bundle's ensemble through the one loader, once per (checkpoints, device, TTA) per process."""
    extra = {"tta_flip_axes": tuple(tta_flip_axes)} if tta_flip_axes else {}
    return get_predictor([Path(c) for c in checkpoints], device=device, cached=True, **extra)


def pet_path_for(ct: str | Path) -> Path:
    """The PET file beside a CT file of the autoPET layout (`<case>_0000` -> `<case>_0001`)."""
    ct = Path(ct)
    if not CT_SUFFIX.search(ct.name):
        raise InputError(ct, "cannot derive the PET file: the CT name does not end in _0000.nii[.gz]; give 'pet'")
    return ct.with_name(CT_SUFFIX.sub(r"_0001\1", ct.name))


def case_name(path: str | Path) -> str:
    """Case id from an image file name: without .nii[.gz] and the _0000/_0001 channel suffix."""
    name = re.sub(r"\.nii(\.gz)?$", "", Path(path).name)
    return re.sub(r"_000[01]$", "", name)


def predict_case(predictor: EnsemblePredictor, ct: str | Path, pet: str | Path | None, clicks: str | Path | None,
                 k: int | None, policy: ClickPolicy | str | None = ClickPolicy.STRICT) -> tuple[np.ndarray, np.ndarray]:
    """(probability on the PET grid, PET affine) for one case: one step of an interactive session
    with the first k clicks of each list (None: all), under the click `policy`."""
    from petclick.inference.steps import official_clicks, run_steps

    pet = Path(pet) if pet else pet_path_for(ct)
    case = load_case(ct, pet)
    c = read_clicks(clicks, shape=case.shape, policy=policy, budget=BUDGET) if clicks else Clicks()
    session = InteractiveSession(predictor, case, mode="naive", click_policy=policy, source=clicks)
    (_, pred), = run_steps(session, [k], official_clicks(c))
    return pred.prob, case.affine


class BundleInferer:
    """Auto3DSeg InferClass of a petclick bundle (see module docstring); unknown overrides (the
    ensemble step passes `rank`, `image_save_func`, ...) are ignored."""

    def __init__(self, config_file: str | Sequence[str] | None = None, **override: Any):
        cfg, _ = merge_bundle_files(config_file)  # inference.yaml over hyper_parameters.yaml, as everywhere
        cfg.update({k: v for k, v in override.items()
                    if k in ("k", "device", "checkpoints", "tta_flip_axes", "drop_outside")})
        root = cfg.get("ckpt_path") or (Path(cfg["bundle_root"]) / "model" if cfg.get("bundle_root") else None)
        if root is None:
            raise InputError(config_file, "no ckpt_path/bundle_root: is this a generated bundle's config?")
        self.k = cfg.get("k")
        self.policy = policy_from_flags(bool(cfg.get("drop_outside")))
        self.device = _device(cfg.get("device"))
        self.checkpoints = find_checkpoints(cfg.get("checkpoints") or root)
        self.predictor = cached_predictor(self.checkpoints, self.device, tuple(cfg.get("tta_flip_axes") or ()))

    @torch.no_grad()
    def infer(self, image_file: Any) -> MetaTensor:
        if isinstance(image_file, dict):
            ct, pet, clicks = image_file["image"], image_file.get("pet"), image_file.get("clicks")
        else:
            ct, pet, clicks = image_file, None, None
        prob, affine = predict_case(self.predictor, ct, pet, clicks, self.k, self.policy)
        out = MetaTensor(torch.as_tensor(prob)[None], affine=torch.as_tensor(affine))
        out.meta["filename_or_obj"] = str(ct)
        return out


def run_bundle_inference(bundle_root: str | None, ct: str | None, pet: str | None = None, clicks: str | None = None,
                         k: int | None = None, checkpoints: Any = None, output_dir: str | None = None,
                         save_prob: bool = False, device: str | None = None,
                         tta_flip_axes: Sequence[int] = (), drop_outside: bool = False) -> Path:
    """Predict one case with a trained bundle (or given checkpoints); writes the mask (and the
    probability map) on the PET grid; returns the mask path."""
    if not ct:
        raise InputError("inference.yaml", "give the CT file: --input_ct CT.nii.gz (and --input_pet PET.nii.gz)")
    if not checkpoints and not bundle_root:
        raise InputError("inference.yaml", "no bundle_root and no checkpoints")
    ckpts = find_checkpoints(checkpoints or Path(bundle_root) / "model")
    predictor = cached_predictor(ckpts, _device(device), tuple(tta_flip_axes or ()))
    prob, affine = predict_case(predictor, ct, pet, clicks, k, policy_from_flags(bool(drop_outside)))
    out_dir = Path(output_dir) if output_dir else Path(bundle_root or ".") / "prediction"
    name = case_name(pet or ct)
    mask_path = save_volume(out_dir / f"{name}.nii.gz", (prob >= 0.5).astype(np.uint8), affine)
    if save_prob:
        save_volume(out_dir / f"{name}_prob.nii.gz", prob.astype(np.float32), affine)
    log.info("%s: %d checkpoint(s), mask -> %s", name, len(ckpts), mask_path)
    print(f"{name}: {len(ckpts)} checkpoint(s) -> {mask_path}")
    return mask_path
