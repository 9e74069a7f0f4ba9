"""HMC whose trajectories run on a surrogate, accepted with the exact energy at their ends.

Each draw samples a momentum ``p`` and runs ``L`` leapfrog steps (blackjax's velocity
Verlet and static integration) with the force of a cheap density ``pi~`` from
``(theta, p)`` to ``(theta', p')``; the exact log density is evaluated once, at
``theta'``, and the move is accepted with probability

    min(1, exp(log pi(theta') - K(p') - log pi(theta) + K(p)))

(Neal 2011, section 5.5.4; the trajectories of Rasmussen's GP-HMC). Leapfrog steps with
any force that depends on the position alone are shears, so the trajectory map is
volume-preserving and, with the momentum flipped, its own inverse: the chain targets
the exact posterior whatever the force. The force need not be the gradient of any
density; here it is the gradient of a surrogate of :mod:`linest.sampling.surrogates`
(``Laplace``, ``Coarse``, ``Affine``, ``Custom``), and its value is used only for the
diagnostics. Unlike delayed acceptance with an HMC first stage there is one accept step,
not two: the acceptance is at least the product of delayed acceptance's two stages.

The exact density's gradient is never evaluated, its value once per draw. A force whose
computation needs the exact forward solve anyway (the notes' ``t exp(tQ) J`` and the
other gradient methods of :mod:`linest.gradients`) saves nothing over the ordinary kernels
with ``gradient=``, which keep the exact value at every step at no extra cost: NUTS and
HMC stay exact with such a force for the same reason.

Warm-up: Stan-style window adaptation on the surrogate alone (of NUTS when the
trajectory length is left to the kernel, of static HMC otherwise). The trajectory
is ``num_integration_steps`` steps, by default ``ceil((pi / 2) / step size)``: a quarter
period of the Gaussian whose covariance is the adapted inverse mass matrix, where a draw
is independent of the last. The step size is jittered by +-20% per draw (a fixed
trajectory length resonates on a near-isotropic surrogate). Records: ``acceptance_rate`` is the exact accept
probability; ``surrogate_acceptance`` is the one the surrogate's own energy would give
(how well the steps integrate the surrogate's dynamics: low means a smaller step).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from linest.sampling.interleave import exact_nuts, schedule
from linest.sampling.nuts import WindowAdapted

__all__ = ["SurrogateTrajectory"]

#: The default trajectory length, in the mass matrix's units: a quarter period of the
#: Gaussian whose covariance is the inverse mass matrix, where a draw is independent of
#: the last (on the whitened 130-parameter advection posterior, 16 steps of the adapted
#: step size, about one period, gave a min ESS of 332 in 4 x 500 draws; this length
#: gives 980).
QUARTER_PERIOD = float(np.pi / 2)

#: An energy error above this (in nats, exact energies) marks the draw divergent, as in
#: blackjax's HMC.
DIVERGENCE_THRESHOLD = 1000.0


class SurrogateTrajectory(WindowAdapted):
    """Static HMC (``num_integration_steps`` steps, jittered step size) on the force of
    ``surrogate``, accepted with the exact ``logdensity``. The chain's state is the
    position, its exact log density (``logdensity`` in the checkpoint) and the surrogate's
    gradient (``grad``); the surrogate's log density is in ``extra``."""

    surrogate: Callable = None  # type: ignore[assignment]
    #: Every ``exact_every``-th draw is an exact-gradient NUTS transition instead (0: never).
    exact_every: int = eqx.field(static=True, default=0)

    #: Extra per-draw statistics this kernel records (the driver stores them).
    record_stats: ClassVar[tuple[str, ...]] = ("surrogate_acceptance", "exact_transition")

    def warmup(self, key, position):
        # With the trajectory length left to the step size, NUTS adapts it (to the same
        # target acceptance); then static trajectories of a quarter period.
        algorithm = self.algorithm if self.num_integration_steps else "nuts"
        surrogate_kernel = dataclasses.replace(self, logdensity=self.surrogate, algorithm=algorithm)
        position, lp, grad, step_size, inverse_mass, _ = WindowAdapted.warmup(
            surrogate_kernel, key, position
        )
        extra = {"surrogate_logdensity": lp}
        return position, self.logdensity(position), grad, step_size, inverse_mass, extra

    def run_block(self, key, position, logdensity, grad, step_size, inverse_mass, start, extra):
        from blackjax.mcmc import integrators, metrics, trajectory

        metric = metrics.default_metric(inverse_mass)
        leapfrog = integrators.velocity_verlet(self.surrogate, metric.kinetic_energy)
        integrate = trajectory.static_integration(leapfrog)

        if self.num_integration_steps:
            steps = jnp.asarray(self.num_integration_steps, jnp.int32)
        else:  # a quarter period of a Gaussian whose covariance the mass matrix matches
            steps = jnp.maximum(1, jnp.ceil(QUARTER_PERIOD / step_size)).astype(jnp.int32)

        def surrogate_step(carry, i):
            state, exact = carry
            draw_key = jax.random.fold_in(key, start + i)
            momentum_key, accept_key, jitter_key = jax.random.split(draw_key, 3)
            size = step_size * jax.random.uniform(jitter_key, minval=0.8, maxval=1.2)
            momentum = metric.sample_momentum(momentum_key, state.position)
            end = integrate(state._replace(momentum=momentum), size, steps)
            proposed = self.logdensity(end.position)
            kinetic, kinetic_end = (
                metric.kinetic_energy(momentum),
                metric.kinetic_energy(end.momentum),
            )
            log_ratio = (proposed - kinetic_end) - (exact - kinetic)
            log_ratio = jnp.where(jnp.isfinite(log_ratio), log_ratio, -jnp.inf)
            probability = jnp.minimum(1.0, jnp.exp(log_ratio))
            surrogate_ratio = (end.logdensity - kinetic_end) - (state.logdensity - kinetic)
            surrogate_ratio = jnp.where(jnp.isfinite(surrogate_ratio), surrogate_ratio, -jnp.inf)
            accept = jax.random.uniform(accept_key) < probability
            new = jax.tree.map(lambda a, b: jnp.where(accept, a, b), end, state)
            exact = jnp.where(accept, proposed, exact)
            record = {
                "theta": new.position,
                "lp": exact,
                "acceptance_rate": probability,
                "diverging": -log_ratio > DIVERGENCE_THRESHOLD,
                "energy": jnp.where(accept, kinetic_end - proposed, kinetic - carry[1]),
                "n_steps": steps,
                "tree_depth": jnp.zeros((), jnp.int32),
                "surrogate_acceptance": jnp.minimum(1.0, jnp.exp(surrogate_ratio)),
                "exact_transition": jnp.zeros((), bool),
            }
            return (new, exact), record

        def exact_step(carry, i):
            state, _ = carry
            draw_key = jax.random.fold_in(key, start + i)
            position, lp, value, gradient, record = exact_nuts(
                self.logdensity, self.surrogate, self.max_tree_depth, draw_key, state.position,
                step_size, inverse_mass, skipped="surrogate_acceptance",
            )  # fmt: skip
            moved = integrators.IntegratorState(position, state.momentum, value, gradient)
            return (moved, lp), record

        step = schedule(self.exact_every, surrogate_step, exact_step)
        state = integrators.IntegratorState(
            position, jnp.zeros_like(position), extra["surrogate_logdensity"], grad
        )
        (state, exact), records = self.scan(step, (state, logdensity), step_size)
        extra = {"surrogate_logdensity": state.logdensity}
        return state.position, exact, state.logdensity_grad, records, extra
