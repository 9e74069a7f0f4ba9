"""Batched scaling-and-squaring Taylor approximation of exp(A) and its Frechet derivative.

The kernel PyTorch's ``matrix_exp`` uses: Bader, Blanes and Casas (2019), "Computing the
matrix exponential with an optimized Taylor polynomial approximation", Mathematics 7:1174.
Their evaluation schemes reach the Taylor polynomial of degree 1, 2, 4, 8, 12 and 18 in
0, 1, 2, 3, 4 and 5 matrix products, with no linear solve; the Pade kernel
(``_pade.py``) needs 6-7 products and an LU solve. Where a solve is slow (a GPU's
batched LU) or the matrices are small in norm, this kernel is cheaper; where the norm
is large it pays for its smaller reach (theta_18 = 1.09 against theta_13 = 4.25 in
double) with about two more squarings.

1. Degree and squarings come from ``max_j ||A^(p_j)||^(1/p_j)`` over a set of powers
   ``p_j`` from which every power of the omitted tail (``k > m``) is a sum (Al-Mohy &
   Higham 2009, Theorem 4.2 and its proof): {2, 3} for degrees 1-4, {3, 4} for 8,
   and the smaller of {3, 4} and {4, 6, 7} for 12 and 18. ``A^2, A^3`` are formed (the
   schemes need them), ``A^4`` too when some matrix of the batch needs squaring by its
   1-norm (one product more); ``||A^4||`` (otherwise), ``||A^6||, ||A^7||`` are bounded by
   products of those norms. On a non-normal matrix this takes far fewer squarings than
   ``||A||_1`` (PyTorch's choice): on ``[[-1, 1e10], [0, -1.01]]`` 17 against 34, and a
   relative error of 2e-13 against 1e-6.
2. The degree is chosen once for the whole batch (one branch), the squarings per matrix,
   as in ``_pade.py``.
3. The Frechet derivative differentiates the evaluation scheme by the product rule, reusing
   the forward pass's products (a "tape"), so the scheme's derivative costs two products
   per product of the forward pass; the squaring phase is ``_pade``'s. Every intermediate
   is a polynomial in ``A`` with scalar coefficients, so the tape of ``A^T`` is the
   transposed tape of ``A`` and the adjoint ``L_exp(A^T, E)`` runs the same code on
   transposed residuals.
"""

from __future__ import annotations

import math
from typing import NamedTuple, cast

import jax
import jax.numpy as jnp
from jax import lax

from linest.gradients._pade import _eye_like, _mT, _onenorm, _prescale, _scale, _squaring_loop

DEGREES = (1, 2, 4, 8, 12, 18)
# Largest alpha for which T_m's backward error is below the unit roundoff (Bader, Blanes and
# Casas 2019, Table 1; the values PyTorch's matrix_exp uses).
_THETAS_DOUBLE = (2.220446049250313e-16, 2.580956802971767e-08, 3.397168839976962e-04,
                  4.991228871115323e-02, 2.996158913811580e-01, 1.090863719290036e00)  # fmt: skip
_THETAS_SINGLE = (1.192092800768788e-07, 5.978858893805233e-04, 5.116619363445086e-02,
                  5.800524627688768e-01, 1.461661507209034e00, 3.010066362817634e00)  # fmt: skip
_PRODUCTS = 3  # tape slots beyond A^2 and A^3 (degree 18 needs three more products)

# Degree 8 (Bader, Blanes and Casas 2019, eq. 16); the test checks all nine coefficients.
_SQRT177 = math.sqrt(177.0)
_X3 = 2.0 / 3.0
_X1 = _X3 * (1.0 + _SQRT177) / 88.0
_X2 = _X3 * (1.0 + _SQRT177) / 352.0
_X4 = (-271.0 + 29.0 * _SQRT177) / (315.0 * _X3)
_X5 = (-11.0 + 11.0 * _SQRT177) / (1260.0 * _X3)
_X6 = (-99.0 + 11.0 * _SQRT177) / (5040.0 * _X3)
_X7 = (89.0 - _SQRT177) / (5040.0 * _X3 * _X3)  # x3^2: PyTorch's x3 gives a wrong A^5 term
_Y2 = (857.0 - 58.0 * _SQRT177) / 630.0

