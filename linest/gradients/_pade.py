"""Batched scaling-and-squaring Pade approximation of exp(A) and its Frechet derivative.

Everything here is plain JAX on stacks of matrices of shape ``(..., d, d)``; the
primitives in ``_primitives.py`` wrap it so that ``jax.vmap`` and autodiff reach it
without paying for every branch.

Algorithm (Al-Mohy & Higham 2009, "A new scaling and squaring algorithm for the matrix
exponential", SIAM J. Matrix Anal. Appl. 31:970, Algorithm 5.1; Frechet part from
Al-Mohy & Higham 2009, "Computing the Frechet derivative of the matrix exponential",
SIAM J. Matrix Anal. Appl. 30:1639, Algorithm 6.4):

1. Degree ``m`` and squarings ``s`` come from the sharper bounds
   ``alpha_p = max(||A^(2p)||^(1/2p), ||A^(2p+2)||^(1/(2p+2)))`` (eq. 4.2 of the first
   paper) instead of ``||A||_1``, which avoids over-scaling non-normal matrices, plus the
   ``ell`` correction (eq. 5.1) that adds squarings when ``|A|`` is much larger than the
   bounds suggest.
2. ``m`` is chosen once for the whole batch (the largest any matrix needs), so a batch
   evaluates one Pade branch; ``s`` is per matrix, and the squaring loop runs
   ``max(s)`` times with finished matrices masked. ``jax.scipy.linalg.expm`` under
   ``vmap`` evaluates all five branches and all 16 squarings for every matrix, and
   returns NaN beyond 16 squarings.
3. :func:`frechet` applies ``L_exp(A, E)`` from the stored residuals. Its adjoint under
   ``<X, Y> = sum(X * Y)`` (JAX's convention, no conjugation) is the same computation on
   the transposed residuals, because every piece is a polynomial or rational function of
   ``A`` with scalar coefficients, so ``L_r(A, .)^T = L_r(A^T, .)``.
"""

from __future__ import annotations

import math
from typing import NamedTuple, cast

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
from jax import lax

# Pade coefficients b_k of r_m = p_m / q_m (Higham 2005, eq. 2.10 and Table 2.3).
_B = {
    3: (120.0, 60.0, 12.0, 1.0),
    5: (30240.0, 15120.0, 3360.0, 420.0, 30.0, 1.0),
    7: (17297280.0, 8648640.0, 1995840.0, 277200.0, 25200.0, 1512.0, 56.0, 1.0),
    9: (
        17643225600.0, 8821612800.0, 2075673600.0, 302702400.0, 30270240.0,
        2162160.0, 110880.0, 3960.0, 90.0, 1.0,
    ),
    13: (
        64764752532480000.0, 32382376266240000.0, 7771770303897600.0,
        1187353796428800.0, 129060195264000.0, 10559470521600.0, 670442572800.0,
        33522128640.0, 1323241920.0, 40840800.0, 960960.0, 16380.0, 182.0, 1.0,
    ),
}  # fmt: skip


class _Table(NamedTuple):
    degrees: tuple[int, ...]
    thetas: tuple[float, ...]
    unit_roundoff: float


# theta_m: largest alpha for which r_m has backward error <= u (Al-Mohy & Higham 2009,
# Table 3.1 for double; Higham 2005, Table 2.1 for single). theta_13 = 4.25 follows
# scipy.linalg.expm, which uses it together with the ell correction.
_DOUBLE = _Table((3, 5, 7, 9, 13), (1.495585217958292e-2, 2.539398330063230e-1,
                 9.504178996162932e-1, 2.097847961257068e0, 4.25), 2.0**-53)  # fmt: skip
_SINGLE = _Table((3, 5, 7), (4.258730016922831e-1, 1.880152677804762e0,
                 3.925724783138660e0), 2.0**-24)  # fmt: skip


def _table(dtype) -> _Table:
    return _DOUBLE if jnp.finfo(dtype).bits == 64 else _SINGLE


class PadeResiduals(NamedTuple):
    """What the forward pass keeps for the derivative; every leaf leads with the batch shape.

    ``B`` is ``A / 2**s``; ``B2, B4, B6`` its even powers; ``W1, Z1`` the inner
    Paterson-Stockmeyer factors (zero below degree 9); ``W`` the odd part with
    ``U = B W``; ``lu, pivots`` the LU factors of ``q_m(B) = V - U``; ``X0 = r_m(B)``;
    ``s`` the squarings; ``degree`` the Pade degree (the same for the whole batch);
    ``finite`` whether the input was finite.
    """

    B: jax.Array
    B2: jax.Array
    B4: jax.Array
    B6: jax.Array
    W1: jax.Array
    Z1: jax.Array
    W: jax.Array
    lu: jax.Array
    pivots: jax.Array
    X0: jax.Array
    s: jax.Array
    degree: jax.Array
    finite: jax.Array


