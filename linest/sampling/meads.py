"""MEADS (Hoffman and Sountsov 2022): generalized HMC (one leapfrog step per draw, partial
momentum refresh, non-reversible slice acceptance) whose step size, damping and diagonal
preconditioner are set from the ensemble of chains by blackjax's ``meads_adaptation``:
the chains are split into ``MEADS_FOLDS`` folds, each fold's parameters come from another
fold's positions and gradients (largest eigenvalues of the scaled gradient and position
covariances). No trajectory lengths to wait for, no dual averaging: what thousands of
vmapped chains on one accelerator need."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, cast

import jax
import jax.numpy as jnp

from linest.sampling.base import MEADS_FOLDS
from linest.sampling.kernels import AbstractKernel, record


class MEADS(AbstractKernel):
    adapts_across_chains: ClassVar[bool] = True

    def warmup_all(self, key, positions):
        """MEADS adaptation from all chains at once (``positions``: (chains, p)), chains
        a multiple of ``MEADS_FOLDS`` (``sample`` checks). Returns the adapted step size
        and inverse mass (the square of MEADS's per-parameter scale) for every chain, and
        the GHMC state's momentum and slice variable plus the damping ``alpha`` and slice
        shift ``delta`` as ``extra``."""
        import blackjax
        from blackjax.adaptation.base import get_filter_adapt_info_fn

        n, p = positions.shape
        adaptation = blackjax.meads_adaptation(
            self.logdensity,
            n,
            num_folds=MEADS_FOLDS,
            adaptation_info_fn=self.ticking(
                get_filter_adapt_info_fn(), lambda a: a.current_iteration, n
            ),
        )
        run = cast(Callable, adaptation.run)  # blackjax types run's signature loosely
        (states, parameters), _ = run(key, positions, num_steps=self.num_warmup)
        scale = jnp.broadcast_to(parameters["momentum_inverse_scale"], (n, p))
        extra = {
            "momentum": states.momentum,
            "slice": states.slice,
            "alpha": jnp.full((n,), parameters["alpha"], positions.dtype),
            "delta": jnp.full((n,), parameters["delta"], positions.dtype),
        }
        return (
            states.position,
            states.logdensity,
            states.logdensity_grad,
            jnp.full((n,), parameters["step_size"], positions.dtype),
            scale**2,
            extra,
        )

    def run_block(self, key, position, logdensity, grad, step_size, inverse_mass, start, extra):
        import blackjax
        from blackjax.mcmc.ghmc import GHMCState

        algorithm = blackjax.ghmc(
            self.logdensity,
            step_size,
            jnp.sqrt(inverse_mass),  # ghmc takes the scale and squares it
            extra["alpha"],
            extra["delta"],
        )

        def step(state, i):
            state, info = algorithm.step(jax.random.fold_in(key, start + i), state)
            return state, record(state, info, jnp.zeros((), jnp.int32))

        state = GHMCState(position, extra["momentum"], logdensity, grad, extra["slice"])
        state, records = self.scan(step, state, step_size)
        extra = extra | {"momentum": state.momentum, "slice": state.slice}
        return state.position, state.logdensity, state.logdensity_grad, records, extra
