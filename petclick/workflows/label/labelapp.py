"""The MONAILabelApp of petclick: a datastore over the studies' images and the two infer tasks.

Studies: an autoPET-layout folder, or a DICOMweb server (its studies cached on the PET grid at start,
each result stored back as a DICOM SEG: dicomweb_studies.py).

Built by MONAI Label from its app folder (petclick/workflows/label/app/main.py) with the studies
folder and the `--conf` strings (petclick.workflows.label.options). The predictor is loaded once
at start-up; the tasks keep one session per reader and image id (sessions.py), whose mask files go
to the scratch folder's results/ (emptied at start: what a killed server left).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from monailabel.datastore.local import LocalDatastore
from monailabel.interfaces.app import MONAILabelApp

import petclick
from petclick.inference.predictors import get_predictor
from petclick.io.dicomweb import is_dicomweb
from petclick.workflows.label.dicomweb_studies import DicomWebStudies, SegStore
from petclick.workflows.label.options import RESULTS, LabelOptions, clean_folder, scratch_for
from petclick.workflows.label.sessions import SessionCache
from petclick.workflows.label.studies import SUFFIXES, images_folder
from petclick.workflows.label.tasks import LABELS, PetclickInfer

log = logging.getLogger(__name__)


class PetclickLabelApp(MONAILabelApp):
    """petclick's interactive session as a MONAI Label app (module docstring)."""

    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]):
        self.options = LabelOptions.from_conf(conf or {})
        # DICOMweb: `petclick label` has read the server's studies into the scratch folder (dicomweb_studies.py)
        self.dicomweb = DicomWebStudies.load(self.options.scratch) if is_dicomweb(studies) else None
        self.images = self.dicomweb.images if self.dicomweb else images_folder(studies, self.options.show)
        self.scratch = Path(self.options.scratch) if self.options.scratch else scratch_for(self.images)
        self.seg_store = SegStore(self.dicomweb) if self.dicomweb else None
        predictor = get_predictor(list(self.options.models), device=self.options.device, cached=True)
        self.results = clean_folder(self.scratch / RESULTS)
        self.cache = SessionCache(predictor, show=self.options.show, mode=self.options.incremental,
                                  max_sessions=self.options.sessions, memory_bytes=self.options.memory_bytes,
                                  tile_cache_mb=self.options.tile_cache_mb, out_dir=self.results,
                                  first=self.options.first, fast_checkpoints=self.options.fast_checkpoints)
        log.info("petclick label: %s images in %s, models %s, scratch %s", self.options.show.upper(), self.images,
                 ", ".join(self.options.models), self.scratch)
        super().__init__(app_dir=app_dir, studies=studies, conf=conf, name="petclick",
                         description="Click-guided lesion segmentation in whole-body PET/CT (petclick)",
                         version=petclick.__version__, labels=dict(LABELS))

    def init_datastore(self) -> LocalDatastore:
        """One image per case, the shown one; id = case id. MONAI Label's files go to the scratch folder."""
        self.scratch.mkdir(parents=True, exist_ok=True)
        return LocalDatastore(str(self.scratch), images_dir=str(self.images), extensions=[f"*{SUFFIXES[self.options.show][0]}"],
                              auto_reload=False)

    def init_infers(self) -> dict[str, PetclickInfer]:
        models = ", ".join(self.options.models)
        return {"petclick": PetclickInfer(self.cache, True, f"petclick interactive: tumour/background points ({models})",
                                          self.seg_store),
                "petclick_auto": PetclickInfer(self.cache, False, f"petclick without clicks, step 0 ({models})",
                                               self.seg_store)}

    def infer(self, request: dict[str, Any], datastore=None):
        """MONAI Label replaces the image id by its path; the tasks need the id too (the session key)."""
        request = dict(request)
        request["image_id"] = request.get("image")
        return super().infer(request, datastore)
