"""Adjoint: solve dx/dt = A x with diffrax and differentiate the solve (matrix-free)."""

from __future__ import annotations

from typing import Any, cast

import equinox as eqx
import jax
import jax.numpy as jnp


class Adjoint(eqx.Module):
    """``x(t) = exp(tA) x0`` by an ODE solve, for :func:`linest.propagate` only.

    ``A`` may be a dense array, a ``jax.experimental.sparse`` matrix (BCOO/BCSR), or any
    callable ``v -> A v``; real or complex (a complex state is solved as its real and
    imaginary parts, which diffrax supports fully) (an equinox Module, or a plain function whose closed-over
    arrays are lifted with ``equinox.filter_closure_convert``). ``A`` is never formed.
    Gradients follow gradients.md, section 4: the adjoint ``lambda`` solves
    ``d lambda/ds = -A^T lambda`` backwards, and ``dL/dA = int lambda(s) x(s)^T ds`` is
    only ever contracted with the entries the parametrisation touches.

    Parameters
    ----------
    solver : diffrax solver
        Default (None) ``diffrax.Tsit5()`` (explicit, 5th order). For stiff ``A`` (large
        diffusion on a fine grid, fast rates) use an implicit solver such as
        ``diffrax.Kvaerno5()``.
    adjoint : diffrax adjoint
        ``diffrax.RecursiveCheckpointAdjoint()`` (default, None): exact gradient of the
        discrete solve, memory ``O(checkpoints * size(x))``.
        ``diffrax.BacksolveAdjoint()``: continuous adjoint, ``O(1)`` memory, gradient
        only as accurate as the tolerances (diffrax does not recommend it).
    rtol, atol : float
        Tolerances of the PID step-size controller; the error of ``x`` and of its
        gradient is of this order, not machine precision.
    max_steps : int
        Solver steps before giving up.
    throw : bool
        If True (default) a failed solve raises; if False it returns NaN (so that, e.g.,
        HMC counts a divergence instead of stopping).

    Notes
    -----
    **Cost**: ``O(steps * cost(A v))`` forward and about twice that backward; no
    ``O(d^3)`` work and no ``d x d`` matrix. **When not to use it**: small dense ``A``,
    where :class:`Exact` is exact and faster.
    """

    # None means the default; diffrax is imported on first use (it costs 0.4 s to import).
    solver: Any = eqx.field(static=True, default=None)
    adjoint: Any = eqx.field(static=True, default=None)
    rtol: float = eqx.field(static=True, default=1e-8)
    atol: float = eqx.field(static=True, default=1e-10)
    max_steps: int = eqx.field(static=True, default=100_000)
    throw: bool = eqx.field(static=True, default=True)

    def solve(self, A, x0: jax.Array, ts: jax.Array) -> jax.Array:
        """x(t) for each t in ``ts`` (non-decreasing, >= 0), shape ``(len(ts), d)``."""
        import diffrax

        solver = diffrax.Tsit5() if self.solver is None else self.solver
        adjoint = diffrax.RecursiveCheckpointAdjoint() if self.adjoint is None else self.adjoint
        operator = _as_operator(A, x0)
        complex_state = jnp.iscomplexobj(x0)
        if complex_state:
            # Diffrax's complex support is "a work in progress" (its own warning): solve
            # for (Re x, Im x) instead, with the operator applied to the complex vector.
            d = x0.shape[-1]
            operator = _Realified(operator, d)
            x0 = jnp.concatenate([jnp.real(x0), jnp.imag(x0)], axis=-1)

        def field(t, y, operator):
            return operator(y)

        t1 = ts[-1]
        solution = diffrax.diffeqsolve(
            diffrax.ODETerm(field),
            solver,
            t0=jnp.zeros((), ts.dtype),
            t1=t1,
            dt0=None,
            y0=x0,
            args=operator,
            saveat=diffrax.SaveAt(ts=ts),
            stepsize_controller=diffrax.PIDController(rtol=self.rtol, atol=self.atol),
            adjoint=adjoint,
            max_steps=self.max_steps,
            throw=self.throw,
        )
        ys = cast(jax.Array, solution.ys)
        if complex_state:
            ys = jax.lax.complex(ys[..., :d], ys[..., d:])
        if not self.throw:
            ok = solution.result == diffrax.RESULTS.successful
            ys = jnp.where(ok, ys, jnp.nan)
        return ys


class _Split(eqx.Module):
    """A complex array held as its real and imaginary parts."""

    real: jax.Array
    imag: jax.Array


class _Realified(eqx.Module):
    """``(u, v) -> (Re A(u + iv), Im A(u + iv))``: a complex linear ODE as a real one.

    The operator's complex arrays are held split too, so that diffrax sees no complex
    number anywhere (it warns about complex ``args`` as well as complex states).
    """

    operator: Any
    size: int = eqx.field(static=True)

    def __init__(self, operator, size: int):
        def split(leaf):
            if eqx.is_array(leaf) and jnp.iscomplexobj(leaf):
                return _Split(jnp.real(leaf), jnp.imag(leaf))
            return leaf

        self.operator = jax.tree.map(split, operator)
        self.size = size

    def __call__(self, y):
        def join(leaf):
            return jax.lax.complex(leaf.real, leaf.imag) if isinstance(leaf, _Split) else leaf

        operator = jax.tree.map(join, self.operator, is_leaf=lambda x: isinstance(x, _Split))
        x = jax.lax.complex(y[..., : self.size], y[..., self.size :])
        out = operator(x)
        return jnp.concatenate([jnp.real(out), jnp.imag(out)], axis=-1)


class _Matvec(eqx.Module):
    matrix: Any

    def __call__(self, v):
        return self.matrix @ v


def _as_operator(A, x0):
    from jax.experimental import sparse

    if isinstance(A, (sparse.BCOO, sparse.BCSR)) or isinstance(A, jax.Array):
        return _Matvec(A)
    if isinstance(A, eqx.Module) and callable(A):
        return A
    if callable(A):
        return eqx.filter_closure_convert(A, x0)
    raise TypeError(
        "propagate(gradient=Adjoint()): A must be an array, a jax.experimental.sparse "
        f"matrix, or a callable v -> A v; got {type(A).__name__}"
    )
