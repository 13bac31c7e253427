"""How the repeats of one fold relate: YAML `training.repeats`, one registry entry per mode.

- `independent`: every repeat trains from scratch with its own seed (the `autopet` preset); each
  keeps its best validation checkpoint.
- `snapshot`: one run per fold with cosine restarts (a snapshot ensemble): repeat r > 0 continues
  from the end of repeat r - 1, weights and optimiser state, and its learning rate restarts at
  `lr` and falls to 0 again; each repeat keeps its last state, the end of its cycle. Four
  checkpoints cost the iterations of the cycles, about one training when the later cycles are short.
- `warmstart`: repeat 0 trains from scratch; every later repeat starts from repeat 0's final
  weights with a fresh optimiser and its own seed; each keeps its last state.

Epochs: `training.num_epochs` for repeat 0 and for every independent repeat; `training.cycle_epochs`
for each later repeat of the snapshot and warmstart modes (None: num_epochs), which start from a
trained state and usually need far fewer. (So a budget given as num_epochs, as tests and HPO trials
give it, still sets the length of a training from scratch.) A repeat whose source is unfinished cannot start (InputError);
a repeat interrupted mid-cycle resumes from its own last.pt like any other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from petclick.core.errors import InputError

SOURCE = "training.repeats"


@dataclass(frozen=True)
class RepeatMode:
    """Where repeat r starts and which of its states it keeps."""

    name: str
    #: "previous": repeat r - 1's end; "first": repeat 0's end; None: from scratch
    start_from: str | None
    #: also continue the source's optimiser state (Adam moments)
    with_optimizer: bool
    #: keep the last state as model.pt (True) or the best validation one (False)
    keep_last: bool

    def source(self, repeat: int) -> int | None:
        """The repeat whose final state repeat `repeat` starts from (None: from scratch)."""
        if repeat <= 0 or self.start_from is None:
            return None
        return repeat - 1 if self.start_from == "previous" else 0


REPEAT_MODES: dict[str, RepeatMode] = {
    "independent": RepeatMode("independent", None, False, False),
    "snapshot": RepeatMode("snapshot", "previous", True, True),
    "warmstart": RepeatMode("warmstart", "first", False, True),
}


def repeat_mode(training: Mapping[str, Any]) -> RepeatMode:
    """The mode named by `training.repeats` (default independent); unknown names raise InputError."""
    name = training.get("repeats", "independent")
    key = str(name).strip().lower() if name is not None else "independent"
    if key not in REPEAT_MODES:
        raise InputError(SOURCE, f"unknown repeat mode {name!r}; choose one of {', '.join(REPEAT_MODES)}")
    return REPEAT_MODES[key]


def repeat_epochs(training: Mapping[str, Any], repeat: int) -> int:
    """Epochs of repeat `repeat`: `cycle_epochs` for repeats r > 0 of a mode that starts them from another
    repeat (when set), else `num_epochs`; a non-positive or non-integer value raises InputError."""
    cycle = training.get("cycle_epochs")
    use_cycle = repeat > 0 and cycle not in (None, "none") and repeat_mode(training).source(repeat) is not None
    key = "cycle_epochs" if use_cycle else "num_epochs"
    value = training[key]
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if n < 1 or str(value).strip() not in (str(n), f"{n}.0"):
        raise InputError(f"training.{key}", f"must be a positive integer, got {value!r}")
    return n
