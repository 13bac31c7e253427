"""What monailabel 0.8.5 needs to import under petclick's stack (torch 2.13.0+cpu, pydicom 3, numpy 2).

Applied once, before `monailabel` is imported (petclick.workflows.label.server does it):

1. pydicom 3 removed `pydicom._storage_sopclass_uids`, which pydicom-seg 0.4.1 (monailabel's
   DICOM-SEG converter) imports at module level; monailabel.interfaces.app imports that converter
   through its DICOM datastore, so the server would not start. The UIDs live in `pydicom.uid` now:
   the old module name is aliased to it. (Pinning pydicom<3 instead would also need pynetdicom<3 and
   dicomweb-client<0.60.)
2. torchvision: the only release pinned to torch 2.13.0 (0.28.0) is a CUDA build whose extension
   needs libtorch_cuda.so, so `import torchvision` fails under the CPU torch, and the lean install
   leaves it out. monailabel imports only `torchvision.utils.make_grid` / `save_image`
   (monailabel.transform.post, deepedit handlers: training visualisation and `Restored`, neither
   used here). When torchvision cannot be imported, a stub module provides those two names, raising
   if ever called; its `__version__` "0.0" makes MONAI's optional_import treat it as too old.
"""

from __future__ import annotations

import importlib
import logging
import sys
import types

log = logging.getLogger(__name__)
STUB_VERSION = "0.0"


def alias_pydicom_sop_classes() -> bool:
    """Alias pydicom._storage_sopclass_uids to pydicom.uid when the old module is gone; True if aliased."""
    try:
        importlib.import_module("pydicom._storage_sopclass_uids")
        return False
    except ImportError:
        import pydicom.uid

        sys.modules["pydicom._storage_sopclass_uids"] = pydicom.uid
        return True


def stub_torchvision() -> str | None:
    """Install the torchvision stub when torchvision cannot be imported; returns why (None: not needed)."""
    try:
        importlib.import_module("torchvision")
        return None
    except Exception as exc:  # ModuleNotFoundError, or RuntimeError from the CUDA build's operators
        reason = f"{type(exc).__name__}: {exc}"
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]

    def unavailable(*_args, **_kwargs):
        raise RuntimeError(f"torchvision is not available here ({reason}); petclick's label app does not use it")

    package, utils = types.ModuleType("torchvision"), types.ModuleType("torchvision.utils")
    package.__version__ = STUB_VERSION
    package.utils = utils
    utils.make_grid = utils.save_image = unavailable
    sys.modules.update({"torchvision": package, "torchvision.utils": utils})
    return reason


def apply() -> list[str]:
    """Apply both shims where needed; returns a line per shim applied (the server logs them)."""
    applied = []
    if alias_pydicom_sop_classes():
        applied.append("pydicom._storage_sopclass_uids -> pydicom.uid (pydicom 3 under pydicom-seg 0.4.1)")
    reason = stub_torchvision()
    if reason is not None:
        applied.append(f"torchvision stub (make_grid, save_image): {reason}")
    for line in applied:
        log.info("monailabel shim: %s", line)
    return applied
