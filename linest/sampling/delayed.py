"""Delayed acceptance: whole NUTS (or HMC) transitions on a cheap density, accepted or
rejected with the exact one (Christen and Fox 2005; as multi-fidelity HMC, Patel et al.
2024).

Each draw runs one transition of blackjax's NUTS (or static HMC) targeting the surrogate
``pi~`` from the current point ``theta``, which proposes ``theta'``; the exact log density
is evaluated there once, and the proposal is accepted with probability

    min(1, pi(theta') pi~(theta) / (pi(theta) pi~(theta')))

(the second stage). The first-stage kernel is reversible with respect to ``pi~`` (NUTS
and HMC with a fresh momentum are), so the composite satisfies detailed balance with
respect to ``pi``: the chain targets the exact posterior whatever the surrogate; a poor
one only lowers the second stage's acceptance. The exact density's gradient is never
evaluated; its value once per draw (not at all when the first stage stays put).

``linest.sample(kernel="hmc", surrogate=...)`` runs :mod:`linest.sampling.trajectory`
instead: one accept step with the exact energy, at least as likely to accept as the two
stages here.

Warm-up: Stan-style window adaptation (step size and mass matrix) on the surrogate alone.
Static HMC's step size is jittered by +-20% per draw (a fixed trajectory length resonates
on a whitened, near-isotropic surrogate).
The records add ``second_stage_acceptance`` (the probability above, per draw) to the
sample statistics; ``acceptance_rate`` stays the first stage's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp

from linest.sampling.interleave import exact_nuts, schedule
from linest.sampling.nuts import WindowAdapted

__all__ = ["DelayedAcceptance"]


class DelayedAcceptance(WindowAdapted):
    """NUTS (``algorithm="nuts"``) or static HMC transitions on ``surrogate``, exact second
    stage with ``logdensity``. The chain's state is the position, its exact log density
    (``logdensity`` in the checkpoint) and the surrogate's gradient (``grad``); the
    surrogate's log density is in ``extra``."""

    surrogate: Callable = None  # type: ignore[assignment]
    #: Every ``exact_every``-th draw is an exact-gradient NUTS transition instead (0: never;
    #: :mod:`linest.sampling.interleave`).
    exact_every: int = eqx.field(static=True, default=0)

    #: Extra per-draw statistics this kernel records (the driver stores them).
    record_stats: ClassVar[tuple[str, ...]] = ("second_stage_acceptance", "exact_transition")

    def warmup(self, key, position):
        surrogate_kernel = eqx.tree_at(lambda k: k.logdensity, self, self.surrogate)
        position, lp, grad, step_size, inverse_mass, _ = WindowAdapted.warmup(
            surrogate_kernel, key, position
        )
        return (
            position,
            self.logdensity(position),
            grad,
            step_size,
            inverse_mass,
            {"surrogate_logdensity": lp},
        )

    def run_block(self, key, position, logdensity, grad, step_size, inverse_mass, start, extra):
        from blackjax.mcmc.hmc import HMCState

        def surrogate_step(carry, i):
            state, exact = carry
            draw_key = jax.random.fold_in(key, start + i)
            first_key, accept_key, jitter_key = jax.random.split(draw_key, 3)
            size = step_size
            if self.algorithm == "hmc":
                # A static trajectory on a whitened (near-isotropic) surrogate resonates:
                # every direction has the same period. Jittering the step size (+-20%,
                # independent of the state: still reversible) breaks it.
                size = step_size * jax.random.uniform(jitter_key, minval=0.8, maxval=1.2)
            first = self._blackjax()(self.surrogate, size, inverse_mass, **self._settings())
            proposal, info = first.step(first_key, state)
            moved = jnp.any(proposal.position != state.position)
            # The exact density only where the first stage moved (NaN/inf: rejected).
            proposed = jax.lax.cond(
                moved, lambda x: self.logdensity(x), lambda _: exact, proposal.position
            )
            log_ratio = (proposed - exact) - (proposal.logdensity - state.logdensity)
            log_ratio = jnp.where(jnp.isfinite(proposed), log_ratio, -jnp.inf)
            probability = jnp.where(moved, jnp.minimum(1.0, jnp.exp(log_ratio)), 1.0)
            accept = jax.random.uniform(accept_key) < probability
            state = jax.tree.map(lambda new, old: jnp.where(accept, new, old), proposal, state)
            exact = jnp.where(accept, proposed, exact)
            depth = (
                info.num_trajectory_expansions
                if self.algorithm == "nuts"
                else jnp.zeros((), jnp.int32)
            )
            record = {
                "theta": state.position,
                "lp": exact,
                "acceptance_rate": info.acceptance_rate,
                "diverging": info.is_divergent,
                "energy": info.energy,
                "n_steps": info.num_integration_steps,
                "tree_depth": depth,
                "second_stage_acceptance": probability,
                "exact_transition": jnp.zeros((), bool),
            }
            return (state, exact), record

        def exact_step(carry, i):
            state, _ = carry
            draw_key = jax.random.fold_in(key, start + i)
            position, lp, value, gradient, record = exact_nuts(
                self.logdensity, self.surrogate, self.max_tree_depth, draw_key, state.position,
                step_size, inverse_mass, skipped="second_stage_acceptance",
            )  # fmt: skip
            return (HMCState(position, value, gradient), lp), record

        step = schedule(self.exact_every, surrogate_step, exact_step)

        state = HMCState(position, extra["surrogate_logdensity"], grad)
        (state, exact), records = self.scan(step, (state, logdensity), step_size)
        extra = {"surrogate_logdensity": state.logdensity}
        return state.position, exact, state.logdensity_grad, records, extra
