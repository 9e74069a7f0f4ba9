"""Model classes sharing the gradient engine: each maps theta to A(theta) and scores data."""

from linest.models.advection_diffusion import (
    AdvectionDiffusion,
    Snapshots,
    read_snapshots,
    write_snapshots,
)
from linest.models.base import AbstractLinearModel
from linest.models.constrained import Constrained
from linest.models.ctmc import CTMC, CTMCStatistics
from linest.models.hidden_ctmc import HiddenCTMC
from linest.models.linear_ode import Dose, LinearODE, Series, read_doses, read_series
from linest.models.quantum import Counts, QuantumWalk, read_counts
from linest.models.ssm import LinearSSM
from linest.models.structure import Structure

#: Model kinds by the name a spec file's ``model.type`` gives them.
KINDS = {
    "ctmc": CTMC,
    "hidden_ctmc": HiddenCTMC,
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
    "Constrained",
    "Counts",
    "Dose",
    "HiddenCTMC",
    "LinearODE",
    "LinearSSM",
    "QuantumWalk",
    "Series",
    "Snapshots",
    "Structure",
    "read_counts",
    "read_doses",
    "read_series",
    "read_snapshots",
    "write_snapshots",
]
