"""Search spaces of petclick's hyper-parameter search (`hpo/<algo>.yaml`).

A space file is plain YAML:

    algo: segresnet                      # optional; must match --algo when given
    objective: dice_auc                  # default objective (see objectives.py)
    fixed:                               # applied to every trial, never exported (trial budget)
      training#val_every: 1
    params:                              # `section#key[#...]` paths into the bundle config
      training#lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
      data#num_crops: {type: int, low: 1, high: 4}
      clicks#encoding#encoding: {type: categorical, choices: [edt, gaussian, disk]}
      clicks#encoding#sigma: {type: float, low: 1.0, high: 6.0,
                              when: {clicks#encoding#encoding: gaussian}}
    pruner: {n_startup_trials: 2, n_warmup_steps: 0}

Parameter paths start with a bundle config section (network, data, augment, clicks, training,
infer) and use `#` between keys, as MONAI bundle overrides do. Categorical choices may be lists or
mappings (e.g. an ROI); Optuna stores those as their JSON text and the sampler decodes them. A
`when` condition samples the parameter only when earlier parameters have the given value(s).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from petclick.core.errors import InputError
from petclick.config.bundle import SECTIONS
from petclick.core.yamlio import apply_overrides, read_yaml

TYPES = ("float", "int", "categorical")
_PRIMITIVE = (str, int, float, bool, type(None))
_KEYS = {"float": {"type", "low", "high", "log", "step", "when"},
         "int": {"type", "low", "high", "log", "step", "when"},
         "categorical": {"type", "choices", "when"}}


@dataclass(frozen=True)
class ParamSpec:
    """One searched hyper-parameter: its config path, Optuna distribution and condition."""

    name: str
    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()
    when: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)

    def encoded_choices(self) -> tuple[Any, ...]:
        """Choices as Optuna stores them: primitives as they are, lists/mappings as JSON text."""
        return tuple(c if isinstance(c, _PRIMITIVE) else json.dumps(c) for c in self.choices)

    def decode(self, value: Any) -> Any:
        """The config value of a stored Optuna value."""
        if self.type != "categorical":
            return value
        for raw, enc in zip(self.choices, self.encoded_choices()):
            if enc == value:
                return raw
        return value

    def suggest(self, trial: Any) -> Any:
        """Sample this parameter from an Optuna trial; returns the config value."""
        if self.type == "float":
            return trial.suggest_float(self.name, self.low, self.high, log=self.log, step=self.step)
        if self.type == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log,
                                     step=int(self.step or 1))
        return self.decode(trial.suggest_categorical(self.name, self.encoded_choices()))

    def active(self, sampled: Mapping[str, Any]) -> bool:
        """Whether the `when` condition holds for the values sampled so far."""
        return all(k in sampled and sampled[k] in allowed for k, allowed in self.when.items())


@dataclass(frozen=True)
class SearchSpace:
    """A parsed space file: parameters in file order, fixed trial overrides, defaults."""

    source: str
    params: tuple[ParamSpec, ...]
    fixed: Mapping[str, Any] = field(default_factory=dict)
    algo: str | None = None
    objective: str | None = None
    pruner: Mapping[str, Any] = field(default_factory=dict)

    def sample(self, trial: Any) -> dict[str, Any]:
        """Flat {path: value} of the active parameters, sampled from `trial` in file order."""
        out: dict[str, Any] = {}
        for p in self.params:
            if p.active(out):
                out[p.name] = p.suggest(trial)
        return out

    def decode(self, stored: Mapping[str, Any]) -> dict[str, Any]:
        """Config values of Optuna's stored params (`trial.params`)."""
        specs = {p.name: p for p in self.params}
        return {k: specs[k].decode(v) if k in specs else v for k, v in stored.items()}


def nested(flat: Mapping[str, Any]) -> dict[str, Any]:
    """`{"training#lr": 1e-3}` -> `{"training": {"lr": 1e-3}}` (petclick's override merge)."""
    return apply_overrides({}, dict(flat), "hyper-parameters")


