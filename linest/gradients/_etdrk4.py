"""ETDRK4 as a diffrax solver, over a semilinear term (see linest.gradients.exponential)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import ClassVar

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp


class SemilinearTerm(diffrax.AbstractTerm):
    """``dy/dt = A y = L y + R y`` with ``(A, weights)`` given as diffrax's ``args``.

    ``A`` is an operator offering ``shape`` and ``axes`` (the grid), ``linear_symbol()``
    (the eigenvalues of the circulant ``L`` on the ``rfftn`` grid), ``rest_spectrum(v_hat)``
    (``R v`` in Fourier space from ``v``'s spectrum) and ``__call__`` (``A v``, so that
    any diffrax solver can integrate the same term, for comparisons).
    """

    def vf(self, t, y, args):
        return args[0](y)

    def contr(self, t0, t1, **kwargs):
        return t1 - t0

    def prod(self, vf, control):
        return vf * control


class _Coefficients(eqx.Module):
    """ETDRK4's weights for one step size ``h`` (Cox and Matthews 2002, eqs. 26-29):
    ``exp(h L)``, ``exp(h L / 2)``, ``Q``, ``f1``, ``f2``, ``f3``, held as real and imaginary
    parts (diffrax warns about, and does not fully support, complex arrays in ``args``)."""

    parts: jax.Array  # (6, 2, *spectrum)

    def _get(self, i):
        return jax.lax.complex(self.parts[i, 0], self.parts[i, 1])

    E = property(lambda self: self._get(0))
    E2 = property(lambda self: self._get(1))
    Q = property(lambda self: self._get(2))
    f1 = property(lambda self: self._get(3))
    f2 = property(lambda self: self._get(4))
    f3 = property(lambda self: self._get(5))


#: |z| below which phi_3 is summed as a Taylor series (the closed forms cancel there:
#: (e^z - 1 - z - z^2/2) / z^3 loses all digits as z -> 0).
_SERIES_RADIUS = 1.0
_SERIES_TERMS = 17  # the first omitted term is below 1/20! ~ 4e-19 for |z| < 1


def phi_functions(z) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``phi_1, phi_2, phi_3`` of (complex) ``z``: ``phi_k(z) = sum_j z^j / (j + k)!``, i.e.

        phi_1 = (e^z - 1) / z,  phi_2 = (e^z - 1 - z) / z^2,  phi_3 = (e^z - 1 - z - z^2/2) / z^3.

    For ``|z| < 1``: ``phi_3`` by its Taylor series, then ``phi_2 = z phi_3 + 1/2`` and
    ``phi_1 = z phi_2 + 1`` (multiplying by a small ``z`` loses nothing). Elsewhere:
    ``phi_1`` in closed form, then ``phi_2 = (phi_1 - 1) / z`` and ``phi_3 = (phi_2 - 1/2)
    / z`` (dividing by ``|z| >= 1`` loses nothing). Relative error a few ulp on both sides
    (tested against Kassam and Trefethen's contour means, which evaluate the same functions
    by a mean over 32 points about each ``z``: that holds 32 copies of the spectrum, which
    reverse-mode autodiff kept, 680 snapshot-sets of memory on a 64 x 64 grid, measured).
    Both branches are finite everywhere (the closed forms see ``z = 1`` where the series
    is used), so gradients through ``jnp.where`` stay finite.
    """
    small = jnp.abs(z) < _SERIES_RADIUS
    zs = jnp.where(small, z, 0.0)
    zc = jnp.where(small, 1.0, z)
    # Horner on sum_j z^j / (j + 3)!, from the highest term down.
    phi3 = jnp.full_like(zs, 1.0 / math.factorial(_SERIES_TERMS + 3))
    for j in range(_SERIES_TERMS - 1, -1, -1):
        phi3 = phi3 * zs + 1.0 / math.factorial(j + 3)
    phi2 = zs * phi3 + 0.5
    series = (zs * phi2 + 1.0, phi2, phi3)
    closed1 = (jnp.exp(zc) - 1) / zc
    closed2 = (closed1 - 1) / zc
    closed = (closed1, closed2, (closed2 - 0.5) / zc)
    phi1, phi2, phi3 = (jnp.where(small, a, b) for a, b in zip(series, closed))
    return phi1, phi2, phi3


