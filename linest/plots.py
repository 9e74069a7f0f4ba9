"""Plots of fitted models (matplotlib, imported only when a plot is asked for)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

__all__ = ["plot_posterior", "plot_prevalence", "plot_snapshots", "plot_velocity"]


def plot_prevalence(result, data, times=None):
    """Observed (points) and expected (lines) percentage in each state over time, with
    95% bands on the expected ones where the result gives them (``expected_prevalence``:
    the estimate's normal approximation, as msm's prevalence.msm with ci = "normal").

    The visual check of a Markov model's fit that msm's ``plot.prevalence.msm`` gives:
    systematic gaps beyond the bands mean the model (e.g. time-homogeneity) does not
    describe the data. Returns the matplotlib Figure.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if times is None:
        times = np.linspace(0, float(np.max(data.time)), 25)
    observed, expected = result.prevalence(data, times)
    bands = None
    if hasattr(result, "expected_prevalence") and np.all(np.isfinite(result.covariance)):
        bands = result.expected_prevalence(data, times)
    total = observed.sum(axis=1).to_numpy()[:, None]
    total = np.where(total > 0, total, np.nan)
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for k, label in enumerate(observed.columns):
        color = f"C{k}"
        axes.plot(times, 100 * observed.iloc[:, k] / total[:, 0], "o", color=color, ms=4)
        axes.plot(times, 100 * expected.iloc[:, k] / total[:, 0], "-", color=color, label=label)
        if bands is not None:
            rows = bands.xs(label, level="state")
            axes.fill_between(times, rows.lower, rows.upper, color=color, alpha=0.15, lw=0)
    axes.set_xlabel("time")
    axes.set_ylabel("% of subjects observed")
    axes.set_title(
        "Prevalence: observed (points), expected by the model (lines"
        + (", 95% bands)" if bands is not None else ")")
    )
    axes.legend(title="state", frameon=False)
    figure.tight_layout()
    return figure


def posterior_plot_paths(prefix) -> list[str]:
    """The files :func:`plot_posterior` writes for ``prefix``."""
    return [f"{prefix}-{kind}.png" for kind in ("trace", "pair")]


def plot_posterior(tree, prefix) -> list[str]:
    """Trace plot and pair plot of the natural-scale parameters: PREFIX-trace.png, -pair.png."""
    import arviz as az
    import matplotlib

    from linest._io import atomic_write

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    names = [v for v in tree["posterior"].data_vars if v != "theta"] or ["theta"]
    written = []
    draws = (
        lambda: az.plot_trace_dist(tree, var_names=names, backend="matplotlib"),
        lambda: az.plot_pair(tree, var_names=names, backend="matplotlib"),
    )
    for path, draw in zip(posterior_plot_paths(prefix), draws):
        with az.rc_context({"plot.max_subplots": 400}):
            collection = draw()
        figure = collection.viz["figure"].item() if hasattr(collection, "viz") else plt.gcf()
        try:
            atomic_write(path, lambda tmp, f=figure: f.savefig(tmp, dpi=90, bbox_inches="tight"))
        finally:
            plt.close(figure)
        written.append(path)
    return written


