"""linest: estimate the parameters of linear ODE models dx/dt = A(theta) x, and say how far to trust them.

Importing linest turns on JAX's float64 mode (estimation and standard errors need it);
set the environment variable LINEST_X64=0 before importing to keep JAX's default.
"""

import os as _os

import jax as _jax

if _os.environ.get("LINEST_X64", "1") != "0":
    _jax.config.update("jax_enable_x64", True)

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
    SeriesSurrogate,
    Surrogate,
)
from linest.models import CTMC

__version__ = "0.1.0"

__all__ = [
    "CTMC",
    "AbstractGradient",
    "Adjoint",
    "Asymptotic",
    "AutoDiff",
    "DataError",
    "Eigen",
    "Exact",
    "FitResult",
    "SeriesSurrogate",
    "Surrogate",
    "expm",
    "expm_frechet",
    "expm_times",
    "fit",
    "gradient_from_string",
    "propagate",
    "read_chains",
]
