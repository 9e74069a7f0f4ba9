"""ChEES (Hoffman, Radul and Sountsov 2021): jittered dynamic HMC whose step size, diagonal
mass matrix and trajectory length are tuned from all chains at once (blackjax's
``chees_adaptation``). Every chain then takes the same Halton-jittered number of leapfrog
steps per draw, so vmapped chains never wait for one another (thousands of chains on one
accelerator)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import ClassVar, cast

import jax
import jax.numpy as jnp

from linest.sampling.base import CHEES_INITIAL_STEP, CHEES_LEARNING_RATE
from linest.sampling.kernels import AbstractKernel, record


class ChEES(AbstractKernel):
    adapts_across_chains: ClassVar[bool] = True

    def _halton_bits(self) -> int:
        """Bits of the Halton sequence that jitters the trajectory lengths: enough for every
        warm-up and sampling step to get its own value."""
        return max(10, math.ceil(math.log2(self.num_warmup + self.num_samples + 2)))

    def _jittered_steps(self, index, num_steps):
        """The number of leapfrog steps at step ``index``: ceil(u * num_steps), u from the
        Halton sequence (the same for every chain, as in the warm-up)."""
        from blackjax.mcmc.dynamic_hmc import halton_sequence

        u = halton_sequence(index, self._halton_bits())
        return jnp.maximum(jnp.ceil(u * num_steps), 1).astype(int)

    def warmup_all(self, key, positions):
        """ChEES adaptation from all chains at once (``positions``: (chains, p))."""
        import blackjax
        import optax
        from blackjax.adaptation.base import get_filter_adapt_info_fn

        n, p = positions.shape
        adaptation = blackjax.chees_adaptation(
            self.logdensity,
            n,
            target_acceptance_rate=self.target_acceptance,
            max_leapfrog_steps=2**self.max_tree_depth,
            adaptation_info_fn=self.ticking(get_filter_adapt_info_fn(), lambda a: a.step, n),
            mass_matrix_estimation="diagonal",
        )
        run = cast(Callable, adaptation.run)  # blackjax types run's signature loosely
        (states, parameters), _ = run(
            key,
            positions,
            step_size=CHEES_INITIAL_STEP,
            optim=optax.adam(CHEES_LEARNING_RATE),
            num_steps=self.num_warmup,
            max_sampling_steps=max(self.num_samples, 1),
        )
        (num_steps,) = parameters["integration_steps_params"]
        extra = {
            "random_arg": jnp.broadcast_to(states.random_generator_arg, (n,)),
            "num_steps": jnp.full((n,), num_steps, positions.dtype),
        }
        return (
            states.position,
            states.logdensity,
            states.logdensity_grad,
            jnp.full((n,), parameters["step_size"], positions.dtype),
            jnp.broadcast_to(parameters["inverse_mass_matrix"], (n, p)),
            extra,
        )

    def run_block(self, key, position, logdensity, grad, step_size, inverse_mass, start, extra):
        import blackjax
        from blackjax.mcmc.dynamic_hmc import DynamicHMCState

        algorithm = blackjax.dynamic_hmc(
            self.logdensity,
            step_size,
            inverse_mass,
            next_random_arg_fn=lambda index: index + 1,
            integration_steps_fn=self._jittered_steps,
            integration_steps_params=(extra["num_steps"],),
        )

        def step(state, i):
            state, info = algorithm.step(jax.random.fold_in(key, start + i), state)
            return state, record(state, info, jnp.zeros((), jnp.int32))

        state = DynamicHMCState(position, logdensity, grad, extra["random_arg"])
        state, records = self.scan(step, state, step_size)
        extra = extra | {"random_arg": state.random_generator_arg}
        return state.position, state.logdensity, state.logdensity_grad, records, extra
