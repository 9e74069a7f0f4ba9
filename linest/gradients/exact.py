"""Exact: the Frechet derivative of a scaling-and-squaring approximant of exp."""

from __future__ import annotations

from typing import Literal

import equinox as eqx

from linest.gradients import _pade, _taylor
from linest.gradients.base import AbstractGradient

_KERNELS = {"taylor": _taylor, "pade": _pade}


class Exact(AbstractGradient):
    """Exact derivative of ``exp(M)`` (the default).

    Reverse mode computes ``dL/dM = L_exp(M^T, G)`` (gradients.md, section 1), one
    Frechet derivative whatever the number of parameters, from the residuals of the
    forward pass; forward mode computes ``L_exp(M, E)`` the same way. The derivative is
    that of the approximant actually evaluated, so value and gradient are consistent to
    rounding.

    Two kernels:

    * ``"taylor"`` (default): Bader, Blanes and Casas's (2019) optimised Taylor polynomials
      of degree up to 18 (PyTorch's ``matrix_exp``), no linear solve. Forward: 3-6
      products and ``s`` squarings; derivative: 4-14 products and 3 per squaring.
      Measured on a 2-core CPU (benchmarks/RESULTS.md) it is 1.5-2.5x faster than the
      Pade kernel at every d from 8 to 512, float32 and float64, and faster than scipy's
      and jax.scipy's expm from d = 64 up; GPU peers (PyTorch) use it for the same
      reason, as batched LU solves are slow there.
    * ``"pade"``: Al-Mohy and Higham's (2009) scaling and squaring Pade approximant with
      their sharper squaring count (Algorithm 5.1) and Frechet derivative (Algorithm 6.4),
      as ``scipy.linalg.expm_frechet``. One LU solve per call. More accurate on strongly
      non-normal matrices: on ``[[-50, 1e10], [0, -60]]`` the relative error is 4e-14
      against the Taylor kernel's 7e-12; on the test families (dense, non-normal, rate
      and skew-Hermitian matrices) both agree with scipy to 1e-13.

    **Accuracy**: relative error of order ``cond(L) * u``; both kernels agree with
    ``scipy.linalg.expm_frechet`` to about 1e-15 on well-conditioned inputs. Finite and
    correct for ``||M||_1`` up to the overflow of ``exp(M)`` itself: no squaring limit
    (``jax.scipy.linalg.expm`` returns NaN past 16 squarings and its gradient then
    becomes zero).

    **When not to use it**: for a large sparse ``A`` that cannot be formed densely,
    use :class:`Adjoint` with :func:`linest.propagate`.

    Parameters
    ----------
    kernel : "taylor" or "pade"
        The approximant of exp and the Frechet derivative that goes with it.
    """

    kernel: Literal["taylor", "pade"] = eqx.field(static=True, default="taylor")

    def __check_init__(self):
        if self.kernel not in _KERNELS:
            raise ValueError(
                f"Exact(kernel={self.kernel!r}): expected one of {', '.join(map(repr, _KERNELS))}"
            )

    def forward(self, M):
        return _KERNELS[self.kernel].expm_with_residuals(M)

    def frechet(self, M, R, residuals, E, transpose):
        return _KERNELS[self.kernel].frechet(residuals, E, transpose)
