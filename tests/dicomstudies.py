"""Small DICOM PET/CT studies for the DICOM tests: phantom cases exported as petclick's export does.

- `write_dicom_cohort(root, cases)`: phantom cases (32x28x40) in the autoPET layout under `root`,
  exported to `root/dicom/<case>/CT|PT` (CT 2x finer per axis); returns (root, studies.json data).
- `edit_series(folder, **changes)` / `drop_tag(...)`: rewrite every file of a series (bad inputs).
"""

from __future__ import annotations

import json
from pathlib import Path

SHAPE = (32, 28, 40)
CASES = (("fdg_0a1b2c3d4e_12-03-2015", "fdg", 1), ("psma_0f0e0d0c0b_02-11-2019", "psma", 2))


def write_dicom_cohort(root: Path, cases=CASES, shape=SHAPE) -> tuple[Path, dict]:
    from petclick.phantoms.case import generate_case
    from petclick.phantoms.cohort import write_case
    from petclick.workflows.dicom_export import export_cohort

    for case_id, tracer, seed in cases:
        write_case(root, generate_case(case_id, seed, shape=shape, tracer=tracer))
    index = export_cohort(root, root / "dicom")
    return root, json.loads(index.read_text())


def rewrite_series(folder: Path, edit) -> None:
    """Apply `edit(dataset)` to every file of a series folder, in place."""
    import pydicom

    for path in sorted(Path(folder).glob("*.dcm")):
        ds = pydicom.dcmread(path)
        edit(ds)
        ds.save_as(path, enforce_file_format=True)