def phi_1(z) -> jax.Array:
    """``phi_1(z) = (e^z - 1) / z`` alone (series below ``|z| = 1``, as :func:`phi_functions`)."""
    small = jnp.abs(z) < _SERIES_RADIUS
    zs = jnp.where(small, z, 0.0)
    zc = jnp.where(small, 1.0, z)
    series = jnp.full_like(zs, 1.0 / math.factorial(_SERIES_TERMS + 1))
    for j in range(_SERIES_TERMS - 1, -1, -1):
        series = series * zs + 1.0 / math.factorial(j + 1)
    return jnp.where(small, series, (jnp.exp(zc) - 1) / zc)


@jax.checkpoint  # recomputed in the backward pass: its series terms are not kept
def coefficients(symbol, h) -> _Coefficients:
    """The weights of Cox and Matthews's eqs. 26-29 with ``z = h lambda``, in phi-functions:
    ``Q = h/2 phi_1(z/2)``, ``f1 = h (phi_1 - 3 phi_2 + 4 phi_3)``, ``f2 = h (phi_2 - 2 phi_3)``,
    ``f3 = h (4 phi_3 - phi_2)`` (their ``alpha``, ``beta``, ``gamma`` times ``h``)."""
    z = h * symbol
    half = phi_1(z / 2)
    phi1, phi2, phi3 = phi_functions(z)
    weights = (
        jnp.exp(z),
        jnp.exp(z / 2),
        h / 2 * half,
        h * (phi1 - 3 * phi2 + 4 * phi3),
        h * (phi2 - 2 * phi3),
        h * (4 * phi3 - phi2),
    )
    return _Coefficients(jnp.stack([jnp.stack([w.real, w.imag]) for w in weights]))


class ETDRK4(diffrax.AbstractSolver):
    """Exponential time differencing RK4 (Cox and Matthews 2002) as a diffrax solver.

    For a :class:`SemilinearTerm`, with fixed steps (``diffrax.ConstantStepSize``): the
    weights (:func:`coefficients`, ``exp(h L)`` among them) come with ``args``, computed
    once for the step size ``h`` (a step that diffrax clips to land on ``t1`` differs from
    ``h`` by at most ~100 ulp of ``t1``). Outside the loop's carry they are not stored at
    every checkpoint of the adjoint (as a solver state they were: 10 grids a checkpoint).
    Order 4, no error estimate.

    Cost per step: four evaluations of ``R`` in Fourier space and one FFT pair of the state.
    """

    term_structure: ClassVar = SemilinearTerm
    interpolation_cls: ClassVar[Callable[..., diffrax.LocalLinearInterpolation]] = (
        diffrax.LocalLinearInterpolation
    )

    def order(self, terms):
        return 4

    def init(self, terms, t0, t1, y0, args):
        return None

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        del made_jump
        operator, c = args
        shape, axes = operator.shape, operator.axes
        rest = operator.rest_spectrum
        v = jnp.fft.rfftn(y0, axes=axes)
        Nv = rest(v)
        a = c.E2 * v + c.Q * Nv
        Na = rest(a)
        b = c.E2 * v + c.Q * Na
        Nb = rest(b)
        cc = c.E2 * a + c.Q * (2 * Nb - Nv)
        Nc = rest(cc)
        v1 = c.E * v + c.f1 * Nv + 2 * c.f2 * (Na + Nb) + c.f3 * Nc
        y1 = jnp.fft.irfftn(v1, s=shape, axes=axes).astype(y0.dtype)
        return y1, None, dict(y0=y0, y1=y1), None, diffrax.RESULTS.successful

    def func(self, terms, t0, y0, args):
        return terms.vf(t0, y0, args)
