"""CoarseGrid: a surrogate gradient for grid models, computed on a coarser grid."""

from __future__ import annotations

from typing import Any

import equinox as eqx


class CoarseGrid(eqx.Module):
    """The gradient of the same loss computed on a grid ``factor`` times coarser.

    For grid models (``AdvectionDiffusion``): the log-likelihood's *value* is computed on
    the model's own grid, exactly as with the default method, while its *gradient* is
    that of the same log-likelihood with the state on a grid ``factor`` times coarser
    in every direction (initial field restricted by block averages, predictions
    prolonged back to the data by piecewise-constant injection, sensors interpolated
    on the coarse grid). The parameters (diffusivity, velocity on its own coarse grid)
    are the same on both grids, so no parameter is restricted or prolonged.

    Cost of the gradient: a ``factor^d`` smaller state and, for an explicit solver, about
    ``factor^2`` fewer time steps (the diffusive stability limit scales with ``h^2``).
    Error: the discretisation error of the coarse grid, ``O((factor h)^2)`` for the
    central scheme; it does not vanish at the optimum, so the stationary point of a fit
    driven by it is biased (``linest.fit`` reports the exact gradient there). As an
    HMC force it keeps the chain exact (the accept step uses the exact value).

    Parameters
    ----------
    factor : int
        Coarsening factor, >= 2; every grid dimension must be divisible by it.
    inner : method or None
        The exact method used on the coarse grid (default: the model's default).
    """

    factor: int = eqx.field(static=True, default=2)
    inner: Any = eqx.field(static=True, default=None)

    def __check_init__(self):
        if not isinstance(self.factor, int) or self.factor < 2:
            raise ValueError(f"CoarseGrid(factor={self.factor!r}): factor must be an integer >= 2")
