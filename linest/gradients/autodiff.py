"""AutoDiff: plain JAX autodiff through jax.scipy.linalg.expm, the baseline."""

from __future__ import annotations

import equinox as eqx
import jax.scipy.linalg as jsl


class AutoDiff(eqx.Module):
    """``jax.grad`` through ``jax.scipy.linalg.expm``: the baseline every method is compared to.

    Not a strategy of the engine: :func:`linest.expm` calls ``jax.scipy.linalg.expm``
    directly, and JAX differentiates through its Pade branches and squarings.

    **Cost**: the reverse pass stores and transposes every step, 4-5 times the forward
    pass measured on a 2-core CPU. Under ``vmap`` every Pade branch and all
    ``max_squarings`` squarings are evaluated for every matrix.
    **Known defect, kept on purpose as the baseline**: when ``||M||_1`` needs more than
    ``max_squarings`` (16) squarings, about ``||M||_1 > 3.5e5``, the forward value is NaN
    and the gradient silently becomes zeros. :class:`Exact` has no such limit.
    """

    max_squarings: int = eqx.field(static=True, default=16)

    def expm(self, M):
        return jsl.expm(M, max_squarings=self.max_squarings)
