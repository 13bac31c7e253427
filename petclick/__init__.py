"""petclick: click-guided lesion segmentation in whole-body PET/CT on MONAI Auto3DSeg."""

__version__ = "0.1.0"
