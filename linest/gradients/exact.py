"""Exact: the Frechet derivative of the scaling-and-squaring Pade approximant."""

from __future__ import annotations

from linest.gradients import _pade
from linest.gradients.base import AbstractGradient


class Exact(AbstractGradient):
    """Exact derivative of ``exp(M)`` (the default).

    Reverse mode computes ``dL/dM = L_exp(M^T, G)`` (gradients.md, section 1), one
    Frechet derivative whatever the number of parameters, from the residuals of the
    forward pass (Al-Mohy & Higham 2009, Algorithm 6.4, run on the transposed
    residuals). Forward mode computes ``L_exp(M, E)`` the same way.

    **Cost**: the forward pass is 6-7 matrix products, one LU solve and ``s``
    squarings; the backward pass adds 5-13 products (by Pade degree), one LU solve
    and 3 products per squaring.
    **Accuracy**: relative error of order ``cond(L) * u`` (Al-Mohy & Higham's backward
    error bound); agrees with ``scipy.linalg.expm_frechet`` to about 1e-15 on
    well-conditioned inputs. Finite and correct for ``||M||_1`` up to the overflow of
    ``exp(M)`` itself: no squaring limit (``jax.scipy.linalg.expm`` returns NaN past
    16 squarings and its gradient then becomes zero).

    **When not to use it**: for a large sparse ``A`` that cannot be formed densely,
    use :class:`Adjoint` with :func:`linest.propagate`.
    """

    def forward(self, M):
        return _pade.expm_with_residuals(M)

    def frechet(self, M, R, residuals, E, transpose):
        return _pade.frechet(residuals, E, transpose)
