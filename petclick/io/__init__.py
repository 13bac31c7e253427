"""Reading and writing petclick's data: volumes, click files (under a click policy) and datalists."""

from petclick.core.atomic import atomic_open, atomic_path, atomic_write_text
from petclick.io.clickfile import Clicks, read_click_file, read_clicks, validate_clicks, write_clicks
from petclick.io.clickpolicy import BUDGET, ClickDrop, ClickPolicy, apply_click_policy
from petclick.io.images import CaseVolumes, Volume, load_case, load_volume, save_volume, voxel_volume_ml

__all__ = [
    "BUDGET",
    "CaseVolumes",
    "ClickDrop",
    "ClickPolicy",
    "Clicks",
    "Volume",
    "apply_click_policy",
    "atomic_open",
    "atomic_path",
    "atomic_write_text",
    "load_case",
    "load_volume",
    "read_click_file",
    "read_clicks",
    "save_volume",
    "validate_clicks",
    "voxel_volume_ml",
    "write_clicks",
]
