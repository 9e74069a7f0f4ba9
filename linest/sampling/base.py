"""What every part of linest.sampling shares: the kernels' names and defaults, the
warning and error classes."""

from __future__ import annotations

KERNELS = ("nuts", "hmc", "chees")
#: ChEES's first step size and its Adam learning rate (Hoffman, Radul and Sountsov 2021).
CHEES_INITIAL_STEP = 0.1
CHEES_LEARNING_RATE = 0.025
#: Fewer chains than this get a warning with kernel="chees" (its estimates are cross-chain).
CHEES_FEW_CHAINS = 16
#: Default acceptance targets: NUTS/HMC (Stan's 0.8), ChEES (0.651, optimal for HMC).
TARGET_ACCEPTANCE = {"nuts": 0.8, "hmc": 0.8, "chees": 0.651}


class SamplingWarning(UserWarning):
    """Convergence diagnostics failed (r_hat, ESS, divergences, tree depth)."""


class SamplingError(ValueError):
    """Bad sampler settings, or a checkpoint that does not match the request."""


def _method_name(gradient) -> str:
    return "default" if gradient is None else repr(gradient)
