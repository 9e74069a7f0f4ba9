"""linest: estimate the parameters of linear ODE models dx/dt = A(theta) x, and say how far to trust them.

Importing linest turns on JAX's float64 mode (estimation and standard errors need it);
set the environment variable LINEST_X64=0 before importing to keep JAX's default.
"""

from linest import _setup  # noqa: F401  (float64 and CPU devices, before JAX starts)
from linest.data import DataError, read_chains
from linest.engine import expm, expm_frechet, expm_times, gradient_from_string, propagate
from linest.fit import FitResult, fit
from linest.gradients import (
    AbstractGradient,
    Adjoint,
    Asymptotic,
    AutoDiff,
    Eigen,
    Exact,
    Exponential,
    Fourier,
    SeriesSurrogate,
    Surrogate,
)
from linest.gradients.coarse import CoarseGrid
from linest.models import (
    CTMC,
    AdvectionDiffusion,
    Constrained,
    Dose,
    HiddenCTMC,
    LinearODE,
    LinearSSM,
    QuantumWalk,
    Structure,
    read_counts,
    read_doses,
    read_series,
    read_snapshots,
)
from linest.priors import Prior
from linest.sample import join_runs, sample

__version__ = "0.1.0"

__all__ = [
    "CTMC",
    "AbstractGradient",
    "Adjoint",
    "AdvectionDiffusion",
    "Asymptotic",
    "AutoDiff",
    "CoarseGrid",
    "Constrained",
    "DataError",
    "Dose",
    "Eigen",
    "Exact",
    "Exponential",
    "FitResult",
    "Fourier",
    "HiddenCTMC",
    "LinearODE",
    "LinearSSM",
    "Prior",
    "QuantumWalk",
    "SeriesSurrogate",
    "Structure",
    "Surrogate",
    "expm",
    "expm_frechet",
    "expm_times",
    "fit",
    "gradient_from_string",
    "join_runs",
    "propagate",
    "read_chains",
    "read_counts",
    "read_doses",
    "read_series",
    "read_snapshots",
    "sample",
]
