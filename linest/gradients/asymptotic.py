"""Asymptotic: the large-t derivative for rate matrices (Theorem 2.1 of the notes, corrected)."""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from linest.gradients import _pade
from linest.gradients.base import AbstractGradient


class GeneratorResiduals(NamedTuple):
    pi: jax.Array  # (..., d) stationary distribution
    group_inverse: jax.Array  # (..., d, d) Q#
    offdiag_min: jax.Array  # (...,) smallest off-diagonal entry / scale
    rowsum_max: jax.Array  # (...,) largest |row sum| / scale
    pi_min: jax.Array  # (...,) smallest stationary probability


def stationary_distribution(Q: jax.Array) -> jax.Array:
    """pi with pi^T Q = 0, sum(pi) = 1, for an irreducible generator (batched).

    Solves ``(Q + 1 1^T)^T pi = 1``: ``pi^T (Q + 1 1^T) = pi^T 1 1^T = 1^T``, and
    ``Q + 1 1^T`` is nonsingular exactly when the chain has a single recurrent class.
    """
    ones = jnp.ones(Q.shape[:-1], Q.dtype)
    pi = jnp.linalg.solve(jnp.swapaxes(Q, -1, -2) + 1.0, ones[..., None])[..., 0]
    return pi / jnp.sum(pi, axis=-1, keepdims=True)


def group_inverse(Q: jax.Array, pi: jax.Array) -> jax.Array:
    """Q# = (Q - Pi)^-1 + Pi with Pi = 1 pi^T, so that Q Q# = Q# Q = I - Pi (Meyer 1975)."""
    Pi = jnp.broadcast_to(pi[..., None, :], Q.shape)
    return jnp.linalg.inv(Q - Pi) + Pi


class Asymptotic(AbstractGradient):
    """Large-``t`` derivative of ``exp(tQ)`` for an irreducible rate matrix ``Q``.

    gradients.md, section 3 (the corrected Theorem 2.1 of notes 001): with ``pi`` the
    stationary distribution, ``Pi = 1 pi^T`` and the group inverse ``Q#``,

        D_J exp(tQ) = t Pi J Pi - Pi J Q# - Q# J Pi + O(t exp(-g t)),

    ``g`` the spectral gap. For ``M = tQ`` and ``E = tJ`` this reads
    ``Pi E Pi - Pi E M# - M# E Pi`` with ``M# = Q#/t``, which is what is computed; the
    adjoint is ``Pi^T G Pi^T - Pi^T G M#^T - M#^T G Pi^T``.

    **Cost**: ``O(d^2)`` per derivative (every term has a rank-one factor) after one
    ``O(d^3)`` inverse in the forward pass.
    **Accuracy**: absolute error ``O(t exp(-g t))``: useless for ``t g`` below a few,
    excellent beyond 10. The notes' original statement (Moore-Penrose pseudo-inverse,
    term ``+ Q^+ J (I - Q Q^+)``) does not converge in general; this one does.
    **Refuses** a matrix that is not an irreducible generator (negative off-diagonal
    entry, non-zero row sum, or a stationary probability <= ``tolerance``):
    ``ValueError`` outside ``jit``, NaN inside.
    """

    tolerance: float = eqx.field(static=True, default=1e-10)

    def forward(self, M):
        R, _ = _pade.expm_with_residuals(M)
        d = M.shape[-1]
        scale = jnp.max(jnp.abs(M), axis=(-1, -2))
        scale = jnp.where(scale > 0, scale, 1.0)
        off = jnp.where(jnp.eye(d, dtype=bool), jnp.inf, jnp.real(M))
        offdiag_min = jnp.min(off, axis=(-1, -2)) / scale
        rowsum_max = jnp.max(jnp.abs(jnp.sum(M, axis=-1)), axis=-1) / scale
        pi = stationary_distribution(M)
        residuals = GeneratorResiduals(
            pi, group_inverse(M, pi), offdiag_min, rowsum_max, jnp.min(jnp.real(pi), axis=-1)
        )
        return R, residuals

    def _valid(self, r: GeneratorResiduals):
        return (
            (r.offdiag_min >= -self.tolerance)
            & (r.rowsum_max <= 1e3 * self.tolerance)
            & (r.pi_min > self.tolerance)
        )

    def frechet(self, M, R, residuals, E, transpose):
        pi, Qg = residuals.pi, residuals.group_inverse
        ones = jnp.ones_like(pi)
        # Pi = 1 pi^T. Forward: Pi E Pi - Pi E Q# - Q# E Pi; adjoint swaps the roles of 1 and pi.
        left, right = (pi, ones) if transpose else (ones, pi)  # Pi (or Pi^T) = left right^T
        if transpose:
            Qg = jnp.swapaxes(Qg, -1, -2)
        rE = jnp.einsum("...i,...ij->...j", right, E)  # right^T E
        Er = jnp.einsum("...ij,...j->...i", E, left)  # E left  (Pi^T's right factor is pi)
        # Pi E Pi = left (right^T E left) right^T
        scalar = jnp.einsum("...j,...j->...", rE, left)
        term1 = scalar[..., None, None] * left[..., :, None] * right[..., None, :]
        term2 = left[..., :, None] * jnp.einsum("...j,...jk->...k", rE, Qg)[..., None, :]
        term3 = jnp.einsum("...ij,...j->...i", Qg, Er)[..., :, None] * right[..., None, :]
        L = term1 - term2 - term3
        return jnp.where(self._valid(residuals)[..., None, None], L, jnp.nan)

    def diagnose(self, M, R, residuals):
        r = jax.tree.map(np.asarray, residuals)
        bad = ~np.asarray(self._valid(r))
        if not bad.any():
            return None
        index = tuple(int(i) for i in np.argwhere(bad)[0]) if bad.ndim else ()
        at = f" (batch index {index})" if index else ""
        pick = (lambda x: x[index]) if index else (lambda x: x)
        if pick(r.offdiag_min) < -self.tolerance:
            reason = "it has a negative off-diagonal entry"
        elif pick(r.rowsum_max) > 1e3 * self.tolerance:
            reason = f"its rows do not sum to zero (max |row sum| / max |entry| = {pick(r.rowsum_max):.3g})"
        else:
            reason = (
                "it is not irreducible (a stationary probability is "
                f"{pick(r.pi_min):.3g}: some state is transient or the chain splits)"
            )
        return f"the matrix is not an irreducible generator{at}: {reason}"