def _number(source: str, where: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise InputError(source, f"{where}: {key} must be a finite number, got {value!r}")
    return float(value)


def _check_path(source: str, where: str, name: str) -> None:
    parts = str(name).split("#")
    if len(parts) < 2 or not all(parts) or parts[0] not in SECTIONS:
        raise InputError(source, f"{where}: {name!r} is not a config path; write '<section>#<key>[#...]' with "
                                 f"section one of {', '.join(SECTIONS)}")


def parse_param(source: str, name: str, spec: Any, earlier: Mapping[str, ParamSpec]) -> ParamSpec:
    """One `params` entry as a ParamSpec; errors name the file and `params.<name>`."""
    where = f"params.{name}"
    _check_path(source, where, name)
    if not isinstance(spec, Mapping):
        raise InputError(source, f"{where}: must be a mapping with 'type' ({', '.join(TYPES)}), got {spec!r}")
    kind = spec.get("type")
    if kind not in TYPES:
        raise InputError(source, f"{where}: unknown type {kind!r}; use one of {', '.join(TYPES)}")
    unknown = set(spec) - _KEYS[kind]
    if unknown:
        raise InputError(source, f"{where}: unknown key(s) {sorted(unknown)} for type {kind} "
                                 f"(allowed: {', '.join(sorted(_KEYS[kind]))})")
    when = _parse_when(source, where, spec.get("when"), earlier)
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise InputError(source, f"{where}: choices must be a non-empty list, got {choices!r}")
        encoded = [c if isinstance(c, _PRIMITIVE) else json.dumps(c) for c in choices]
        if len(set(map(repr, encoded))) != len(encoded):
            raise InputError(source, f"{where}: choices repeat a value: {choices!r}")
        return ParamSpec(name, kind, choices=tuple(choices), when=when)
    for key in ("low", "high"):
        if key not in spec:
            raise InputError(source, f"{where}: type {kind} needs '{key}'")
    low, high = _number(source, where, "low", spec["low"]), _number(source, where, "high", spec["high"])
    log = bool(spec.get("log", False))
    step = None if spec.get("step") is None else _number(source, where, "step", spec["step"])
    if kind == "int" and not (low.is_integer() and high.is_integer() and (step is None or step.is_integer())):
        raise InputError(source, f"{where}: type int needs integer low/high/step, got {spec['low']!r}..{spec['high']!r}")
    if low >= high:
        raise InputError(source, f"{where}: low ({spec['low']}) must be below high ({spec['high']})")
    if log and low <= 0:
        raise InputError(source, f"{where}: log scale needs low > 0, got {spec['low']}")
    if log and step is not None:
        raise InputError(source, f"{where}: 'step' and 'log: true' cannot be combined (Optuna)")
    if step is not None and step <= 0:
        raise InputError(source, f"{where}: step must be > 0, got {spec['step']}")
    return ParamSpec(name, kind, low=low, high=high, log=log, step=step, when=when)


def _parse_when(source: str, where: str, when: Any, earlier: Mapping[str, ParamSpec]) -> dict[str, tuple]:
    if when is None:
        return {}
    if not isinstance(when, Mapping) or not when:
        raise InputError(source, f"{where}.when: must be a mapping {{earlier parameter: value or [values]}}")
    out = {}
    for key, allowed in when.items():
        if key not in earlier:
            raise InputError(source, f"{where}.when: {key!r} is not a parameter defined above it")
        out[str(key)] = tuple(allowed) if isinstance(allowed, list) else (allowed,)
    return out


def parse_space(data: Mapping[str, Any], source: str) -> SearchSpace:
    """A SearchSpace from the mapping of a space file; errors name `source` and the key."""
    allowed = {"algo", "objective", "fixed", "params", "pruner", "description"}
    unknown = set(data) - allowed
    if unknown:
        raise InputError(source, f"unknown top-level key(s) {sorted(unknown)} (allowed: {', '.join(sorted(allowed))})")
    params = data.get("params")
    if not isinstance(params, Mapping) or not params:
        raise InputError(source, "params: must be a non-empty mapping of '<section>#<key>': {type: ...}")
    specs: dict[str, ParamSpec] = {}
    for name, spec in params.items():
        specs[str(name)] = parse_param(source, str(name), spec, specs)
    fixed = data.get("fixed") or {}
    if not isinstance(fixed, Mapping):
        raise InputError(source, f"fixed: must be a mapping of '<section>#<key>': value, got {fixed!r}")
    for name in fixed:
        _check_path(source, "fixed", str(name))
        if str(name) in specs:
            raise InputError(source, f"fixed.{name}: also a searched parameter in params")
    pruner = data.get("pruner") or {}
    if not isinstance(pruner, Mapping) or set(pruner) - {"n_startup_trials", "n_warmup_steps", "interval_steps"}:
        raise InputError(source, "pruner: allowed keys are n_startup_trials, n_warmup_steps, interval_steps")
    objective = data.get("objective")
    if objective is not None:
        from petclick.workflows.hpo.objectives import get_objective

        try:
            get_objective(str(objective))
        except InputError as exc:
            raise InputError(source, f"objective: {exc.problem}") from exc
    return SearchSpace(source=source, params=tuple(specs.values()), fixed=dict(fixed),
                       algo=None if data.get("algo") is None else str(data["algo"]),
                       objective=None if objective is None else str(objective), pruner=dict(pruner))


def load_space(path: str | Path, algo: str | None = None) -> SearchSpace:
    """Read and check a space file; `algo` must match its `algo:` key when both are given."""
    space = parse_space(read_yaml(path), str(path))
    if algo is not None and space.algo is not None and space.algo != algo:
        raise InputError(path, f"algo: the space is for {space.algo!r}, not {algo!r}")
    return space
