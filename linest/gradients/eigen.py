"""Eigen: divided differences from an eigendecomposition (Najfeld & Havel 1995)."""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from linest.gradients import _pade
from linest.gradients._batch import batch_any
from linest.gradients._primitives import expm_p
from linest.gradients.base import AbstractGradient
from linest.gradients.exact import Exact


def exp_divided_differences(lam: jax.Array) -> jax.Array:
    """Phi_ij = (e^lam_i - e^lam_j) / (lam_i - lam_j), Phi_ii = e^lam_i, without cancellation.

    Written as ``e^a * exprel(b - a)`` with ``a`` the eigenvalue of larger real part, so
    the argument of ``exprel(z) = (e^z - 1) / z`` has non-positive real part (no
    overflow), and a series for ``|z|`` small (no cancellation).
    """
    li, lj = lam[..., :, None], lam[..., None, :]
    first = jnp.real(li) >= jnp.real(lj)
    a = jnp.where(first, li, lj)
    z = jnp.where(first, lj - li, li - lj)
    small = jnp.abs(z) < 1e-3
    z_safe = jnp.where(small, jnp.ones_like(z), z)
    series = 1 + z / 2 * (1 + z / 3 * (1 + z / 4 * (1 + z / 5)))
    exprel = jnp.where(small, series, jnp.expm1(z_safe) / z_safe)
    return jnp.exp(a) * exprel


def _condition(V, Vinv):
    """||V||_F ||V^-1||_F / d, an upper bound on cond_2(V), per matrix of the batch."""
    d = V.shape[-1]
    return jnp.linalg.norm(V, axis=(-1, -2)) * jnp.linalg.norm(Vinv, axis=(-1, -2)) / d


def _mm(a, b):
    """``a @ b``; a real operand times a complex one as two real products (promoting the
    real one would cost twice the flops: real eigenvectors of a real Hamiltonian)."""
    if jnp.iscomplexobj(a) and not jnp.iscomplexobj(b):
        b = b.astype(jnp.real(a).dtype)
        return lax.complex(jnp.real(a) @ b, jnp.imag(a) @ b)
    if jnp.iscomplexobj(b) and not jnp.iscomplexobj(a):
        a = a.astype(jnp.real(b).dtype)
        return lax.complex(a @ jnp.real(b), a @ jnp.imag(b))
    return a @ b


class EigenResiduals(NamedTuple):
    lam: jax.Array  # (..., d) eigenvalues
    V: jax.Array  # (..., d, d) right eigenvectors, columns
    Vinv: jax.Array  # (..., d, d)
    condition: jax.Array  # (...,) ||V||_F ||V^-1||_F / d, an upper bound on cond_2(V)
    pade: _pade.PadeResiduals | None  # only with fallback=True


_STRUCTURES = ("general", "hermitian", "skew-hermitian", "imaginary-symmetric")


