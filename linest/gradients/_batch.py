"""One branch for a whole vmapped batch.

Under ``jax.vmap`` a ``lax.cond`` whose predicate differs between batch members becomes a
``select``: every member computes both branches. ``Eigen(fallback=True)`` decides per
call between the eigendecomposition and the Pade path, so 32 vmapped MCMC chains on cav
paid both, 4.0-4.3 ms per chain's value and gradient against 1.5 ms for the
eigendecomposition alone. :func:`batch_any` makes the decision once for the batch (the
fallback for all when any member needs it), so ``lax.cond`` keeps one branch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


@jax.custom_batching.custom_vmap
def batch_any(flag):
    """``flag`` (a boolean scalar) itself; under ``vmap``, True for every member of the
    batch if it is True for any (an unbatched result, so a ``lax.cond`` on it runs one
    branch for the whole batch)."""
    return flag


@batch_any.def_vmap
def _batch_any_rule(axis_size, in_batched, flag):
    (batched,) = in_batched
    return (jnp.any(flag) if batched else flag), False
