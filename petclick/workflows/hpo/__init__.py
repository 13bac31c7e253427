"""Hyper-parameter search over petclick's bundles with Optuna, through MONAI's OptunaGen.

- space.py: search-space files (`hpo/<algo>.yaml`): Optuna distributions over bundle config paths
- objectives.py: what a trial returns, read from the training loop's validation entries
- trial.py: PetclickOptunaGen, one trial = one bundle generated for the fold and trained
- study.py: work directory, storage (SQLite by default, any SQLAlchemy URL), resume, pruning
- export.py: the best trial as an input.yaml fragment
"""

from petclick.workflows.hpo.objectives import OBJECTIVES, get_objective
from petclick.workflows.hpo.space import ParamSpec, SearchSpace, load_space, nested, parse_space

__all__ = ["OBJECTIVES", "ParamSpec", "SearchSpace", "get_objective", "load_space", "nested", "parse_space"]