def _onenorm(X):
    return jnp.max(jnp.sum(jnp.abs(X), axis=-2), axis=-1)


def _mT(X):
    return jnp.swapaxes(X, -1, -2)


def _scale(X, s):
    """X * 2**(-s) per matrix, exact in floating point."""
    real = jnp.finfo(X.dtype).dtype
    factor = jnp.ldexp(jnp.ones((), real), -s)
    return X * factor[..., None, None].astype(X.dtype)


def _log2_onenorm_abs_powers(A, powers: tuple[int, ...]) -> dict[int, jax.Array]:
    """log2 || |A|^p ||_1 for each p, exactly: |A| >= 0, so 1^T |A|^p holds the column sums.

    One chain of max(powers) vector-matrix products, unrolled (no loop overhead) and
    rescaled at every step so that nothing overflows. Because |2^-s A|^p = 2^(-ps) |A|^p,
    this one chain serves every Pade degree and every scaling.
    """
    absA = jnp.abs(A)
    w = jnp.ones(A.shape[:-1], absA.dtype)[..., None, :]  # row vector 1^T, (..., 1, d)
    log2_scale = jnp.zeros(A.shape[:-2], absA.dtype)
    out = {}
    for k in range(1, max(powers) + 1):
        w = w @ absA
        peak = jnp.max(w, axis=(-1, -2))
        positive = peak > 0
        safe = jnp.where(positive, peak, 1.0)
        w = w / safe[..., None, None]
        log2_scale = log2_scale + jnp.log2(safe)
        if k in powers:
            out[k] = jnp.where(positive, log2_scale, -jnp.inf)
    return out


def _ell(log2_abs_power, log2_norm, m: int, table: _Table):
    """Extra squarings so that r_m is evaluated accurately (eq. 5.1 of the 2009 paper).

    ``log2_abs_power = log2 || |B|^(2m+1) ||_1`` and ``log2_norm = log2 ||B||_1``.
    """
    p = 2 * m + 1
    log2_abs_c_recip = math.log2(math.comb(2 * m, m)) + math.log2(math.factorial(p))
    log2_alpha = log2_abs_power - log2_norm - log2_abs_c_recip
    value = jnp.ceil((log2_alpha - math.log2(table.unit_roundoff)) / (2 * m))
    value = jnp.where(jnp.isfinite(log2_alpha), value, 0.0)
    return jnp.clip(value, 0, 64).astype(jnp.int32)


def _prescale(A, theta_top: float):
    """Zero the non-finite matrices, then ``B = A / 2**s1`` with ``||B||_1 <= theta_top``,
    so that the powers formed to choose the degree cannot overflow.

    Returns ``(A, finite, ||A||_1, s1, B)``."""
    finite = jnp.all(jnp.isfinite(A), axis=(-1, -2))
    A = jnp.where(finite[..., None, None], A, 0)
    norm_A = _onenorm(A)
    s1 = jnp.where(norm_A > theta_top, jnp.ceil(jnp.log2(norm_A / theta_top)), 0.0)
    s1 = s1.astype(jnp.int32)
    return A, finite, norm_A, s1, _scale(A, s1)


def _eye_like(X):
    return jnp.broadcast_to(jnp.eye(X.shape[-1], dtype=X.dtype), X.shape)