class Eigen(AbstractGradient):
    """Exact derivative from ``M = V diag(lam) V^-1``: ``L(M, E) = V ((V^-1 E V) o Phi) V^-1``.

    Phi holds the divided differences of exp at the eigenvalues (notes 001, the Phi
    matrix of section 2; Najfeld & Havel 1995). The adjoint is the same formula with
    ``V^-T``, since the eigenvectors of ``M^T`` are the columns of ``V^-T``.

    **Cost**: one eigendecomposition in the forward pass (about 10 matrix products for a
    general matrix, 3-4 for ``structure="hermitian"`` / ``"skew-hermitian"``), then 4
    products per derivative. Cheapest for normal matrices (the quantum model) and when
    one decomposition serves many derivatives.
    **Accuracy**: relative error about ``u * cond(V)``. Exact to rounding for normal
    matrices, where ``V`` is unitary.
    **When not to use it**: non-normal matrices with close eigenvalues, where ``V`` is
    ill-conditioned (relative error 1e17 was seen for cond(V) = 8e20). If the bound on
    ``cond(V)`` exceeds ``max_condition``, the method refuses: ``ValueError`` outside
    ``jit``, NaN inside. With ``fallback=True`` it uses :class:`Exact` instead for that
    batch.

    Parameters
    ----------
    structure : "general", "hermitian", "skew-hermitian" or "imaginary-symmetric"
        What is known of ``M``. The others than "general" use ``eigh`` (unitary ``V``,
        real or purely imaginary eigenvalues); the caller guarantees the structure.
        "imaginary-symmetric" is ``M = -i H`` with ``H`` real symmetric (a real
        Hamiltonian): a real ``eigh`` of ``H`` and real ``V``, about 5x cheaper than
        "skew-hermitian" at d = 1024.
    max_condition : float
        Largest accepted bound on ``cond(V)``; the expected relative error is about
        ``max_condition * 1e-16`` in double precision.
    fallback : bool
        Use the Pade Frechet derivative (:class:`Exact`) where ``V`` is ill-conditioned.
    """

    structure: Literal["general", "hermitian", "skew-hermitian", "imaginary-symmetric"] = eqx.field(
        static=True, default="general"
    )
    max_condition: float = eqx.field(static=True, default=1e8)
    fallback: bool = eqx.field(static=True, default=False)

    def __check_init__(self):
        if self.structure not in _STRUCTURES:
            raise ValueError(
                f"Eigen(structure={self.structure!r}): expected one of {', '.join(_STRUCTURES)}"
            )
        if not self.max_condition > 1:
            raise ValueError(f"Eigen(max_condition={self.max_condition}) must exceed 1")

    def _decompose(self, M):
        """(lam, V, V^-1) of each matrix of ``M``; NaN for a matrix with a non-finite
        entry. Such a matrix never reaches the solver: on a GPU one NaN matrix made
        cuSolver's geev fail the whole batch ("cuSolver internal error"), and samplers
        propose such matrices (exp(theta) overflowing far out in the tails)."""
        finite = jnp.all(jnp.isfinite(M), axis=(-2, -1))
        lam, V, Vinv = self._decompose_finite(jnp.where(finite[..., None, None], M, 0))
        lam = jnp.where(finite[..., None], lam, jnp.nan)
        V = jnp.where(finite[..., None, None], V, jnp.nan)
        Vinv = jnp.where(finite[..., None, None], Vinv, jnp.nan)
        return lam, V, Vinv

    def _decompose_finite(self, M):
        if self.structure == "hermitian":
            lam, V = jnp.linalg.eigh(M)
            return lam.astype(M.dtype), V, jnp.conj(jnp.swapaxes(V, -1, -2))
        if self.structure == "imaginary-symmetric":
            # M = -i H with H = Re(i M) real symmetric: a real eigh (5x faster than the
            # complex one at d = 1024) and real orthogonal V.
            w, V = jnp.linalg.eigh(jnp.real(1j * M))
            return -1j * w, V, jnp.swapaxes(V, -1, -2)
        if self.structure == "skew-hermitian":
            # M = -i H with H = i M Hermitian, so M = V diag(-i w) V^*.
            w, V = jnp.linalg.eigh(1j * M)
            return -1j * w, V, jnp.conj(jnp.swapaxes(V, -1, -2))
        # Eigenvector derivatives (used only by second derivatives) are valid for distinct
        # eigenvalues and well-conditioned V: the same domain where this method is valid.
        lam, V = lax.linalg.eig(M, compute_left_eigenvectors=False, enable_eigvec_derivs=True)
        identity = jnp.broadcast_to(jnp.eye(M.shape[-1], dtype=V.dtype), V.shape)
        return lam, V, jnp.linalg.solve(V, identity)

    def forward(self, M):
        R_pade, pade = _pade.expm_with_residuals(M)
        lam, V, Vinv = self._decompose(jnp.where(pade.finite[..., None, None], M, 0))
        condition = _condition(V, Vinv)
        residuals = EigenResiduals(lam, V, Vinv, condition, pade if self.fallback else None)
        return R_pade, residuals

    def frechet(self, M, R, residuals, E, transpose):
        lam, V, Vinv, condition, pade = residuals
        bad = ~(condition <= self.max_condition)  # NaN condition counts as bad

        def eigen_path(E):
            Vl, Vr = (
                (jnp.swapaxes(Vinv, -1, -2), jnp.swapaxes(V, -1, -2)) if transpose else (V, Vinv)
            )
            # In the eigenbasis of M (or M^T): Vr E Vl, scaled by Phi, then back.
            inner = _mm(_mm(Vr, E), Vl) * exp_divided_differences(lam)
            L = _mm(_mm(Vl, inner), Vr)
            return L if jnp.iscomplexobj(E) or jnp.iscomplexobj(M) else jnp.real(L)

        if self.fallback:
            L = lax.cond(
                batch_any(jnp.any(bad)),
                lambda E: _pade.frechet(pade, E, transpose).astype(E.dtype),
                lambda E: eigen_path(E).astype(E.dtype),
                E,
            )
            return L
        L = eigen_path(E)
        return jnp.where(bad[..., None, None], jnp.nan, L)

    def diagnose(self, M, R, residuals):
        if self.fallback:
            return None
        condition = np.asarray(residuals.condition)
        bad = ~(condition <= self.max_condition)
        if bad.any():
            index = tuple(int(i) for i in np.argwhere(bad)[0]) if bad.ndim else ()
            where = f" (batch index {index})" if index else ""
            return (
                f"the eigenvector matrix is ill-conditioned{where}: cond(V) <= "
                f"{float(condition[index] if index else condition):.3g} exceeds "
                f"max_condition={self.max_condition:.3g}, so divided differences would be "
                "inaccurate. Use Exact(), or Eigen(fallback=True) to fall back to it."
            )
        return None


