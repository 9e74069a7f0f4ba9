"""The contract every gradient method of the engine fulfils.

A method is a strategy object (an equinox Module whose fields are all static
configuration, so it is hashable and can be a primitive parameter). The engine asks it
for two things:

* ``forward(M) -> (exp(M), residuals)``: the forward pass and whatever the backward
  pass will reuse. Every residual leaf leads with ``M``'s batch shape.
* ``frechet(M, R, residuals, E, transpose)``: the method's directional derivative
  ``D_E exp(M)`` (linear in ``E``), or with ``transpose=True`` its adjoint under
  ``<X, Y> = sum(X * Y)``, which is what reverse mode uses. ``E`` may have more
  leading batch axes than ``M`` (broadcasting).

The engine (``_primitives.py``) turns these into a JAX primitive pair, so that
``jax.grad``/``jax.vjp`` run ``frechet(..., transpose=True)``, ``jax.jvp`` runs
``frechet(..., transpose=False)``, and ``jax.vmap`` batches without evaluating every
branch. A method never sees which transformation is in use.
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax
from jaxtyping import Array, PyTree


class AbstractGradient(eqx.Module):
    """Base class of the gradient methods for ``exp(M)``.

    Subclasses are final and hold only static configuration.
    """

    @abc.abstractmethod
    def forward(self, M: Array) -> tuple[Array, PyTree]:
        """Return ``(exp(M), residuals)`` for ``M`` of shape ``(*batch, d, d)``."""

    @abc.abstractmethod
    def frechet(
        self,
        M: Array,
        R: Array,
        residuals: PyTree,
        E: Array,
        transpose: bool,
    ) -> Array:
        """The method's ``D_E exp(M)``, or its adjoint applied to ``E``.

        Shapes: ``M, R`` are ``(*batch, d, d)``, ``E`` is ``(*ebatch, d, d)`` with ``ebatch``
        broadcasting against ``batch``; the result has the broadcast shape.
        """

    def diagnose(self, M: jax.Array, R: jax.Array, residuals: PyTree) -> str | None:
        """Say why the derivative would be wrong for this (concrete) ``M``, or None.

        Called only outside ``jit`` (on concrete arrays), where the engine turns the
        message into a ``ValueError``. Inside ``jit`` the method returns NaN instead.
        """
        return None
