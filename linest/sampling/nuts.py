"""NUTS and static HMC (blackjax), each chain adapted on its own by Stan-style window
adaptation (step size by dual averaging, then a diagonal mass matrix)."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import equinox as eqx
import jax
import jax.numpy as jnp

from linest.sampling.kernels import AbstractKernel, record


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
            adaptation_info_fn=self.ticking(get_filter_adapt_info_fn(), lambda a: a.ss_state.step),
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