# --------------------------------------------------------------- one decomposition, many t


def _times_value(lam, V, Vinv, ts, index):
    """P_k = V_g diag(exp(t_k lam_g)) V_g^-1 with g = index[k]."""
    scaled = V[index] * jnp.exp(ts[:, None] * lam[index])[:, None, :]
    return _mm(scaled, Vinv[index])


@jax.custom_jvp
def _shared(A, ts, index, lam, V, Vinv):
    P = _times_value(lam, V, Vinv, ts, index)
    return P if jnp.iscomplexobj(A) else jnp.real(P).astype(A.dtype)


def _shared_jvp(primals, tangents):
    # The decomposition is an input so that it is computed once per call, yet its
    # tangent is ignored: the derivative is the divided-difference formula in dA (and
    # dt), which is exact, rather than JAX's eigenvector derivative.
    A, ts, index, lam, V, Vinv = primals
    dA, dts = tangents[0], tangents[1]
    P = _shared(A, ts, index, lam, V, Vinv)
    zero = jax.custom_derivatives.SymbolicZero
    if isinstance(dA, zero):
        dA = jnp.zeros(A.shape, A.dtype)
    # L(tA, t dA) = t V ((V^-1 dA V) o Phi(t lam)) V^-1, written so that the product
    # V^-1 dA V is formed once per group: transposing it then sums the cotangents of
    # all times inside the eigenbasis before the two outer products (Najfeld-Havel).
    inner = _mm(_mm(Vinv, dA), V)[index]
    weights = ts[:, None, None] * exp_divided_differences(ts[:, None] * lam[index])
    L = _mm(_mm(V[index], inner * weights), Vinv[index])
    if not jnp.iscomplexobj(A):
        L = jnp.real(L).astype(A.dtype)
    if not isinstance(dts, zero):
        L = L + dts[:, None, None] * (A[index] @ P)  # d/dt exp(tA) = A exp(tA)
    return P, L


_shared.defjvp(_shared_jvp, symbolic_zeros=True)


def expm_times_shared(method: Eigen, A, ts, index):
    """``exp(ts[k] * A[index[k]])`` from one eigendecomposition per matrix of ``A``.

    Cost: one decomposition per group, then ``O(d^3)`` per time for the value and two
    products per time for the derivative, against a scaling-and-squaring run per time.
    With ``method.fallback`` the whole call uses the batched Pade path when any ``V``
    is ill-conditioned.
    """
    lam, V, Vinv = method._decompose(A)
    condition = _condition(V, Vinv)
    bad = jnp.any(~(condition <= method.max_condition))

    def eigen_path(A, ts):
        return _shared(A, ts, index, lam, V, Vinv)

    if method.fallback:

        def pade_path(A, ts):
            return expm_p.bind(ts[:, None, None] * A[index], gradient=Exact())

        return lax.cond(batch_any(bad), pade_path, eigen_path, A, ts)
    if not isinstance(condition, jax.core.Tracer):
        worst = float(jnp.max(jnp.where(jnp.isnan(condition), jnp.inf, condition)))
        if not worst <= method.max_condition:
            raise ValueError(
                f"the eigenvector matrix is ill-conditioned: cond(V) <= {worst:.3g} exceeds "
                f"max_condition={method.max_condition:.3g}, so the shared decomposition "
                "would be inaccurate. Use Exact(), or Eigen(fallback=True)."
            )
    P = eigen_path(A, ts)
    return jnp.where(bad, jnp.nan, P)


# ------------------------------------------------------- one decomposition, many states


#: Pairs of eigenvalues with ``t_max |lam_i - lam_j|`` below this use a Taylor series of
#: the divided difference (no cancellation); the others the difference quotient, whose
#: rounding error is then at most about ``u / threshold`` relative.
_CLOSE = 0.5
#: Terms of that series: the first dropped one is ``0.5**14 / 15! < 5e-17``.
_SERIES_TERMS = 14


def _states_value(ts, lam, V, c):
    """x(t_k) = V (exp(t_k lam) * c), shape (n, d)."""
    return _mm(jnp.exp(ts[:, None] * lam) * c, jnp.swapaxes(V, -1, -2))


@jax.custom_jvp
def _states(A, x0, ts, lam, V, Vinv):
    X = _states_value(ts, lam, V, _mm(Vinv, x0))
    return X if jnp.iscomplexobj(A) or jnp.iscomplexobj(x0) else jnp.real(X).astype(A.dtype)


