"""Model classes sharing the gradient engine: each maps theta to A(theta) and scores data."""

from linest.models.advection_diffusion import (
    AdvectionDiffusion,
    Snapshots,
    read_snapshots,
    write_snapshots,
)
from linest.models.base import AbstractLinearModel
from linest.models.ctmc import CTMC, CTMCStatistics
from linest.models.linear_ode import LinearODE, Series, read_series
from linest.models.quantum import Counts, QuantumWalk, read_counts
from linest.models.ssm import LinearSSM

#: Model kinds by the name a spec file's ``model.type`` gives them.
KINDS = {
    "ctmc": CTMC,
    "advection_diffusion": AdvectionDiffusion,
    "quantum_walk": QuantumWalk,
    "linear_ode": LinearODE,
    "linear_ssm": LinearSSM,
}

__all__ = [
    "CTMC",
    "KINDS",
    "AbstractLinearModel",
    "AdvectionDiffusion",
    "CTMCStatistics",
    "Counts",
    "LinearODE",
    "LinearSSM",
    "QuantumWalk",
    "Series",
    "Snapshots",
    "read_counts",
    "read_series",
    "read_snapshots",
    "write_snapshots",
]