# Degree 12: rows combine (I, A, A^2, A^3) (eq. 17 and Table 2 of the paper).
_B12 = (
    (9.0198e-16, 0.46932117595418237389, -0.20099424927047284052, -0.04623946134063071740),
    (5.31597895759871264183, 1.19926790417132231573, 0.01179296240992997031,
     0.01108844528519167989),
    (0.18188869982170434744, 0.05502798439925399070, 0.09351590770535414968,
     0.00610700528898058230),
    (-2.0861320e-13, -0.13181061013830184015, -0.02027855540589259079,
     -0.00675951846863086359),
)  # fmt: skip
# Degree 18: rows combine (I, A, A^2, A^3, A^6) (eq. 18 and Table 3 of the paper).
_B18 = (
    (0.0, -1.00365581030144618291e-01, -8.02924648241156932449e-03,
     -8.92138498045729985177e-04, 0.0),
    (0.0, 3.97849749499645077844e-01, 1.36783778460411720168e00,
     4.98289622525382669416e-01, -6.37898194594723280150e-04),
    (-1.09676396052962061844e01, 1.68015813878906206114e00, 5.71779846478865511061e-02,
     -6.98210122488052056106e-03, 3.34975017086070470649e-05),
    (-9.04316832390810593223e-02, -6.76404519071381882256e-02, 6.75961301770459654925e-02,
     2.95552570429315521194e-02, -1.39180257516060693404e-05),
    (0.0, 0.0, -9.23364619367118555360e-02, -1.69364939002081722752e-02,
     -1.40086798182036094347e-05),
)  # fmt: skip


def _thetas(dtype) -> tuple[float, ...]:
    return _THETAS_DOUBLE if jnp.finfo(dtype).bits == 64 else _THETAS_SINGLE


class _Dual:
    """A matrix and its directional derivative; ``dx is None`` means a zero derivative."""

    __slots__ = ("dx", "x")

    def __init__(self, x, dx=None):
        self.x, self.dx = x, dx

    def __add__(self, other):
        if not isinstance(other, _Dual):
            return _Dual(self.x + other, self.dx)
        if self.dx is None or other.dx is None:
            return _Dual(self.x + other.x, other.dx if self.dx is None else self.dx)
        return _Dual(self.x + other.x, self.dx + other.dx)

    __radd__ = __add__

    def __mul__(self, c: float):
        return _Dual(c * self.x, None if self.dx is None else c * self.dx)

    __rmul__ = __mul__


def _combine(coefficients, terms):
    """sum(c * X) over the nonzero coefficients."""
    return sum(c * X for c, X in zip(coefficients, terms) if c != 0.0)


def _scheme(m: int, eye, B, A2, A3, mul):
    """T_m(B) by Bader, Blanes and Casas's scheme; ``mul`` is the only matrix product."""
    if m == 1:
        return eye + B
    if m == 2:
        return eye + B + 0.5 * A2
    if m == 4:
        return eye + B + mul(A2, 0.5 * eye + (1.0 / 6.0) * B + (1.0 / 24.0) * A2)
    if m == 8:
        A4 = mul(A2, _X1 * B + _X2 * A2)
        A8 = mul(_X3 * A2 + A4, _X4 * eye + _X5 * B + _X6 * A2 + _X7 * A4)
        return eye + B + _Y2 * A2 + A8
    powers = (eye, B, A2, A3)
    if m == 12:
        C0, C1, C2, C3 = (_combine(row, powers) for row in _B12)
        A6 = C2 + mul(C3, C3)
        return C0 + mul(C1 + A6, A6)
    A6 = mul(A3, A3)
    powers = (*powers, A6)
    C1, C2, C3, C4, C5 = (_combine(row, powers) for row in _B18)
    A9 = mul(C1, C5) + C4
    return C2 + mul(C3 + A9, A9)


class TaylorResiduals(NamedTuple):
    """What the forward pass keeps: ``B = A / 2**s``, its square and cube, the scheme's
    other products (zero-padded to three), ``X0 = T_m(B)``, the squarings ``s``, the
    degree index (one for the batch) and whether the input was finite."""

    B: jax.Array
    B2: jax.Array
    B3: jax.Array
    tape: tuple[jax.Array, ...]
    X0: jax.Array
    s: jax.Array
    degree: jax.Array
    finite: jax.Array