def _states_jvp(primals, tangents):
    # d x(t) = L(tA, t dA) x0 + exp(tA) dx0 + dt A x(t), with the divided differences
    # of exp applied to the single vector c = V^-1 x0: per time O(d^2), never O(d^3).
    # Split L's kernel t Phi_ij(t) = (e^{t lam_i} - e^{t lam_j}) / (lam_i - lam_j) into its
    # two exponentials where the eigenvalues are apart (two (n, d) x (d, d) products in
    # all), and into the Taylor series of t e^{t lam_i} exprel(t (lam_j - lam_i)) where
    # they are close (the diagonal always). Like _shared, the decomposition's tangent is
    # ignored: the formula in dA is exact.
    A, x0, ts, lam, V, Vinv = primals
    dA, dx0, dts = tangents[0], tangents[1], tangents[2]
    X = _states(A, x0, ts, lam, V, Vinv)
    zero = jax.custom_derivatives.SymbolicZero
    dtype = jnp.result_type(lam.dtype, V.dtype)
    c = _mm(Vinv, x0).astype(dtype)
    E = jnp.exp(ts[:, None] * lam)  # (n, d)
    out = jnp.zeros(E.shape, dtype)  # in the eigenbasis
    if not isinstance(dA, zero):
        inner = _mm(_mm(Vinv, dA), V).astype(dtype)
        t_max = jnp.max(jnp.abs(ts))
        delta = lam[None, :] - lam[:, None]  # lam_j - lam_i
        close = t_max * jnp.abs(delta) < _CLOSE
        apart = jnp.where(close, 1.0, -delta)  # lam_i - lam_j where apart
        B = jnp.where(close, 0, inner / apart)
        out = out + E * (B @ c) - (E * c) @ jnp.swapaxes(B, -1, -2)

        def series(inner):
            terms, Q = [], jnp.where(close, inner, 0)
            for m in range(_SERIES_TERMS):
                terms.append(Q @ c / math.factorial(m + 1))
                Q = Q * delta
            N = jnp.stack(terms)  # (M, d)
            powers = ts[:, None] ** jnp.arange(1, _SERIES_TERMS + 1)  # (n, M)
            return E * (powers.astype(dtype) @ N)

        def diagonal(inner):
            return E * ts[:, None] * (jnp.diagonal(inner) * c)

        off_diagonal = close & ~jnp.eye(lam.shape[-1], dtype=bool)
        out = out + lax.cond(batch_any(jnp.any(off_diagonal)), series, diagonal, inner)
    if not isinstance(dx0, zero):
        out = out + E * _mm(Vinv, dx0)
    if not isinstance(dts, zero):
        out = out + dts[:, None] * E * lam * c
    dX = _mm(out, jnp.swapaxes(V, -1, -2))
    if not (jnp.iscomplexobj(A) or jnp.iscomplexobj(x0)):
        dX = jnp.real(dX).astype(A.dtype)
    return X, dX


_states.defjvp(_states_jvp, symbolic_zeros=True)


def propagate_shared(method: Eigen, A, x0, ts):
    """``x(t) = exp(tA) x0`` for every ``t`` in ``ts`` from one eigendecomposition of ``A``.

    ``A`` is ``(d, d)``, ``x0`` is ``(d,)``, the result ``(n, d)``. Cost: the
    decomposition, then ``O(n d^2)`` for the states and ``O(d^3 + n d^2)`` for a
    derivative (two products to and from the eigenbasis, shared by every time),
    against ``n`` matrix exponentials for the other matrix methods. The same
    conditioning rule as :func:`expm_times_shared`: refuse (or fall back to
    :class:`Exact` with ``method.fallback``) when ``V`` is ill-conditioned.
    """
    lam, V, Vinv = method._decompose(A)
    condition = _condition(V, Vinv)
    bad = ~(condition <= method.max_condition)

    def eigen_path(A, x0, ts):
        return _states(A, x0, ts, lam, V, Vinv)

    if method.fallback:

        def pade_path(A, x0, ts):
            E = expm_p.bind(ts[:, None, None] * A, gradient=Exact())
            return jnp.einsum("nij,j->ni", E, x0.astype(E.dtype)).astype(
                jnp.result_type(A.dtype, x0.dtype)
            )

        return lax.cond(batch_any(bad), pade_path, eigen_path, A, x0, ts)
    if not isinstance(condition, jax.core.Tracer) and bool(bad):
        raise ValueError(
            f"the eigenvector matrix is ill-conditioned: cond(V) <= {float(condition):.3g} "
            f"exceeds max_condition={method.max_condition:.3g}, so divided differences would "
            "be inaccurate. Use Exact(), or Eigen(fallback=True)."
        )
    X = eigen_path(A, x0, ts)
    return jnp.where(bad, jnp.nan, X)
