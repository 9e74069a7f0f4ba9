"""Fourier: the exact propagator of a circulant operator (periodic, constant coefficients).

A periodic stencil with constant coefficients (a finite-difference or finite-volume
Laplacian, constant advection) is a circulant matrix: the discrete Fourier transform
diagonalises it, so ``exp(tA) x0 = F^-1 exp(t lambda) F x0`` with ``lambda`` the stencil's
*symbol* (its eigenvalues, one per Fourier mode). Value and derivatives are exact (to
rounding): autodiff through ``rfftn``, ``exp`` and ``irfftn`` differentiates the discrete
operator itself, not an approximation of it. Cost ``O(N log N)`` per output time for
``N`` grid values, independent of stiffness (no time steps).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp


class Circulant(eqx.Module):
    """A real circulant operator on a periodic grid, given by its symbol.

    ``symbol`` has the shape of ``jnp.fft.rfftn`` of a grid field (last axis
    ``n // 2 + 1``): the eigenvalue of each real-FFT mode. Calling it applies the operator
    to a field of shape ``(..., *shape)``.
    """

    symbol: jax.Array
    shape: tuple[int, ...] = eqx.field(static=True)

    @property
    def axes(self) -> tuple[int, ...]:
        return tuple(range(-len(self.shape), 0))

    def __call__(self, v):
        spectrum = jnp.fft.rfftn(v, axes=self.axes)
        return jnp.fft.irfftn(self.symbol * spectrum, s=self.shape, axes=self.axes)


class Fourier(eqx.Module):
    """``x(t) = exp(tA) x0`` for a :class:`Circulant` ``A``, exactly, by the FFT.

    For :func:`linest.propagate` and the grid models (``AdvectionDiffusion`` with a
    constant velocity). Derivatives are plain autodiff through the FFT, exact; forward
    and reverse mode and ``jax.hessian`` all work. **When not to use it**: any
    non-constant coefficient (a velocity field that varies in space) or a non-periodic
    boundary: the operator is then not circulant; use :class:`Adjoint`.
    """

    def solve(self, A: Circulant, x0: jax.Array, ts: jax.Array) -> jax.Array:
        """``exp(t A) x0`` for each ``t`` in ``ts``: shape ``(..., len(ts), *A.shape)``."""
        if not isinstance(A, Circulant):
            raise TypeError(
                "propagate(gradient=Fourier()): A must be a linest.gradients.fourier.Circulant "
                f"(a periodic constant-coefficient operator given by its symbol); got "
                f"{type(A).__name__}"
            )
        if tuple(x0.shape[x0.ndim - len(A.shape) :]) != A.shape:
            raise ValueError(
                f"propagate(gradient=Fourier()): x0 has shape {x0.shape}, the grid is {A.shape}"
            )
        axes = A.axes
        spectrum = jnp.fft.rfftn(x0, axes=axes)[..., None, *(slice(None),) * len(A.shape)]
        factor = jnp.exp(ts.reshape((-1,) + (1,) * len(A.shape)) * A.symbol)
        return jnp.fft.irfftn(factor * spectrum, s=A.shape, axes=axes)
