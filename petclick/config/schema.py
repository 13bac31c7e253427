"""The known keys of a bundle config and the rule each value must follow: the registry a new
feature extends in one place.

A key is known when it has a default in a preset (petclick/config/presets.py: its type is then
checked against that default's type) or an entry here (a range, a set of choices, or a key with no
default, such as `network.init_checkpoint`). A new hyper-parameter is its default in presets.py,
plus a `register_key` line here when it needs more than a type check. Defaults live only in the
presets; this file states rules, never values.

Unknown keys are kept and reported as a warning (not an error): a bundle template may carry keys of
its own (the dints `search` section), and a key that one feature adds is still read while another
branch registers it. A warning names the file and the key, so a typo is seen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from petclick.config.presets import AUTOPET, PRESETS

#: The sections of a training config (train.py reads them from the bundle's configs).
SECTIONS = ("network", "data", "augment", "clicks", "training", "infer")


@dataclass(frozen=True)
class Rule:
    """`check(value)` returns None when the value is valid, else what is wrong with it."""

    check: Callable[[Any], str | None]
    expects: str  # what the value must be, for readers of the registry (and error messages)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


def number(lo: float | None = None, hi: float | None = None, *, integer: bool = False, lo_open: bool = False,
           hi_open: bool = False, none: bool = False, allow: Sequence[str] = ()) -> Rule:
    """A number (an integer with `integer`) in [lo, hi] (open ends with lo_open / hi_open); `none`:
    null allowed; `allow`: words also accepted (e.g. "auto")."""
    lo_s = "" if lo is None else f"{'>' if lo_open else '>='} {lo}"
    hi_s = "" if hi is None else f"{'<' if hi_open else '<='} {hi}"
    what = ("an integer" if integer else "a number") + (f" {lo_s}" if lo_s else "") + (
        f"{' and ' if lo_s else ' '}{hi_s}" if hi_s else "")
    what += "".join(f" or {a!r}" for a in allow) + (" or null" if none else "")

    def check(v: Any) -> str | None:
        if (v is None and none) or (isinstance(v, str) and v in allow):
            return None
        if not _is_number(v) or (integer and float(v) != int(v)):
            return f"must be {what}, got {v!r}"
        f = float(v)
        if lo is not None and (f < lo or (lo_open and f == lo)) or hi is not None and (f > hi or (hi_open and f == hi)):
            return f"must be {what}, got {v!r}"
        return None

    return Rule(check, what)


def numbers(n: int | None, lo: float | None = None, *, integer: bool = False, lo_open: bool = False,
            none: bool = False, allow: Sequence[str] = ()) -> Rule:
    """A list of `n` numbers (any length when None), each >= lo (> lo with lo_open)."""
    item = number(lo, integer=integer, lo_open=lo_open)
    what = f"a list of {n if n else 'any number of'} {'integers' if integer else 'numbers'}" + (
        f" {'>' if lo_open else '>='} {lo}" if lo is not None else "")
    what += "".join(f" or {a!r}" for a in allow) + (" or null" if none else "")

    def check(v: Any) -> str | None:
        if (v is None and none) or (isinstance(v, str) and v in allow):
            return None
        if not isinstance(v, (list, tuple)) or (n is not None and len(v) != n) or any(item.check(x) for x in v):
            return f"must be {what}, got {v!r}"
        return None

    return Rule(check, what)


def choice(*values: Any, none: bool = False) -> Rule:
    what = "one of " + ", ".join(repr(v) for v in values) + (" or null" if none else "")
    return Rule(lambda v: None if (v is None and none) or v in values else f"must be {what}, got {v!r}", what)


def of_type(kind: type | tuple[type, ...], what: str, none: bool = True) -> Rule:
    def check(v: Any) -> str | None:
        if (v is None and none) or (isinstance(v, kind) and not (isinstance(v, bool) and kind is not bool)):
            return None
        return f"must be {what}{' or null' if none else ''}, got {v!r}"

    return Rule(check, what)


def _organ_head_problem(v: Any) -> str | None:
    """What is wrong with a `network.organ_head` value (None: valid). Organ names are checked
    against the organ label table when training starts (petclick.training.organs)."""
    if v is None:
        return None
    if not isinstance(v, Mapping):
        return f"must be a mapping {{labels: [...], weight: w}} or null, got {v!r}"
    unknown = sorted(set(v) - {"labels", "weight", "loss"})
    if unknown:
        return f"unknown key(s) {unknown}; accepted: labels, weight, loss"
    labels = v.get("labels")
    if not isinstance(labels, (list, tuple)) or not labels:
        return f"labels must be a non-empty list of organ label values or names, got {labels!r}"
    seen: list[Any] = []
    for item in labels:
        group = item if isinstance(item, (list, tuple)) else [item]
        for x in group:
            ok = (isinstance(x, int) and not isinstance(x, bool) and x >= 1) or (isinstance(x, str) and x.strip())
            if not ok:
                return (f"labels: {x!r} is neither an organ label value (an integer >= 1) nor an organ name; "
                        "an item may also be a list of them (one class)")
            if x in seen:
                return f"labels: {x!r} is listed twice"
            seen.append(x)
        if not group:
            return "labels: an empty list is not a class"
    weight = v.get("weight", 1.0)
    if not _is_number(weight) or float(weight) <= 0:
        return f"weight must be a number > 0, got {weight!r}"
    if v.get("loss", "dice_ce") not in ("dice_ce", "ce"):
        return f"loss must be 'dice_ce' or 'ce', got {v.get('loss')!r}"
    return None


ORGAN_HEAD = Rule(_organ_head_problem, "null or {labels: [organ values or names, ...], weight: w > 0, loss: dice_ce|ce}")
FLAG = of_type(bool, "true or false", none=False)
TEXT = of_type(str, "a string")
MAPPING = of_type(Mapping, "a mapping")
ANY = Rule(lambda v: None, "anything")

#: Rules by dotted key ("training.lr"); top-level keys have no dot. Extended with `register_key`.
KEYS: dict[str, Rule] = {}


def register_key(path: str, rule: Rule) -> Rule:
    """Make `path` a known key with its rule (one line per new feature that needs a rule)."""
    KEYS[path] = rule
    return rule


for _path, _rule in {
    # what fill_template_config writes about the bundle (petclick.auto3dseg.algo)
    "algo": TEXT, "fold": number(0, integer=True), "preset": choice(*PRESETS), "num_repeats": number(1, integer=True),
    "repeats": numbers(None, 0, integer=True, none=True), "bundle_root": TEXT, "ckpt_path": TEXT, "datalist": TEXT,
    "dataroot": TEXT, "analysed_shape": numbers(3, 1), "analysed_spacing": numbers(3, 0, lo_open=True),
    "pet_stats": MAPPING, "search": MAPPING, "plan": MAPPING,   # plan: the run plan's record (petclick.training.plan)
    # inference.yaml (petclick.inference.bundle.run_bundle_inference)
    "input_ct": TEXT, "input_pet": TEXT, "input_clicks": TEXT, "k": number(0, integer=True, none=True),
    "checkpoints": ANY, "output_dir": TEXT, "save_prob": FLAG, "device": TEXT,
    "tta_flip_axes": numbers(None, 0, integer=True, none=True), "inference": ANY,
    # sections
    "network.name": of_type(str, "a network name", none=False), "network.kwargs": MAPPING,
    "network.output_prior": number(0, 1, lo_open=True, hi_open=True, none=True),
    "network.init_checkpoint": TEXT, "network.organ_head": ORGAN_HEAD, "network.image_channels": number(1, integer=True),
    "data.spacing": numbers(3, 0, lo_open=True, none=True, allow=("auto",)),
    "data.ct_window": numbers(2), "data.pet_clip": numbers(2, 0, allow=("auto",)),
    "data.pet_scale": choice("linear", "log"),
    "data.roi": numbers(3, 1, integer=True), "data.pos": number(0), "data.neg": number(0),
    "data.sampler": choice("posneg", "uptake"),   # petclick.training.sampling.SAMPLERS
    "data.sampler_ratios": numbers(3, 0),
    "data.num_crops": number(1, integer=True), "data.batch_size": number(1, integer=True),
    "data.cache_rate": number(0, 1, allow=("auto",)), "data.num_workers": number(0, integer=True),
    "data.cache_dtype": choice("auto", "float16", "bfloat16", "float32", none=True), "data.crop_body": FLAG,
    "data.cache_memory_fraction": number(0, 1, lo_open=True), "data.cache_dir": TEXT,   # petclick.training.plan
    "data.gpu_memory_fraction": number(0, 1, lo_open=True, none=True),                  # petclick.training.gpuplan
    "data.max_batch_size": number(1, integer=True, none=True),
    "augment.prob": number(0, 1), "augment.flip_prob": number(0, 1), "augment.rotate_deg": number(0),
    "augment.scale": number(0), "augment.smooth_sigma": numbers(2, 0), "augment.noise_std": number(0),
    "augment.shift": number(0), "augment.scale_intensity": number(0),
    "clicks.max_clicks": number(0, integer=True), "clicks.curriculum": MAPPING, "clicks.encoding": MAPPING,
    "clicks.val_steps": numbers(None, 0, integer=True),
    "training.num_epochs": number(1, integer=True, allow=("auto",)), "training.target_iterations": number(1, integer=True),
    "training.num_iterations_per_epoch": number(1, integer=True, none=True), "training.lr": number(0, lo_open=True),
    "training.weight_decay": number(0), "training.warmup_epochs": number(0, integer=True),
    "training.val_every": number(1, integer=True, allow=("auto",)), "training.seed": number(0, integer=True),
    "training.ds_weights": Rule(lambda v: None if v in ("halving", "same") or numbers(None, 0).check(v) is None
                                else f"must be 'halving', 'same' or a list of weights, got {v!r}",
                                "'halving', 'same' or a list of weights"),
    "training.empty_dice": choice("ignore", "count"),  # petclick.training.loss.EMPTY_DICE
    "training.grad_clip": number(0, lo_open=True, none=True), "training.device": TEXT,
    "training.repeats": choice("independent", "snapshot", "warmstart"),  # petclick.training.repeats.REPEAT_MODES
    "training.cycle_epochs": number(1, integer=True, none=True),
    "training.num_threads": number(1, integer=True, allow=("auto",)),
    "training.time_budget_s": number(0, lo_open=True, none=True),   # petclick.training.budget
    "training.time_budget_max_scale": number(0, lo_open=True),
    "training.val_fraction": number(0, 1, lo_open=True), "training.val_cases": number(1, integer=True, none=True),
    "training.val_score": choice("dice_fpv", "dice"), "training.dist_timeout_s": number(0, lo_open=True, allow=("auto",)),
    "infer.roi": numbers(3, 1, integer=True, none=True), "infer.overlap": number(0, 1, hi_open=True),
    "infer.sw_batch_size": number(1, integer=True), "infer.mode": choice("gaussian", "constant"),
    "infer.amp_dtype": choice("float16", "bfloat16"), "infer.channels_last": FLAG,
    "infer.backend": choice("auto", "torch", "onnxruntime"),
    "infer.compile": choice("none", "default", "reduce-overhead", "max-autotune"),
    "infer.cudnn_benchmark": FLAG, "infer.incremental": choice("naive", "exact", "local"),
    "infer.tile_cache_mb": number(0, lo_open=True, none=True, allow=("auto",)),
    "infer.local_window": number(0, 1, lo_open=True), "infer.local_update": choice("replace", "delta"),
    "infer.local_max_grow": number(0, integer=True),
}.items():
    register_key(_path, _rule)


def _inferred(default: Any) -> Rule:
    """The rule of a preset key without an entry: the type of its autopet default."""
    if isinstance(default, bool):
        return FLAG
    if isinstance(default, (int, float)):
        return number(integer=isinstance(default, int) and not isinstance(default, float))
    if isinstance(default, str):  # a word such as "auto" or "exact": a number may stand for it
        return of_type((str, int, float), "a word or a number")
    if isinstance(default, (list, tuple)):
        return of_type((list, tuple), "a list")
    if isinstance(default, Mapping):
        return MAPPING
    return ANY


def _preset_default(path: str) -> tuple[bool, Any]:
    node: Any = AUTOPET
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


def rule_for(path: str) -> Rule | None:
    """The rule of dotted key `path`; None when the key is unknown."""
    if path in KEYS:
        return KEYS[path]
    known, default = _preset_default(path)
    return _inferred(default) if known else None


def check_value(path: str, value: Any) -> str | None:
    """What is wrong with `value` at `path` (None: valid or unknown key)."""
    rule = rule_for(path)
    return None if rule is None else rule.check(value)
