"""Plots of fitted models (matplotlib, imported only when a plot is asked for)."""

from __future__ import annotations

import numpy as np

__all__ = ["plot_posterior", "plot_prevalence"]


def plot_prevalence(result, data, times=None):
    """Observed (points) and expected (lines) percentage in each state over time.

    The visual check of a Markov model's fit that msm's ``plot.prevalence.msm`` gives:
    systematic gaps mean the model (e.g. time-homogeneity) does not describe the data.
    Returns the matplotlib Figure.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if times is None:
        times = np.linspace(0, float(np.max(data.time)), 25)
    observed, expected = result.prevalence(data, times)
    total = observed.sum(axis=1).to_numpy()[:, None]
    total = np.where(total > 0, total, np.nan)
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for k, label in enumerate(observed.columns):
        color = f"C{k}"
        axes.plot(times, 100 * observed.iloc[:, k] / total[:, 0], "o", color=color, ms=4)
        axes.plot(times, 100 * expected.iloc[:, k] / total[:, 0], "-", color=color, label=label)
    axes.set_xlabel("time")
    axes.set_ylabel("% of subjects observed")
    axes.set_title("Prevalence: observed (points) and expected by the model (lines)")
    axes.legend(title="state", frameon=False)
    figure.tight_layout()
    return figure


def plot_posterior(tree, prefix) -> list[str]:
    """Trace plot and pair plot of the natural-scale parameters: PREFIX-trace.png, -pair.png."""
    import os

    import arviz as az
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    names = [v for v in tree["posterior"].data_vars if v != "theta"] or ["theta"]
    written = []
    for kind, draw in (
        ("trace", lambda: az.plot_trace_dist(tree, var_names=names, backend="matplotlib")),
        ("pair", lambda: az.plot_pair(tree, var_names=names, backend="matplotlib")),
    ):
        path = f"{prefix}-{kind}.png"
        with az.rc_context({"plot.max_subplots": 400}):
            collection = draw()
        figure = collection.viz["figure"].item() if hasattr(collection, "viz") else plt.gcf()
        tmp = f"{os.path.dirname(path) or '.'}/.{os.path.basename(path)}.tmp{os.getpid()}.png"
        try:
            figure.savefig(tmp, dpi=90, bbox_inches="tight")
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        plt.close(figure)
        written.append(path)
    return written
