"""petclick: click-guided lesion segmentation in whole-body PET/CT on MONAI Auto3DSeg."""

from petclick.core.threads import set_omp_defaults as _set_omp_defaults

__version__ = "0.1.0"

_set_omp_defaults()  # before torch loads OpenMP (see petclick/core/threads.py)
