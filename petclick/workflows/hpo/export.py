"""Export of a study's best trial as an input.yaml fragment.

The fragment holds only the searched hyper-parameters, under `algo_overrides.<algo>` (nested
keys), so merged into input.yaml it changes that algorithm's bundles and nothing else; the trial
budget (`fixed` in the space file, `--set`, trial repeats) is not in it, so input.yaml's own
epochs and `num_repeats` (4: 5 folds x 4 = 20 checkpoints) train the final ensemble. Next to it,
`<name>_input.yaml` is input.yaml with the fragment merged in, ready for AutoRunner.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from petclick.workflows.hpo.objectives import Objective
from petclick.core.yamlio import deep_merge, read_yaml, write_yaml


def best_fragment(study: Any, algo: str) -> dict[str, Any]:
    """`{"algo_overrides": {algo: <best trial's nested params>}}`."""
    best = study.best_trial
    params = best.user_attrs.get("overrides")
    if params is None:  # trial recorded by another tool: decode nothing, nest Optuna's values
        from petclick.workflows.hpo.space import nested

        params = nested(best.params)
    return {"algo_overrides": {algo: params}}


def export_best(study: Any, path: Path, algo: str, input_path: Path | None, objective: Objective) -> Path:
    """Write the fragment to `path` and, given input.yaml, the merged input beside it; returns `path`."""
    best = study.best_trial
    fragment = best_fragment(study, algo)
    header = (f"# petclick hpo: best trial {best.number} of study {study.study_name!r} "
              f"({objective.name} = {best.value:.4f}, {objective.direction})\n"
              "# Merge into input.yaml (deep merge under algo_overrides), then train the final ensemble:\n"
              "#   python -m monai.apps.auto3dseg AutoRunner run --input=<merged input.yaml>\n"
              "# (a fresh work_dir, or delete its <algo>_* bundles: AutoRunner's cache does not regenerate them)")
    write_yaml(path, fragment, header=header)
    if input_path is not None and Path(input_path).is_file():
        merged = deep_merge(read_yaml(input_path), fragment)
        write_yaml(Path(path).with_name(Path(path).stem + "_input.yaml"), merged,
                   header=f"# {input_path} with {path} merged in (petclick hpo)")
    return Path(path)
