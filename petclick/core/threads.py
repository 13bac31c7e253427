"""OpenMP's wait policy for every petclick process, set before torch is loaded.

PyTorch's CPU wheels use GNU OpenMP, whose idle threads spin at every barrier before they sleep.
With as many threads as cores and any other busy process on the machine, a spinning thread burns
the time slice its partner needs, and a training step becomes many times slower (seen on the
2-core machine: 10x, always inside backward; benchmarks/bench_training.py --threads-matrix).
`set_omp_defaults()` makes idle OpenMP threads sleep (OMP_WAIT_POLICY=PASSIVE) unless the
environment already chose a policy. OpenMP reads it once, when torch loads its runtime, so
petclick's package __init__ calls this before anything imports torch (a script that imports
torch before petclick keeps OpenMP's default). PETCLICK_OMP_DEFAULTS=0 turns it off.
"""

from __future__ import annotations

import os

OMP_DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE"}


def set_omp_defaults() -> None:
    """Put OMP_DEFAULTS into os.environ where the user set nothing; PETCLICK_OMP_DEFAULTS=0 skips it."""
    if os.environ.get("PETCLICK_OMP_DEFAULTS", "1") == "0":
        return
    for key, value in OMP_DEFAULTS.items():
        os.environ.setdefault(key, value)
