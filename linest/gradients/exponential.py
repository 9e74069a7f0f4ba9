"""Exponential: ``exp(tA) x0`` for ``A = L + R`` with ``L`` circulant, by ETDRK4 in diffrax.

For periodic grid models whose stiff part is circulant: diffusion (and the mean
advection) are solved exactly in Fourier space, the rest (advection by a velocity's
fluctuation about its mean) explicitly. The step is then limited by the rest's Courant
number only, not by the diffusive stability limit ``dt < h^2 / (4 d kappa)`` that an
explicit solver of the whole system pays: the cost of a solve grows as ``n^(d+1) log n``
on an ``n^d`` grid instead of ``n^(d+2)``.

The scheme is ETDRK4 of Cox and Matthews (2002, eqs. 26-29). Its weights are
phi-functions of ``h lambda``, which cancel catastrophically in closed form for small
``|h lambda|`` (Kassam and Trefethen 2005, section 2): they are summed as Taylor series
inside the unit disc and taken in closed form outside (Kassam and Trefethen's contour
means give the same numbers, to 1e-13 in the tests, but hold 32 copies of the spectrum
that autodiff keeps). For ``R = 0`` (a constant velocity) one step is the exact
propagator ``exp(h L)``.

It is a diffrax solver (:class:`ETDRK4`, over a :class:`SemilinearTerm`), so its gradient
is diffrax's: ``RecursiveCheckpointAdjoint`` differentiates the discrete steps exactly
(the exact gradient of what the forward pass computed), with memory of a few
checkpoints; ``DirectAdjoint`` supports forward mode (Jacobians, Fisher information).

References
----------
S. M. Cox and P. C. Matthews, "Exponential time differencing for stiff systems",
J. Comput. Phys. 176 (2002) 430-455.
A.-K. Kassam and L. N. Trefethen, "Fourth-order time-stepping for stiff PDEs",
SIAM J. Sci. Comput. 26 (2005) 1214-1233.
"""

from __future__ import annotations

import math
from typing import Any, cast

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Exponential"]

#: The largest Courant number of the explicit part for which ETDRK4 is used: its
#: explicit part is RK4-like, stable on the imaginary axis to |h lambda| <= 2.83; the
#: spectral advection's eigenvalues reach pi times the Courant number (2/3 pi with the
#: 2/3 rule), so 0.85 keeps a margin for every scheme.
MAX_COURANT = 0.85


class Exponential(eqx.Module):
    """``x(t) = exp(tA) x0`` by ETDRK4 for a semilinear grid operator (see the module).

    For the grid models (``AdvectionDiffusion``, any scheme): ``A``'s circulant part
    (diffusion, mean advection) is exact, the rest explicit with steps of Courant number
    at most ``courant``: each interval between output times is cut into
    ``ceil(dt * rate / courant)`` equal steps, ``rate = sum_a max |u_a - U_a| / h_a``
    (``A.advection_rate()``). A constant velocity takes one step per interval, exactly.

    Parameters
    ----------
    courant : float
        The Courant number of the explicit part, ``<= 0.85`` (RK4's stability along the
        imaginary axis, with a margin). The time error is fourth order in it: on the
        shipped 64 x 64 problem 0.5 gives a relative error of about 1e-7 (see
        ``benchmarks/advection_gradient.py``).
    adjoint : diffrax adjoint
        ``diffrax.RecursiveCheckpointAdjoint(checkpoints=8)`` by default (the exact
        gradient of the discrete steps, with 8 checkpoints in each interval between
        output times); ``diffrax.DirectAdjoint()`` for forward mode.
    max_steps : int
        Steps per interval before giving up.
    throw : bool
        If False (default), a solve that needs more than ``max_steps`` returns NaN (a
        sampler's wild proposal becomes a divergence, not an exception).

    Notes
    -----
    **When not to use it**: operators whose stiff part is not circulant (non-periodic
    boundaries, a varying diffusivity); use :class:`linest.Adjoint` with an implicit
    solver there.
    """

    courant: float = eqx.field(static=True, default=0.5)
    adjoint: Any = eqx.field(static=True, default=None)
    max_steps: int = eqx.field(static=True, default=4096)
    throw: bool = eqx.field(static=True, default=False)

    def __check_init__(self):
        if not (isinstance(self.courant, (int, float)) and 0 < self.courant <= MAX_COURANT):
            raise ValueError(
                f"Exponential(courant={self.courant!r}): the Courant number of the explicit "
                f"part must be in (0, {MAX_COURANT}] (ETDRK4 is unstable beyond, "
                "like RK4 on pure advection)"
            )
        if not (isinstance(self.max_steps, int) and self.max_steps >= 1):
            raise ValueError(f"Exponential(max_steps={self.max_steps!r}): must be an integer >= 1")

    def steps(self, A, ts) -> jax.Array:
        """The number of steps of each interval ``[t_{k-1}, t_k]`` (``t_0 = 0``)."""
        deltas = jnp.diff(ts, prepend=jnp.zeros((1,), ts.dtype))
        rate = jax.lax.stop_gradient(A.advection_rate())
        return jnp.maximum(jnp.ceil(deltas * rate / self.courant - 1e-9), 1.0).astype(jnp.int32)

    def solve(self, A, x0: jax.Array, ts: jax.Array) -> jax.Array:
        """``x(t)`` for each ``t`` in ``ts`` (non-decreasing, >= 0): ``(len(ts), *A.shape)``."""
        import diffrax  # on first use: its import costs 0.4 s of every command's start

        from linest.gradients._etdrk4 import ETDRK4, SemilinearTerm, coefficients

        adjoint = (
            diffrax.RecursiveCheckpointAdjoint(checkpoints=8)
            if self.adjoint is None
            else self.adjoint
        )
        steps = self.steps(A, ts)
        starts = jnp.concatenate([jnp.zeros((1,), ts.dtype), ts[:-1]])
        solver = ETDRK4()

        def interval(x, item):
            t0, t1, count = item
            dt = (t1 - t0) / count
            weights = coefficients(A.linear_symbol(), dt)
            solution = diffrax.diffeqsolve(  # (t0 == t1, repeated output times: y = x)
                SemilinearTerm(),
                solver,
                t0=t0,
                t1=t1,
                dt0=dt,
                y0=x,
                args=(A, weights),
                saveat=diffrax.SaveAt(t1=True),
                stepsize_controller=diffrax.ConstantStepSize(),
                adjoint=adjoint,
                max_steps=self.max_steps,
                throw=self.throw,
            )
            y = cast(jax.Array, solution.ys)[0]
            if not self.throw:
                y = jnp.where(solution.result == diffrax.RESULTS.successful, y, jnp.nan)
            return y, y

        _, ys = jax.lax.scan(interval, x0, (starts, ts, steps))
        return ys


def courant_steps(A, ts, courant: float) -> float:
    """The total number of steps ``Exponential(courant)`` takes to ``ts[-1]`` (a number, for
    messages and preflight checks)."""
    deltas = np.diff(np.asarray(ts, float), prepend=0.0)
    rate = float(A.advection_rate())
    return float(sum(max(math.ceil(d * rate / courant - 1e-9), 1) for d in deltas))
