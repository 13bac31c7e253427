"""DiNTS architecture codes: the default topology, validation, and the file format.

An architecture code is a plain dict (JSON- and ``torch.load(weights_only=True)``-safe)::

    {"num_blocks": B, "num_depths": D,
     "node_a":      (B+1) x D  0/1  feature node active (row 0: the multi-resolution stem inputs),
     "arch_code_a": B x P      0/1  path active, P = 3*D - 2 paths per block,
     "arch_code_c": B x P      int  cell operation of each path (index into Cell.OPS3D:
                                    0 skip, 1 conv3x3x3, 2 conv3x3x1, 3 conv3x1x3, 4 conv1x3x3),
     "source": "default" | "search", ...}

Path ``p`` of a block goes from resolution level ``ARCH_IN[p]`` to ``ARCH_OUT[p]`` (MONAI's
``TopologyConstruction.arch_code2in/out``): level 0 is the finest.
The MONAI Auto3DSeg dints template's ``arch_code.pth`` (numpy arrays, keys node_a/arch_code_a/
arch_code_c or code_a/code_c) loads too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from petclick.core.atomic import atomic_path, atomic_write_text
from petclick.core.errors import InputError

NUM_CELL_OPS = 5  # len(monai.networks.nets.dints.Cell.OPS3D)
CELL_OPS = ("skip_connect", "conv_3x3x3", "conv_3x3x1", "conv_3x1x3", "conv_1x3x3")
DEFAULT_NUM_BLOCKS = 12
DEFAULT_NUM_DEPTHS = 4


def path_tables(num_depths: int) -> tuple[list[int], list[int], list[int]]:
    """(input level, output level, resolution change -1 down / 0 keep / +1 up) of each of the
    3*D-2 paths of a block, in MONAI's order."""
    n = 3 * num_depths - 2
    p_in = [(i + 1) // 3 - 1 + (i + 1) % 3 for i in range(n)]
    p_out = [m for m in range(num_depths) for _ in range(3)][1:-1]
    p_op = ([-1, 0, 1] * num_depths)[1:-1]
    return p_in, p_out, p_op


def default_arch_code(num_blocks: int = DEFAULT_NUM_BLOCKS, num_depths: int = DEFAULT_NUM_DEPTHS) -> dict[str, Any]:
    """A search-free "ladder" topology: every resolution keeps its own stream through all blocks
    (cell conv 3x3x3); the first half of the blocks also passes features one level down
    (encoder-like), the second half one level up (decoder-like), so every level exchanges
    information with its neighbours as in a U-Net. Cross-level paths use the skip cell: their
    factorized up/down-sampling already convolves (124 M parameters at channel_mul 1, 12 blocks,
    4 depths, against 194 M with conv 3x3x3 there too). All nodes are active."""
    if num_blocks < 2 or num_depths < 1:
        raise InputError("dints arch code", f"need num_blocks >= 2 and num_depths >= 1, got {num_blocks}, {num_depths}")
    _, _, p_op = path_tables(num_depths)
    code_a = [
        [int(op == 0 or (op == -1 and b < num_blocks // 2) or (op == 1 and b >= num_blocks // 2)) for op in p_op]
        for b in range(num_blocks)
    ]
    code_c = [[1 if op == 0 else 0 for op in p_op] for _ in range(num_blocks)]
    node_a = [[1] * num_depths for _ in range(num_blocks + 1)]
    return {
        "num_blocks": num_blocks,
        "num_depths": num_depths,
        "node_a": node_a,
        "arch_code_a": code_a,
        "arch_code_c": code_c,
        "source": "default",
    }


def _as_lists(value: Any) -> Any:
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return np.asarray(value.tolist() if isinstance(value, torch.Tensor) else value).tolist()
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): _as_lists(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_as_lists(v) for v in value]
    return value


def validate_arch_code(code: Mapping[str, Any], source: str | Path = "dints arch code") -> dict[str, Any]:
    """Normalise `code` to plain lists and check that DiNTS can run it; raise InputError naming
    `source` and the problem otherwise. Returns the normalised dict."""
    code = dict(_as_lists(dict(code)))
    for alias, key in (("code_a", "arch_code_a"), ("code_c", "arch_code_c")):
        if key not in code and alias in code:
            code[key] = code.pop(alias)
    missing = [k for k in ("node_a", "arch_code_a", "arch_code_c") if k not in code]
    if missing:
        raise InputError(source, f"architecture code lacks {missing}")
    a = np.asarray(code["arch_code_a"])
    c = np.asarray(code["arch_code_c"])
    node = np.asarray(code["node_a"])
    if a.ndim != 2 or (a.shape[1] + 2) % 3 != 0 or a.shape[1] < 1:
        raise InputError(source, f"arch_code_a must be blocks x (3*depths-2), got shape {a.shape}")
    num_blocks, num_depths = a.shape[0], (a.shape[1] + 2) // 3
    for key, expect in (("num_blocks", num_blocks), ("num_depths", num_depths)):
        if code.get(key) is not None and int(code[key]) != expect:
            raise InputError(source, f"{key}={code[key]} does not match arch_code_a shape {a.shape}")
    if c.shape != a.shape:
        raise InputError(source, f"arch_code_c shape {c.shape} differs from arch_code_a shape {a.shape}")
    if node.shape != (num_blocks + 1, num_depths):
        raise InputError(source, f"node_a must have shape {(num_blocks + 1, num_depths)}, got {node.shape}")
    if not np.isin(a, (0, 1)).all() or not np.isin(node, (0, 1)).all():
        raise InputError(source, "arch_code_a and node_a must be 0/1")
    if c.min() < 0 or c.max() >= NUM_CELL_OPS or not np.issubdtype(c.dtype, np.integer):
        raise InputError(source, f"arch_code_c must hold cell operation indices 0..{NUM_CELL_OPS - 1}")
    p_in, p_out, _ = path_tables(num_depths)
    active_in = node[0].astype(bool)
    for b in range(num_blocks):
        paths = np.flatnonzero(a[b])
        if paths.size == 0:
            raise InputError(source, f"block {b} has no active path")
        dead = [int(p) for p in paths if not active_in[p_in[p]]]
        if dead:
            raise InputError(source, f"block {b}: path(s) {dead} start from an inactive node")
        reached = np.zeros(num_depths, bool)
        reached[[p_out[p] for p in paths]] = True
        if not np.array_equal(reached, node[b + 1].astype(bool)):
            raise InputError(source, f"node_a row {b + 1} {node[b + 1].tolist()} does not match block {b}'s paths")
        active_in = reached
    code.update(num_blocks=int(num_blocks), num_depths=int(num_depths))
    code["arch_code_a"], code["arch_code_c"], code["node_a"] = a.astype(int).tolist(), c.tolist(), node.astype(int).tolist()
    return code


def arch_code_arrays(code: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(node_a, arch_code_a, arch_code_c) as the numpy arrays MONAI's TopologyInstance/DiNTS take."""
    return (
        np.asarray(code["node_a"], dtype=np.float32),
        np.asarray(code["arch_code_a"], dtype=np.float32),
        np.asarray(code["arch_code_c"], dtype=np.int64),
    )


def save_arch_code(arch_code: Mapping[str, Any], path: str | Path) -> Path:
    """Write a validated architecture code: JSON for ``*.json``, otherwise a torch file of plain
    lists (loadable with ``weights_only=True``). Returns the path."""
    path = Path(path)
    code = validate_arch_code(arch_code, source=path)
    if path.suffix.lower() == ".json":
        return atomic_write_text(path, json.dumps(code, indent=1))
    with atomic_path(path) as tmp:
        torch.save(code, tmp)
    return path


def _numpy_safe_globals() -> list[Any]:
    """numpy's array-rebuilding callables and dtype classes: enough to unpickle plain arrays."""
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
    dtype_classes = [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType")]
    return [_reconstruct, np.ndarray, np.dtype, *dtype_classes]


def _torch_load_numpy_ok(path: Path) -> Any:
    """torch.load with weights_only=True, additionally allowing plain numpy arrays (the Auto3DSeg
    dints template saves its arch_code.pth with numpy arrays); no arbitrary code runs."""
    with torch.serialization.safe_globals(_numpy_safe_globals()):
        return torch.load(path, map_location="cpu", weights_only=True)


def load_arch_code(path: str | Path) -> dict[str, Any]:
    """Read an architecture code written by :func:`save_arch_code` or the MONAI dints template."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "architecture code file not found")
    try:
        raw = json.loads(path.read_text()) if path.suffix.lower() == ".json" else _torch_load_numpy_ok(path)
    except InputError:
        raise
    except Exception as exc:  # unreadable/corrupt file
        raise InputError(path, f"cannot read architecture code ({type(exc).__name__}: {exc})") from exc
    if not isinstance(raw, Mapping):
        raise InputError(path, f"architecture code must be a dict, got {type(raw).__name__}")
    return validate_arch_code(raw, source=path)


def resolve_arch_code(kw: Mapping[str, Any]) -> dict[str, Any]:
    """The architecture code a dints build uses: ``arch_code`` or ``arch_code_path`` from `kw`,
    else the default ladder for ``num_blocks``/``num_depths``; checks explicit sizes match."""
    if kw.get("arch_code") is not None and kw.get("arch_code_path") is not None:
        raise InputError("network dints", "give either arch_code or arch_code_path, not both")
    if kw.get("arch_code_path") is not None:
        code = load_arch_code(kw["arch_code_path"])
        source: str | Path = kw["arch_code_path"]
    elif kw.get("arch_code") is not None:
        if not isinstance(kw["arch_code"], Mapping):
            raise InputError("network dints", f"arch_code must be a dict, got {type(kw['arch_code']).__name__}")
        source = "network dints arch_code"
        code = validate_arch_code(kw["arch_code"], source=source)
    else:
        return default_arch_code(
            int(kw.get("num_blocks") or DEFAULT_NUM_BLOCKS), int(kw.get("num_depths") or DEFAULT_NUM_DEPTHS)
        )
    for key in ("num_blocks", "num_depths"):
        if kw.get(key) is not None and int(kw[key]) != code[key]:
            raise InputError(source, f"{key}={kw[key]} requested but the architecture code has {code[key]}")
    return code