def plot_snapshots(result, data, times=None):
    """Observed, fitted and residual fields per snapshot, and the estimated velocity field.

    Rows: the snapshots (all, or those at ``times``); columns: observed, fitted, residual
    (whole-grid data; sensor data are shown as observed vs fitted scatter). The last
    panel is :func:`plot_velocity`.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    model = result.model
    statistics = model.statistics(data)
    fitted = result.fitted(data)
    observed = np.asarray(statistics.values)
    all_times = np.asarray(statistics.times)
    rows = (
        range(len(all_times))
        if times is None
        else [int(np.argmin(abs(all_times - t))) for t in times]
    )
    rows = list(rows)
    if statistics.sensors is not None or model.ndim == 1:
        figure, axes = plt.subplots(1, 2, figsize=(10, 4.2))
        predictions = np.asarray(model._observe(jnp.asarray(fitted), statistics))
        for k in rows:
            axes[0].plot(
                observed[k].ravel(),
                predictions[k].ravel(),
                ".",
                ms=3,
                label=f"t = {all_times[k]:g}",
            )
        low, high = observed.min(), observed.max()
        axes[0].plot([low, high], [low, high], "k-", lw=0.8)
        axes[0].set_xlabel("observed")
        axes[0].set_ylabel("fitted")
        axes[0].legend(fontsize=8)
        plot_velocity(result, ax=axes[1])
        figure.tight_layout()
        return figure
    figure, axes = plt.subplots(len(rows) + 1, 3, figsize=(10, 3.1 * (len(rows) + 1)))
    extent = (0, model.length[1], 0, model.length[0])
    vmin, vmax = observed.min(), observed.max()
    for r, k in enumerate(rows):
        residual = observed[k] - fitted[k]
        for c, (field, title, cmap, limits) in enumerate(
            (
                (observed[k], "observed", "viridis", (vmin, vmax)),
                (fitted[k], "fitted", "viridis", (vmin, vmax)),
                (residual, "residual", "RdBu_r", (-np.abs(residual).max(), np.abs(residual).max())),
            )
        ):
            image = axes[r, c].imshow(
                field, origin="lower", extent=extent, cmap=cmap, vmin=limits[0], vmax=limits[1]
            )
            axes[r, c].set_title(f"{title}, t = {all_times[k]:g}", fontsize=9)
            figure.colorbar(image, ax=axes[r, c], shrink=0.8)
    for c in (1, 2):
        axes[-1, c].axis("off")
    plot_velocity(result, ax=axes[-1, 0])
    figure.tight_layout()
    return figure


def plot_velocity(result, truth=None, ax=None):
    """Quiver of the estimated velocity at its coarse nodes, arrows coloured by their
    standard error (``sqrt(se_x^2 + se_y^2)``), with 95% error ellipses (axis-aligned, from
    the per-component intervals) at the arrow tips; ``truth`` (an array ``(2, *coarse)``)
    is drawn in black for comparison."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.patches import Ellipse

    model = result.model
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 5))
    table = result.velocity()
    if model.ndim == 1:
        ax.errorbar(
            table["x"],
            table["u_x"],
            yerr=table["upper_x"] - table["u_x"],
            fmt="o",
            capsize=3,
            label="estimate, 95%",
        )
        if truth is not None:
            ax.plot(table["x"], np.ravel(truth), "kx", label="truth")
        ax.set_xlabel("x")
        ax.set_ylabel("u")
        ax.legend(fontsize=8)
        return ax.figure
    x, y = table["x"].to_numpy(), table["y"].to_numpy()
    u, v = table["u_x"].to_numpy(), table["u_y"].to_numpy()
    se = np.hypot(table["se_x"], table["se_y"]).to_numpy()
    scale = (
        0.5
        * min(model.length)
        / max(model.coarse or (1,))
        / max(float(np.abs(np.r_[u, v]).max()), 1e-12)
    )
    arrows = ax.quiver(
        x, y, u * scale, v * scale, se, angles="xy", scale_units="xy", scale=1, cmap="plasma"
    )
    ax.figure.colorbar(arrows, ax=ax, shrink=0.8, label="standard error of u")
    for xi, yi, ui, vi, sx, sy in zip(x, y, u, v, table["se_x"], table["se_y"]):
        ax.add_patch(
            Ellipse(
                (xi + ui * scale, yi + vi * scale),
                2 * 1.96 * sx * scale,
                2 * 1.96 * sy * scale,
                fill=False,
                lw=0.6,
                color="0.4",
            )
        )
    if truth is not None:
        truth = np.asarray(truth).reshape(2, -1)
        ax.quiver(
            x,
            y,
            truth[1] * scale,
            truth[0] * scale,
            angles="xy",
            scale_units="xy",
            scale=1,
            color="k",
            width=0.003,
            label="truth",
        )
        ax.legend(fontsize=8, loc="upper right")
    ax.set_xlim(0, model.length[1])
    ax.set_ylim(0, model.length[0])
    ax.set_aspect("equal")
    ax.set_title("velocity (arrows), 95% ellipses", fontsize=9)
    return ax.figure