def _pade_parts(m: int, B, B2, B4, B6):
    """(W1, Z1, W, V) for degree m; U = B @ W. W1, Z1 are zero below degree 9."""
    b = _B[m]
    identity = _eye_like(B)
    zeros = jnp.zeros_like(B)
    powers = (identity, B2, B4, B6)
    if m <= 7:
        W = sum(b[2 * k + 1] * powers[k] for k in range(m // 2 + 1))
        V = sum(b[2 * k] * powers[k] for k in range(m // 2 + 1))
        return zeros, zeros, W, V
    if m == 9:  # B^8 = B4 @ B4
        W1, Z1 = b[9] * B4, b[8] * B4
        W = B4 @ W1 + b[7] * B6 + b[5] * B4 + b[3] * B2 + b[1] * identity
        V = B4 @ Z1 + b[6] * B6 + b[4] * B4 + b[2] * B2 + b[0] * identity
        return W1, Z1, W, V
    W1 = b[13] * B6 + b[11] * B4 + b[9] * B2
    Z1 = b[12] * B6 + b[10] * B4 + b[8] * B2
    W = B6 @ W1 + b[7] * B6 + b[5] * B4 + b[3] * B2 + b[1] * identity
    V = B6 @ Z1 + b[6] * B6 + b[4] * B4 + b[2] * B2 + b[0] * identity
    return W1, Z1, W, V


def _pade_frechet_parts(m: int, r: PadeResiduals, E):
    """(Lu, Lv): derivatives of U = B W and V in direction E (Al-Mohy & Higham, Alg. 6.4)."""
    b = _B[m]
    M2 = r.B @ E + E @ r.B
    M4 = r.B2 @ M2 + M2 @ r.B2
    if m <= 5:
        Lw = b[3] * M2 + (b[5] * M4 if m == 5 else 0.0)
        Lv = b[2] * M2 + (b[4] * M4 if m == 5 else 0.0)
    elif m == 7:
        M6 = r.B4 @ M2 + M4 @ r.B2
        Lw = b[7] * M6 + b[5] * M4 + b[3] * M2
        Lv = b[6] * M6 + b[4] * M4 + b[2] * M2
    elif m == 9:
        M6 = r.B4 @ M2 + M4 @ r.B2
        M8 = r.B4 @ M4 + M4 @ r.B4
        Lw = b[9] * M8 + b[7] * M6 + b[5] * M4 + b[3] * M2
        Lv = b[8] * M8 + b[6] * M6 + b[4] * M4 + b[2] * M2
    else:
        M6 = r.B4 @ M2 + M4 @ r.B2
        Lw = (
            r.B6 @ (b[13] * M6 + b[11] * M4 + b[9] * M2)
            + M6 @ r.W1
            + (b[7] * M6 + b[5] * M4 + b[3] * M2)
        )
        Lv = (
            r.B6 @ (b[12] * M6 + b[10] * M4 + b[8] * M2)
            + M6 @ r.Z1
            + (b[6] * M6 + b[4] * M4 + b[2] * M2)
        )
    Lu = r.B @ Lw + E @ r.W
    return Lu, Lv


def _lu_solve(lu, pivots, rhs, trans: int):
    batch = jnp.broadcast_shapes(lu.shape[:-2], rhs.shape[:-2])
    lu = jnp.broadcast_to(lu, batch + lu.shape[-2:])
    pivots = jnp.broadcast_to(pivots, batch + pivots.shape[-1:])
    rhs = jnp.broadcast_to(rhs, batch + rhs.shape[-2:])
    return jsl.lu_solve((lu, pivots), rhs, trans=trans)


def _squaring_loop(X, s, L=None):
    """Square X (and carry L -> X L + L X) s times per matrix; runs max(s) steps."""
    steps = jnp.max(s) if s.ndim else s
    if L is not None:
        L = jnp.broadcast_to(L, jnp.broadcast_shapes(X.shape, L.shape))

    def cond(carry):
        return carry[0] < steps

    def body(carry):
        k, X, L = carry
        active = (k < s)[..., None, None]
        if L is not None:
            L = jnp.where(active, X @ L + L @ X, L)
        X = jnp.where(active, X @ X, X)
        return k + 1, X, L

    _, X, L = lax.while_loop(cond, body, (jnp.zeros((), s.dtype), X, L))
    return X, L


def expm_with_residuals(A) -> tuple[jax.Array, PadeResiduals]:
    """exp(A) for a stack ``(..., d, d)`` and the residuals :func:`frechet` needs.

    Cost: 3 products for the powers, 1-3 for the Pade factors, one LU solve, ``max(s)``
    squarings, and ``O(d^2)`` vector products for the ``ell`` bounds. A matrix with a
    non-finite entry gives a NaN result (and is excluded from the batch-wide choices).
    """
    table = _table(A.dtype)
    real = jnp.finfo(A.dtype).dtype
    batch = A.shape[:-2]
    theta_top = table.thetas[-1]
    A, finite, norm_A, s1, B = _prescale(A, theta_top)
    B2 = B @ B
    B4 = B2 @ B2
    B6 = B4 @ B2
    n2, n4, n6 = _onenorm(B2), _onenorm(B4), _onenorm(B6)
    # Exact d_4, d_6; upper bounds for d_8 <= (||B^4||^2)^(1/8), d_10 <= (||B^4|| ||B^6||)^(1/10).
    d4, d6 = n4 ** (1 / 4), n6 ** (1 / 6)
    d8 = jnp.minimum(n4 * n4, n2 * n6) ** (1 / 8)
    d10 = (n4 * n6) ** (1 / 10)
    alpha2, alpha3, alpha4 = jnp.maximum(d4, d6), jnp.maximum(d6, d8), jnp.maximum(d8, d10)
    to_A = jnp.ldexp(jnp.ones((), real), s1)  # alpha(A) = alpha(B) * 2**s1
    log2_abs = _log2_onenorm_abs_powers(A, tuple(2 * m + 1 for m in table.degrees))
    log2_norm_A = jnp.log2(jnp.where(norm_A > 0, norm_A, 1.0))

    # Lower degrees need no squaring; each is taken only if every matrix in the batch fits.
    eta_low = {3: alpha2, 5: alpha2, 7: alpha3, 9: alpha3}
    top = table.degrees[-1]
    fits = []
    for m, theta in zip(table.degrees[:-1], table.thetas[:-1]):
        ok = (eta_low[m] * to_A <= theta) & (_ell(log2_abs[2 * m + 1], log2_norm_A, m, table) == 0)
        fits.append(jnp.all(ok | ~finite))
    fits.append(jnp.asarray(True))
    index = jnp.argmax(jnp.stack(fits)).astype(jnp.int32)

    eta_top = jnp.minimum(alpha3, alpha4) if top == 13 else alpha3
    log2_ratio = jnp.log2(jnp.where(eta_top > 0, eta_top / theta_top, 1.0))
    s_top = jnp.maximum(s1 + jnp.ceil(log2_ratio).astype(jnp.int32), 0)
    s_top = jnp.where(eta_top > 0, s_top, 0)
    # ell on the matrix actually used, 2**-s_top A: || |B|^p || = 2^(-p s) || |A|^p ||.
    p_top = 2 * top + 1
    s_f = s_top.astype(real)
    s_top = s_top + _ell(log2_abs[p_top] - p_top * s_f, log2_norm_A - s_f, top, table)
    s = jnp.where(index == len(table.degrees) - 1, s_top, 0)

    # Final scaled matrix and powers: B * 2**(s1 - s), exact.
    shift = s1 - s
    B = _scale(B, -shift)
    B2 = _scale(B2, -2 * shift)
    B4 = _scale(B4, -4 * shift)
    B6 = _scale(B6, -6 * shift)

    branches = [lambda ops, m=m: _pade_parts(m, *ops) for m in table.degrees]
    W1, Z1, W, V = lax.switch(index, branches, (B, B2, B4, B6))
    U = B @ W
    lu, pivots, _ = lax.linalg.lu(V - U)
    X0 = _lu_solve(lu, pivots, V + U, trans=0)
    R, _ = _squaring_loop(X0, s)
    R = jnp.where(finite[..., None, None], R, jnp.nan)
    degree = jnp.broadcast_to(index, batch)
    residuals = PadeResiduals(B, B2, B4, B6, W1, Z1, W, lu, pivots, X0, s, degree, finite)
    return R, residuals


def expm(A) -> jax.Array:
    """exp(A) for a stack of matrices; see :func:`expm_with_residuals`."""
    return expm_with_residuals(A)[0]


def frechet(r: PadeResiduals, E, transpose: bool = False) -> jax.Array:
    """L_exp(A, E) from the residuals of A, or its adjoint L_exp(A^T, E) if ``transpose``.

    ``E`` may carry more leading batch axes than the residuals (broadcasting), as
    forward-mode over many directions produces. Cost: 5-13 products for the Pade part
    (by degree), one LU solve, and 3 products per squaring.
    """
    table = _table(r.B.dtype)
    if transpose:
        # L_r(B, .)^T = L_r(B^T, .): transpose every residual matrix (XLA folds these
        # into the dot products) and solve with q(B)^T.
        r = r._replace(B=_mT(r.B), B2=_mT(r.B2), B4=_mT(r.B4), B6=_mT(r.B6),
                       W1=_mT(r.W1), Z1=_mT(r.Z1), W=_mT(r.W), X0=_mT(r.X0))  # fmt: skip
    trans = 1 if transpose else 0
    index = r.degree.reshape(-1)[0] if r.degree.ndim else r.degree
    E = E.astype(jnp.result_type(E.dtype, r.B.dtype))

    def pade_part(E):
        branches = [lambda E, m=m: _pade_frechet_parts(m, r, E) for m in table.degrees]
        Lu, Lv = lax.switch(index, branches, E)
        rhs = Lu + Lv + (Lu - Lv) @ r.X0
        return _lu_solve(r.lu, r.pivots, rhs, trans=trans)

    if not transpose:
        _, L = _squaring_loop(r.X0, r.s, pade_part(_scale(E, r.s)))
    else:
        # Adjoint of the squaring phase: the maps Z -> Z Y_k + Y_k Z (Y_k = X_k^T) commute,
        # so they can be applied in forward order while Y_k is squared along the way.
        _, G = _squaring_loop(r.X0, r.s, E)
        L = _scale(pade_part(cast(jax.Array, G)), r.s)
    return jnp.where(r.finite[..., None, None], cast(jax.Array, L), jnp.nan)


__all__ = ["PadeResiduals", "expm", "expm_with_residuals", "frechet"]
