"""Bayesian posteriors by HMC/NUTS (blackjax), in blocks that survive a killed process.

``linest.sample(model, data, prior, ...)`` runs blackjax's window adaptation and then
NUTS (or static HMC), one chain per JAX device when there are several (``jax.shard_map``
over ``jax.make_mesh``), chains vmapped within a device. Draws come back as an ArviZ
``DataTree``.

**Many chains.** ``kernel="chees"`` (jittered HMC whose step size, diagonal mass matrix
and trajectory length are tuned by the ChEES criterion across chains, Hoffman, Radul and
Sountsov 2021) adapts from all chains at once, and every chain then takes the same number
of leapfrog steps per draw: no chain waits for another's longer NUTS tree, which is what
thousands of vmapped chains on one accelerator need. ``kernel="meads"`` (Hoffman and
Sountsov 2022) goes further: generalized HMC with one leapfrog step per draw and
persistent momentum, its step size, damping and scales set from 4 folds of chains by
blackjax's ``meads_adaptation`` (at least 32 chains).

**Surrogate trajectories.** With ``gradient=linest.Surrogate(...)`` the log density's
*value* is still exact (every engine method computes ``exp`` exactly; only its derivative
is approximated), so blackjax's leapfrog uses the cheap surrogate force while the
energy, the divergence check and NUTS's multinomial choice use the exact log density.
Leapfrog with any force is volume-preserving and reversible, so the chain targets the
exact posterior (gradients.md, section 5); a poor surrogate only lowers acceptance,
which shows as a smaller adapted step size and deeper trees.

**Resumable runs.** With ``out=PATH`` the run writes, after warm-up and after every
block of draws, the whole DataTree so far plus a ``linest_checkpoint`` group (each
chain's last state, step size and mass matrix, the next draw index, and a fingerprint
of the settings) to a temporary file renamed over ``PATH`` (atomic). ``resume=True``
continues from it. The random key of draw ``i`` of chain ``c`` is
``fold_in(fold_in(key, c), i)``, so a resumed run's draws equal an uninterrupted run's.
"""

from linest.sampling.base import SamplingError, SamplingWarning
from linest.sampling.diagnostics import diagnose, summarize
from linest.sampling.run import join_runs, sample

__all__ = ["SamplingError", "SamplingWarning", "diagnose", "join_runs", "sample", "summarize"]
