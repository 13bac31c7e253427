"""A label request's points -> petclick Clicks, and the error every bad request becomes.

3D Slicer's MONAI Label module sends, for a model of type `deepedit` with labels
{"tumor": 1, "background": 0}, one point list per label name plus the current segment:
`{"tumor": [[i, j, k], ...], "background": [[i, j, k], ...], "label": "tumor"}` (all points so far,
in placement order, as voxel indices of the shown image: Slicer's RAS -> IJK of the loaded volume,
rounded). A `deepgrow`-style `foreground` list is read as tumour points too. Other keys (label,
client_id, MONAI Label's own) are not points and are left alone.

Points are checked by petclick's click rules (petclick.io.clickfile / clickpolicy, strict): a
malformed list or coordinate, a point outside the image, more than the budget per kind or one
voxel clicked as both kinds is a 422 naming the list, the entry and the problem.
"""

from __future__ import annotations

import errno
from typing import Any, Mapping, Sequence

from petclick.core.errors import InputError
from petclick.io.clickfile import clicks_from_json
from petclick.io.clickpolicy import BUDGET, ClickPolicy, apply_click_policy
from petclick.io.clickset import Clicks

POINT_KEYS = ("tumor", "background")
FOREGROUND_ALIAS = "foreground"
SOURCE = "params"


class LabelRequestError(Exception):
    """A request the app cannot serve: an HTTP status (4xx) and a one-line message for the reader."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = int(status), str(detail)


#: errno of a file the server cannot write -> the answer's status: no space (507), not writable (503)
STORAGE_ERRORS = {errno.ENOSPC: 507, errno.EDQUOT: 507, errno.EFBIG: 507, errno.EROFS: 503, errno.EACCES: 503,
                  errno.EPERM: 503, errno.ENOTDIR: 503, errno.EIO: 503}


def storage_failure(exc: OSError) -> LabelRequestError | None:
    """The 5xx a failed write becomes (None: not a storage failure, a bug of the server)."""
    status = STORAGE_ERRORS.get(exc.errno)
    if status is None:
        return None
    where = exc.filename or "a file"
    return LabelRequestError(status, f"the server cannot write {where}: {exc.strerror}; its scratch folder is full "
                                     "or read-only (ask the administrator)")


def point_lists(params: Mapping[str, Any]) -> dict[str, Any]:
    """The point lists of a request as a plain click-file object ({"tumor": [...], "background": [...]})."""
    if FOREGROUND_ALIAS in params and "tumor" in params:
        raise LabelRequestError(422, "params hold both 'tumor' and 'foreground' points; send one of them")
    out = {k: params[k] for k in POINT_KEYS if k in params}
    if FOREGROUND_ALIAS in params:
        out["tumor"] = params[FOREGROUND_ALIAS]
    return out


def parse_clicks(params: Mapping[str, Any], shape: Sequence[int], budget: int | None = BUDGET) -> Clicks:
    """The clicks of a request checked against an image of `shape`; any problem is a 422."""
    lists = point_lists(params)
    if not lists:
        return Clicks()
    try:
        clicks = clicks_from_json(lists, SOURCE, ClickPolicy.STRICT)
        return apply_click_policy(clicks, shape, SOURCE, ClickPolicy.STRICT, budget)
    except InputError as exc:
        raise LabelRequestError(422, str(exc)) from exc
