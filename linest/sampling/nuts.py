"""NUTS and static HMC (blackjax), each chain adapted on its own by Stan-style window
adaptation (step size by dual averaging, then a diagonal mass matrix)."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import equinox as eqx
import jax
import jax.numpy as jnp

from linest.sampling.kernels import AbstractKernel, record

#: The warm-up ticks the progress display every this many steps (see ``_ticking``).
WARMUP_TICK = 5


class WindowAdapted(AbstractKernel):
    """``algorithm`` "nuts" (trees up to ``max_tree_depth`` doublings) or "hmc"
    (``num_integration_steps`` leapfrog steps)."""

    algorithm: str = eqx.field(static=True, default="nuts")
    num_integration_steps: int = eqx.field(static=True, default=0)
    dense_mass: bool = eqx.field(static=True, default=False)

    @property
    def reports_tree_depth(self) -> bool:  # type: ignore[override]
        return self.algorithm == "nuts"

    def _blackjax(self):
        import blackjax

        return blackjax.nuts if self.algorithm == "nuts" else blackjax.hmc

    def _settings(self) -> dict:
        if self.algorithm == "nuts":
            return {"max_num_doublings": self.max_tree_depth}
        return {"num_integration_steps": self.num_integration_steps}

    def warmup(self, key, position):
        import blackjax
        from blackjax.adaptation.base import get_filter_adapt_info_fn

        adaptation = blackjax.window_adaptation(
            self._blackjax(),
            self.logdensity,
            is_mass_matrix_diagonal=not self.dense_mass,
            target_acceptance_rate=self.target_acceptance,
            adaptation_info_fn=self._ticking(get_filter_adapt_info_fn()),
            **self._settings(),
        )
        run = cast(Callable, adaptation.run)  # blackjax types run's signature loosely
        result, _ = run(key, position, num_steps=self.num_warmup)
        state = result.state
        return (
            state.position,
            state.logdensity,
            state.logdensity_grad,
            jnp.asarray(result.parameters["step_size"]),
            result.parameters["inverse_mass_matrix"],
            {},
        )

    def _ticking(self, info_fn):
        """blackjax's per-step adaptation record ``info_fn``, ticking the progress display
        every ``WARMUP_TICK`` steps of the step size's dual averaging (its counter depends on
        the step alone, so the condition stays a branch when the chains are vmapped; it
        restarts with each of Stan's windows, so a few steps per window go uncounted until
        the end)."""
        if not self.progress:
            return info_fn

        def ticking(state, info, adaptation_state):
            step = adaptation_state.ss_state.step
            jax.lax.cond(
                step % WARMUP_TICK == 0,
                lambda: self.tick(WARMUP_TICK, info.is_divergent, adaptation_state.step_size),
                lambda: None,
            )
            return info_fn(state, info, adaptation_state)

        return ticking

    def run_block(self, key, position, logdensity, grad, step_size, inverse_mass, start, extra):
        from blackjax.mcmc.hmc import HMCState

        algorithm = self._blackjax()(self.logdensity, step_size, inverse_mass, **self._settings())

        def step(state, i):
            state, info = algorithm.step(jax.random.fold_in(key, start + i), state)
            depth = (
                info.num_trajectory_expansions
                if self.algorithm == "nuts"
                else jnp.zeros((), jnp.int32)
            )
            return state, record(state, info, depth)

        state = HMCState(position, logdensity, grad)
        state, records = self.scan(step, state, step_size)
        return state.position, state.logdensity, state.logdensity_grad, records, extra
