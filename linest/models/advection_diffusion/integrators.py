"""Time integration of the semi-discrete system: the ODE solvers a grid model uses."""

from __future__ import annotations

from linest.gradients import Adjoint
from linest.gradients.exponential import Exponential


def _default_solver() -> Exponential:
    """ETDRK4 (linest.Exponential): diffusion and the mean advection exact in Fourier
    space, steps set by the advective Courant number (0.5); NaN instead of an exception
    when a sampler's proposal cannot be solved."""
    return Exponential()


def _explicit_solver() -> Adjoint:
    """Tsit5 with 16 checkpoints: on the shipped 64 x 64 problem diffrax's default
    (checkpoints from max_steps) planned 140 snapshot-sets of memory against 22 here, for
    5% more time; NaN instead of an exception when a sampler's proposal cannot be solved."""
    import diffrax

    return Adjoint(
        adjoint=diffrax.RecursiveCheckpointAdjoint(checkpoints=16), max_steps=16384, throw=False
    )


def _is_implicit(adjoint: Adjoint) -> bool:
    import diffrax

    return isinstance(adjoint.solver, diffrax.AbstractImplicitSolver)
