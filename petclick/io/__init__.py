"""Reading and writing petclick's data: volumes, click files and datalists."""

from petclick.io.clickfile import Clicks, read_clicks, validate_clicks, write_clicks
from petclick.io.images import CaseVolumes, Volume, load_case, load_volume, save_volume, voxel_volume_ml

__all__ = [
    "CaseVolumes",
    "Clicks",
    "Volume",
    "load_case",
    "load_volume",
    "read_clicks",
    "save_volume",
    "validate_clicks",
    "voxel_volume_ml",
    "write_clicks",
]
