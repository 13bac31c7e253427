"""The studies folder of the label app: which files are images and how a case's CT and PET pair up.

- `--studies` is an autoPET-layout root (its `imagesTr/` is used) or an images folder itself.
- The viewer is shown one image per case: the CT (`<case>_0000.nii.gz`, the default) or the PET
  (`_0001`). MONAI Label's datastore then lists one image per case, and its id is the case id
  (MONAI Label strips the matched suffix). The other image of the pair is found by the naming.
- Why the CT by default: the reader sees anatomy in Slicer's MONAI Label module and places points
  there; the network reads both images anyway. autoPET CTs lie on the PET grid, so the CT's voxel
  indices are the PET indices the session takes (a pair on two grids is refused: `check_pair`).
- MONAI Label writes its datastore file, lock and submitted labels into a scratch folder
  (petclick.workflows.label.options.scratch_for), never into the studies folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from petclick.core.errors import InputError
from petclick.io.images import AFFINE_ATOL_MM, Volume
from petclick.workflows.label.requests import LabelRequestError

CT_SUFFIX, PET_SUFFIX = "_0000.nii.gz", "_0001.nii.gz"
#: shown image -> (its suffix, its partner's suffix)
SUFFIXES = {"ct": (CT_SUFFIX, PET_SUFFIX), "pet": (PET_SUFFIX, CT_SUFFIX)}
IMAGES_SUBFOLDER = "imagesTr"


def images_folder(studies: str | Path, show: str = "ct") -> Path:
    """The folder holding the shown images: `<studies>/imagesTr` of an autoPET root, else `<studies>`."""
    root = Path(studies)
    if not root.is_dir():
        raise InputError(root, "studies folder not found")
    suffix = SUFFIXES[show][0]
    for folder in (root / IMAGES_SUBFOLDER, root):
        if folder.is_dir() and any(folder.glob("*" + suffix)):
            return folder.resolve()
    raise InputError(root, f"no *{suffix} images here or in {IMAGES_SUBFOLDER}/ (expected the autoPET layout: "
                           f"{IMAGES_SUBFOLDER}/<case>_0000.nii.gz CT, <case>_0001.nii.gz PET)")


def pair_of(shown: str | Path, show: str = "ct") -> tuple[Path, Path]:
    """(CT, PET) paths of the case whose shown image is `shown`; a missing partner is a 409."""
    shown = Path(shown)
    own, other = SUFFIXES[show]
    if not shown.name.endswith(own):
        raise LabelRequestError(409, f"{shown.name} is not a {show.upper()} image (*{own})")
    partner = shown.with_name(shown.name[: -len(own)] + other)
    if not partner.is_file():
        raise LabelRequestError(409, f"{shown.name} has no partner image {partner.name} in its folder")
    return (shown, partner) if show == "ct" else (partner, shown)


def check_pair(ct: Volume, pet: Volume, case: str) -> None:
    """A 409 unless CT and PET share one voxel grid (shape and affine, as autoPET's pairs do)."""
    if ct.array.shape != pet.array.shape:
        raise LabelRequestError(409, f"case {case}: CT shape {ct.array.shape} and PET shape {pet.array.shape} "
                                     "differ; the CT must lie on the PET grid")
    if not np.allclose(ct.affine, pet.affine, atol=AFFINE_ATOL_MM):
        worst = float(np.max(np.abs(np.asarray(ct.affine) - np.asarray(pet.affine))))
        raise LabelRequestError(409, f"case {case}: CT and PET affines differ (by up to {worst:.3g} mm); "
                                     "the CT must lie on the PET grid")
