"""The label app's infer tasks: petclick's session behind MONAI Label's InferTask interface.

- `petclick` (type deepedit, labels {"tumor": 1, "background": 0}): 3D Slicer's module sends the
  "tumor" and "background" point lists of every point placed so far (petclick.workflows.label.requests).
- `petclick_auto` (type segmentation): no clicks, the protocol's step 0.
Both share one SessionCache, so an automatic result followed by clicks re-infers incrementally.
A plain InferTask (not BasicInferTask): the session reads, pre-processes and re-infers the case
itself, and BasicInferTask's MONAI pre-transforms (Spacingd in MONAI 1.6.1) fail on the string
`image_path` MONAI Label puts in the request.
"""

from __future__ import annotations

from typing import Any

from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType

from petclick.workflows.label.limits import ANONYMOUS, READER_KEY
from petclick.workflows.label.sessions import SessionCache

LABELS = {"tumor": 1, "background": 0}


class PetclickInfer(InferTask):
    """One task of the app; `interactive` False is the automatic (step 0) task."""

    def __init__(self, cache: SessionCache, interactive: bool, description: str, seg_store=None):
        super().__init__(type=InferType.DEEPEDIT if interactive else InferType.SEGMENTATION, labels=dict(LABELS),
                         dimension=3, description=description)
        self.cache, self.interactive, self.seg_store = cache, interactive, seg_store

    def is_valid(self) -> bool:
        return True

    def __call__(self, request: dict[str, Any]):
        """`request`: MONAI Label's dict (the params merged in, `image` the shown file's path) plus
        the app's `image_id` and the server's reader; returns (mask file, JSON). With a DICOMweb
        datastore the mask is also stored into the study as a DICOM SEG (JSON `seg`: its UIDs; one
        SEG series per reader and image)."""
        image_id = str(request.get("image_id") or "")
        reader = str(request.get(READER_KEY) or ANONYMOUS)
        mask, result = self.cache.infer(image_id, str(request.get("image") or ""), request,
                                        interactive=self.interactive, reader=reader)
        if self.seg_store is not None:
            result["seg"] = self.seg_store.store(image_id, mask, reader)
        return mask, result
