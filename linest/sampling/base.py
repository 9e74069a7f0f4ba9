"""What every part of linest.sampling shares: the kernels' names and defaults, the
warning and error classes."""

from __future__ import annotations

KERNELS = ("nuts", "hmc", "chees", "meads")
#: ChEES's first step size and its Adam learning rate (Hoffman, Radul and Sountsov 2021).
CHEES_INITIAL_STEP = 0.1
CHEES_LEARNING_RATE = 0.025
#: Fewer chains than this get a warning with kernel="chees" or "meads" (their estimates
#: are cross-chain).
CHEES_FEW_CHAINS = 16
#: MEADS splits the chains into this many folds (Hoffman and Sountsov 2022's choice); each
#: fold's parameters come from another fold's chains.
MEADS_FOLDS = 4
#: MEADS refuses fewer chains: on a 7-d Gaussian (sds 0.05 to 10; 4 seeds x 300 and 1000
#: warm-up steps) 16 chains sampled sds 6 to 212 times too wide in 5 of 8 runs (warm-up
#: drifts, the step size collapses), 32 to 128 chains within 2% in all 24.
MEADS_MIN_CHAINS = 32
#: Default acceptance targets: NUTS/HMC (Stan's 0.8), ChEES (0.651, optimal for HMC).
#: MEADS has none (its step size comes from the scaled gradients' largest eigenvalue).
TARGET_ACCEPTANCE = {"nuts": 0.8, "hmc": 0.8, "chees": 0.651, "meads": None}


class SamplingWarning(UserWarning):
    """Convergence diagnostics failed (r_hat, ESS, divergences, tree depth)."""


class SamplingError(ValueError):
    """Bad sampler settings, or a checkpoint that does not match the request."""


def _method_name(gradient) -> str:
    return "default" if gradient is None else repr(gradient)
