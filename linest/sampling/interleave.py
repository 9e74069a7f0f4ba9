"""Exact NUTS transitions interleaved with a surrogate kernel's (``exact_every``).

A surrogate lighter-tailed than the posterior (a Gaussian where the likelihood has a
plateau, as for a rate whose data allow 0) makes the surrogate kernels exact but not
geometrically ergodic: their trajectories rarely reach the posterior's tail, and when
they do the chain sticks there, since a proposal back towards the surrogate's centre
gains the surrogate's energy but not the posterior's. On cav (msm's example, 7 rates,
log q(2-4) flat towards 0) HMC trajectories on the Laplace surrogate reach the 1%
quantile of that rate (-6.55 under exact NUTS) in none of 4 x 2000 draws and stick at
-5 for up to 184 draws; their mean is 3 MCSE off exact NUTS at 4 x 2000 draws, and a
4 x 16000-draw run sat in that tail long enough to move the mean by 0.26 (its MCSE,
0.41, now honest about it).

Every ``every``-th draw an exact NUTS transition (the exact gradient; the adapted step
size and mass matrix) instead: a composition of kernels each of which leaves the
posterior invariant, whose exact part bounds the stuck spells. On cav, every 4th draw
exact brings those means within 1.1 MCSE of exact NUTS and the 1% quantile to -6.4
(two seeds); every 10th left them 2.8-3.1 MCSE off.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

__all__ = ["exact_nuts", "schedule"]


def exact_nuts(
    logdensity: Callable, surrogate: Callable, max_tree_depth: int, key, position, step_size,
    inverse_mass, skipped: str,
):  # fmt: skip
    """One NUTS transition of the exact ``logdensity`` from ``position``: the new position,
    its exact log density, the ``surrogate``'s value and gradient there (the surrogate
    kernel's state), and the per-draw records, with the surrogate kernel's own statistic
    ``skipped`` NaN (no surrogate move this draw)."""
    import blackjax
    from blackjax.mcmc.hmc import HMCState

    nuts = blackjax.nuts(logdensity, step_size, inverse_mass, max_num_doublings=max_tree_depth)
    value, gradient = jax.value_and_grad(logdensity)(position)
    new, info = nuts.step(key, HMCState(position, value, gradient))
    surrogate_value, surrogate_grad = jax.value_and_grad(surrogate)(new.position)
    record = {
        "theta": new.position,
        "lp": new.logdensity,
        "acceptance_rate": info.acceptance_rate,
        "diverging": info.is_divergent,
        "energy": info.energy,
        "n_steps": info.num_integration_steps,
        "tree_depth": info.num_trajectory_expansions,
        "exact_transition": jnp.ones((), bool),
        skipped: jnp.nan,
    }
    return new.position, new.logdensity, surrogate_value, surrogate_grad, record


def schedule(every: int, surrogate_step: Callable, exact_step: Callable) -> Callable:
    """``step(carry, i)`` for ``lax.scan``: ``exact_step`` at ``i = every - 1, 2 every - 1,
    ...`` of each block, ``surrogate_step`` otherwise (``every = 0``: always).

    The scan index picks the transition, not the chain's draw number (batched over chains
    under vmap), so this stays a branch rather than both. The schedule restarts with every
    block and a resumed run restarts at a block boundary: it takes a straight run's."""
    if not every:
        return surrogate_step

    def step(carry, i):
        template = jax.eval_shape(surrogate_step, carry, i)

        def exact(carry, i):  # the surrogate step's dtypes, as lax.cond needs
            out = exact_step(carry, i)
            return jax.tree.map(lambda x, t: jnp.asarray(x, t.dtype), out, template)

        return jax.lax.cond(i % every == every - 1, exact, surrogate_step, carry, i)

    return step
