"""Shared fixtures: one tiny phantom cohort per test session (8 cases of 48x48x64)."""

from __future__ import annotations

import pytest

TINY_CASES = 8
TINY_SEED = 11
TINY_SHAPE = (48, 48, 64)


@pytest.fixture(scope="session")
def tiny_cohort(tmp_path_factory):
    """Path of the datalist.json of 8 phantom cases (48x48x64, 5 folds + testing), generated once."""
    from petclick.phantoms import generate_cohort

    root = tmp_path_factory.mktemp("tiny_cohort")
    return generate_cohort(root, cases=TINY_CASES, seed=TINY_SEED, shape=TINY_SHAPE)
