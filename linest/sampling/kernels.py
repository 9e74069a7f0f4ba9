"""The contract every sampling kernel of ``linest.sample`` fulfils, and the log density.

A kernel is an equinox Module closing over the log density (model, data, prior) with its
settings as static fields. The driver (``run.py``) asks it for two things:

* warm-up: ``warmup(key, position)`` for one chain (``adapts_across_chains = False``;
  the driver vmaps and shards it over chains), or ``warmup_all(key, positions)`` for all
  chains at once (``True``: the kernel adapts from the ensemble). Either returns
  ``(position, logdensity, grad, step_size, inverse_mass, extra)``, ``extra`` a dict of
  the kernel's own per-chain state, which the checkpoint stores and gives back;
* ``run_block(key, position, logdensity, grad, step_size, inverse_mass, start, extra)``:
  ``block`` draws of one chain, draw ``i`` with key ``fold_in(key, start + i)``, returning
  the last state, the per-draw records and the updated ``extra``.

One module per kernel family: ``nuts.py`` (NUTS and static HMC, window adaptation per
chain), ``chees.py`` (ChEES) and ``meads.py`` (MEADS), both adapted across chains. A
new kernel is a new module behind this contract and a line in ``run.KERNEL_CLASSES``.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp

from linest.priors import Prior

#: Progress updates per block of draws and chain (see ``AbstractKernel.scan``).
TICKS_PER_BLOCK = 25
#: The warm-up ticks the progress display every this many steps (``AbstractKernel.ticking``).
WARMUP_TICK = 5


class _LogDensity(eqx.Module):
    """log p(theta | data) up to a constant: the model's log-likelihood plus the prior."""

    model: object
    statistics: object
    prior: Prior = eqx.field(static=True)
    gradient: object = eqx.field(static=True)

    def __call__(self, theta):
        value = self.model.loglik(theta, self.statistics, self.gradient) + self.prior.logpdf(theta)
        return jnp.where(jnp.isfinite(value), value, -jnp.inf)


class AbstractKernel(eqx.Module):
    """Warm-up and blocks of draws for one kind of sampler (see the module docstring)."""

    logdensity: Callable
    target_acceptance: float = eqx.field(static=True)
    max_tree_depth: int = eqx.field(static=True)
    num_warmup: int = eqx.field(static=True)
    block: int = eqx.field(static=True)
    num_samples: int = eqx.field(static=True, default=0)
    #: Report chain steps to :mod:`linest.progress` (rate-limited host callbacks; off: none).
    progress: bool = eqx.field(static=True, default=False)

    #: Whether the warm-up needs every chain at once (``warmup_all``) or runs per chain.
    adapts_across_chains: ClassVar[bool] = False
    #: Whether the draws record a NUTS tree depth that diagnostics should check.
    reports_tree_depth: ClassVar[bool] = False

    def warmup(self, key, position) -> tuple:
        raise NotImplementedError(f"{type(self).__name__} adapts across chains: warmup_all")

    def warmup_all(self, key, positions) -> tuple:
        raise NotImplementedError(f"{type(self).__name__} adapts per chain: warmup")

    def tick(self, steps, divergent, step_size) -> None:
        """``steps`` chain steps done (in a jitted loop), ``divergent`` of them divergent:
        tells :mod:`linest.progress`."""
        if self.progress:
            from linest.progress import chain_steps

            jax.debug.callback(chain_steps, steps, divergent, step_size, ordered=False)

    def ticking(self, info_fn, counter, chains: int = 1):
        """blackjax's per-step adaptation record ``info_fn``, ticking the progress display
        every ``WARMUP_TICK`` adaptation steps (``chains`` chain steps each), as counted by
        ``counter(adaptation_state)``: a counter that depends on the step alone keeps the
        condition a branch when the chains are vmapped (a per-chain one would run the
        callback at every step). Window adaptation's counter (the dual averaging's) may
        restart with a window: the driver fills the count up at the end."""
        if not self.progress:
            return info_fn

        def ticking(state, info, adaptation_state):
            jax.lax.cond(
                counter(adaptation_state) % WARMUP_TICK == 0,
                lambda: self.tick(
                    WARMUP_TICK * chains,
                    jnp.zeros((), jnp.int32),
                    jnp.mean(jnp.asarray(adaptation_state.step_size)),
                ),
                lambda: None,
            )
            return info_fn(state, info, adaptation_state)

        return ticking

    def scan(self, step, carry, step_size):
        """``lax.scan`` of ``step(carry, i)`` over the block's ``i``. With progress on, a
        tick every ``block // TICKS_PER_BLOCK`` steps (a host callback costs about 0.2 ms:
        one per step cost cav's draws several percent), carrying the divergences between ticks;
        the tick's condition depends on the scan index only, so it stays a branch (not
        both sides) when the chains are vmapped."""
        if not self.progress:
            return jax.lax.scan(step, carry, jnp.arange(self.block))
        every = max(1, self.block // TICKS_PER_BLOCK)

        def ticking(state, i):
            carry, divergent = state
            carry, records = step(carry, i)
            divergent = divergent + records["diverging"].astype(jnp.int32)
            due = ((i + 1) % every == 0) | (i + 1 == self.block)
            steps = jnp.where((i + 1) % every == 0, every, self.block % every)

            def report(divergent):
                self.tick(steps, divergent, step_size)
                return jnp.zeros_like(divergent)

            divergent = jax.lax.cond(due, report, lambda d: d, divergent)
            return (carry, divergent), records

        (carry, _), records = jax.lax.scan(
            ticking, (carry, jnp.zeros((), jnp.int32)), jnp.arange(self.block)
        )
        return carry, records

    @abc.abstractmethod
    def run_block(
        self, key, position, logdensity, grad, step_size, inverse_mass, start, extra
    ) -> tuple[Any, Any, Any, dict, dict]:
        """``block`` draws of one chain; see the module docstring."""


def record(state, info, depth) -> dict:
    """What every kernel keeps per draw (the DataTree's posterior and sample_stats)."""
    return {
        "theta": state.position,
        "lp": state.logdensity,
        "acceptance_rate": info.acceptance_rate,
        "diverging": info.is_divergent,
        "energy": info.energy,
        "n_steps": info.num_integration_steps,
        "tree_depth": depth,
    }
