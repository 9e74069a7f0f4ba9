"""``linest.sample``'s old home, kept so that ``from linest.sample import SamplingWarning``
and ``-W "ignore::linest.sample.SamplingWarning"`` keep working: the code lives in the
:mod:`linest.sampling` package (kernels, chains, checkpoint, diagnostics, run)."""

from linest.sampling import (
    SamplingError,
    SamplingWarning,
    diagnose,
    join_runs,
    sample,
    summarize,
)

__all__ = ["SamplingError", "SamplingWarning", "diagnose", "join_runs", "sample", "summarize"]