def expm_with_residuals(A) -> tuple[jax.Array, TaylorResiduals]:
    """exp(A) for a stack ``(..., d, d)`` and the residuals :func:`frechet` needs.

    Cost: 2 products for the powers (3 if squaring), 0-3 more for the scheme (by degree) and ``max(s)``
    squarings. A matrix with a non-finite entry gives NaN and is left out of the
    batch-wide degree choice.
    """
    thetas = _thetas(A.dtype)
    real = jnp.finfo(A.dtype).dtype
    batch = A.shape[:-2]
    theta_top = thetas[-1]
    _, finite, _, s1, B = _prescale(A, theta_top)
    B2 = B @ B
    B3 = B2 @ B
    n1, n2, n3 = _onenorm(B), _onenorm(B2), _onenorm(B3)
    # ||A^4|| exactly (one product) only where a matrix needs squaring by its 1-norm, where
    # saving squarings pays; else its bound min(||A^2||^2, ||A|| ||A^3||) serves.
    n4_bound = jnp.minimum(n2 * n2, n1 * n3)
    n4 = lax.cond(
        jnp.any(s1 > 0), lambda: jnp.minimum(_onenorm(B2 @ B2), n4_bound), lambda: n4_bound
    )
    d2, d3, d4 = n2 ** (1 / 2), n3 ** (1 / 3), n4 ** (1 / 4)
    # ||A^6|| and ||A^7|| bounded by products of the norms at hand.
    d6 = jnp.minimum(n3 * n3, n4 * n2) ** (1 / 6)
    d7 = jnp.minimum(n4 * n3, n3 * n3 * n1) ** (1 / 7)
    alpha2 = jnp.maximum(d2, d3)  # degrees 1-4: every k >= 2 is a sum of 2s and 3s
    alpha3 = jnp.maximum(d3, d4)  # degree 8: every k >= 6 is a sum of 3s and 4s
    # Degrees 12 and 18: every k >= 10 is also a sum of 4s, 6s and 7s.
    alpha4 = jnp.minimum(alpha3, jnp.maximum(jnp.maximum(d4, d6), d7))
    to_A = jnp.ldexp(jnp.ones((), real), s1)

    fits = []
    for m, theta in zip(DEGREES[:-1], thetas[:-1]):
        eta = (alpha2 if m <= 4 else alpha3 if m == 8 else alpha4) * to_A
        fits.append(jnp.all((eta <= theta) | ~finite))
    fits.append(jnp.asarray(True))
    index = jnp.argmax(jnp.stack(fits)).astype(jnp.int32)

    log2_ratio = jnp.log2(jnp.where(alpha4 > 0, alpha4 / theta_top, 1.0))
    s_top = jnp.maximum(s1 + jnp.ceil(log2_ratio).astype(jnp.int32), 0)
    s_top = jnp.where(alpha4 > 0, s_top, 0)
    s = jnp.where(index == len(DEGREES) - 1, s_top, 0)

    shift = s1 - s  # B * 2**(s1 - s), exact
    B = _scale(B, -shift)
    B2 = _scale(B2, -2 * shift)
    B3 = _scale(B3, -3 * shift)

    def branch(m, ops):
        B, B2, B3 = ops
        tape = []

        def mul(X, Y):
            tape.append(X @ Y)
            return tape[-1]

        X0 = _scheme(m, _eye_like(B), B, B2, B3, mul)
        tape += [jnp.zeros_like(B)] * (_PRODUCTS - len(tape))
        return X0, tuple(tape)

    branches = [lambda ops, m=m: branch(m, ops) for m in DEGREES]
    X0, tape = lax.switch(index, branches, (B, B2, B3))
    R, _ = _squaring_loop(X0, s)
    R = jnp.where(finite[..., None, None], R, jnp.nan)
    degree = jnp.broadcast_to(index, batch)
    return R, TaylorResiduals(B, B2, B3, tape, X0, s, degree, finite)


def expm(A) -> jax.Array:
    """exp(A) for a stack of matrices; see :func:`expm_with_residuals`."""
    return expm_with_residuals(A)[0]


def _scheme_frechet(m: int, r: TaylorResiduals, E):
    """D_E T_m(B): the scheme run on (value, derivative) pairs, values read off the tape."""
    tape = iter((r.B2, r.B3, *r.tape))

    def mul(X: _Dual, Y: _Dual) -> _Dual:
        value = next(tape)
        parts = []
        if X.dx is not None:
            parts.append(X.dx @ Y.x)
        if Y.dx is not None:
            parts.append(X.x @ Y.dx)
        return _Dual(value, sum(parts[1:], parts[0]) if parts else None)

    B = _Dual(r.B, E)
    B2 = mul(B, B)
    B3 = mul(B2, B)
    out = _scheme(m, _Dual(_eye_like(r.B)), B, B2, B3, mul)
    return out.dx if out.dx is not None else jnp.zeros_like(E)


def frechet(r: TaylorResiduals, E, transpose: bool = False) -> jax.Array:
    """L_exp(A, E) from the residuals of A, or its adjoint L_exp(A^T, E) if ``transpose``.

    Cost: 2 products per product of the forward scheme (4-14 by degree) and 3 per squaring.
    """
    if transpose:
        r = r._replace(B=_mT(r.B), B2=_mT(r.B2), B3=_mT(r.B3),
                       tape=tuple(_mT(X) for X in r.tape), X0=_mT(r.X0))  # fmt: skip
    index = r.degree.reshape(-1)[0] if r.degree.ndim else r.degree
    E = E.astype(jnp.result_type(E.dtype, r.B.dtype))
    E = jnp.broadcast_to(E, jnp.broadcast_shapes(E.shape, r.B.shape))

    def scheme_part(E):
        branches = [lambda E, m=m: _scheme_frechet(m, r, E) for m in DEGREES]
        return lax.switch(index, branches, E)

    if not transpose:
        _, L = _squaring_loop(r.X0, r.s, scheme_part(_scale(E, r.s)))
    else:  # the squaring maps commute; see _pade.frechet
        _, G = _squaring_loop(r.X0, r.s, E)
        L = _scale(scheme_part(cast(jax.Array, G)), r.s)
    return jnp.where(r.finite[..., None, None], cast(jax.Array, L), jnp.nan)


__all__ = ["DEGREES", "TaylorResiduals", "expm", "expm_with_residuals", "frechet"]
