"""Convergence diagnostics and the printed summary of a run."""

from __future__ import annotations

import math
import warnings

import numpy as np

BOUNDARY_DROP = math.log(1e4)


def diagnose(tree, max_tree_depth=None, boundary=None) -> list[str]:
    """Messages for r_hat > 1.01, ESS_bulk < 100 per chain, divergences, saturated trees,
    and chains stuck at the boundary: for the parameters ``boundary`` marks (log-rates
    that may be 0), a chain with most of its draws more than 10^4 below the largest
    rate's median."""
    import arviz as az

    notes = []
    theta = np.asarray(tree["posterior"]["theta"])  # (chain, draw, param)
    if boundary is not None and np.any(boundary):
        index = np.flatnonzero(boundary)
        medians = np.median(theta[:, :, index], axis=(0, 1))
        floor = float(np.max(medians)) - BOUNDARY_DROP
        stuck = np.mean(theta[:, :, index] < floor, axis=1) > 0.5  # (chain, boundary param)
        if stuck.any():
            names = tree["posterior"]["theta"].coords["param"].values
            parts = [
                f"{names[index[k]]} (chain {', '.join(str(c) for c in np.flatnonzero(stuck[:, k]))})"
                for k in np.flatnonzero(stuck.any(axis=0))
            ]
            notes.append(
                "chains stuck at the boundary: most draws put "
                + "; ".join(parts)
                + " more than 10^4 below the largest rate, i.e. at 0: the posterior piles up "
                "there (the likelihood's maximum is at 0). On the log scale the sampler drifts "
                "towards -inf and mixes slowly; a gamma prior on the rate with shape < 1 keeps "
                "mass near 0 but bounds the drift, shape >= 1 moves it away"
            )
    stats = tree["sample_stats"]
    num_chains = stats.sizes["chain"]
    summary = az.summary(tree, var_names=["theta"], kind="diagnostics")
    worst_rhat = summary["r_hat"].astype(float)
    if bool(np.any(np.asarray(worst_rhat) > 1.01)):
        names = ", ".join(f"{k} ({v:.3f})" for k, v in worst_rhat[worst_rhat > 1.01].items())
        notes.append(f"r_hat > 1.01 for {names}: the chains disagree; run longer")
    ess = summary["ess_bulk"].astype(float)
    low = ess < 100 * num_chains
    if bool(np.any(np.asarray(low))):
        names = ", ".join(f"{k} ({v:.0f})" for k, v in ess[low].items())
        notes.append(
            f"ESS_bulk below {100 * num_chains} (100 per chain) for {names}: estimates of "
            "posterior quantiles are unreliable; run longer"
        )
    diverging = np.asarray(stats["diverging"], bool)
    if diverging.any():
        notes.append(
            f"{int(diverging.sum())} divergent transition(s): the sampler missed part of the "
            f"posterior{_where_divergent(tree, diverging)}; raise target_acceptance "
            "(--target-acceptance 0.9) or reparametrise"
        )
    tail = tail_acceptance(tree)
    if tail is not None:
        notes.append(tail)
    if max_tree_depth is not None:
        saturated = int((np.asarray(stats["tree_depth"]) >= max_tree_depth).sum())
        if saturated:
            notes.append(
                f"{saturated} draw(s) hit the maximum tree depth {max_tree_depth}: "
                "trajectories were cut short (a poor surrogate gradient shows this way)"
            )
    return notes


def _where_divergent(tree, diverging) -> str:
    """Where the divergent draws sit: the parameter whose mean over them is farthest from
    its posterior mean (in posterior standard deviations), and on which side. A divergence
    is a region stiffer than the adapted step size: for a log-rate, usually the wall where
    its likelihood falls steeply (a rate the data bound from above)."""
    theta = np.asarray(tree["posterior"]["theta"], float)
    flat = theta.reshape(-1, theta.shape[-1])
    sd = flat.std(axis=0)
    if flat.shape[0] < 20 or not np.all(np.isfinite(sd)):
        return ""
    shift = np.mean((theta[diverging] - flat.mean(axis=0)) / np.where(sd > 0, sd, np.inf), 0)
    index = int(np.argmax(np.abs(shift)))
    name = tree["posterior"]["theta"].coords["param"].values[index]
    side = "above" if shift[index] > 0 else "below"
    return (
        f" (the divergent draws sit {abs(shift[index]):.1f} sd {side} the posterior mean of "
        f"{name} on average: a region stiffer than the adapted step, such as the steep side "
        "of a skewed posterior)"
    )


#: The tail check's share of draws at each end of every parameter, and the ratio of the
#: acceptance there to the overall one below which it warns. On cav, HMC trajectories on
#: the Laplace surrogate accept 0.07 (4 x 2000 draws) and 0.00 (4 x 16000) in the low 5%
#: of log q(2-4), against 0.65 and 0.55 overall; every other tail of theirs 0.43-0.71,
#: exact NUTS's 0.78-0.89 (0.88 overall).
TAIL_SHARE, TAIL_RATIO = 0.05, 1 / 3


def tail_acceptance(tree) -> str | None:
    """A warning when a surrogate kernel's exact accept step (delayed acceptance's second
    stage; the trajectories' single one) accepts far less in a tail of some parameter
    than overall: the surrogate is lighter-tailed than the posterior there, and the chain
    enters that tail rarely and sticks (exact, but not geometrically ergodic: means biased
    towards the surrogate's centre at any practical length). None when not such a kernel,
    when exact transitions are interleaved (``exact_every``), or when no tail is short."""
    stats = tree["sample_stats"]
    if "second_stage_acceptance" in stats:
        accept = np.asarray(stats["second_stage_acceptance"], float)
    elif "surrogate_acceptance" in stats:
        accept = np.asarray(stats["acceptance_rate"], float)
    else:
        return None
    if "exact_transition" in stats and bool(stats["exact_transition"].any()):
        return None
    theta = np.asarray(tree["posterior"]["theta"], float)
    theta, accept = theta.reshape(-1, theta.shape[-1]), accept.ravel()
    if len(accept) < 20 / TAIL_SHARE:
        return None
    overall = float(np.mean(accept))
    names = tree["posterior"]["theta"].coords["param"].values
    worst = (np.inf, "", "")
    for j in range(theta.shape[1]):
        low, high = np.quantile(theta[:, j], [TAIL_SHARE, 1 - TAIL_SHARE])
        for side, mask in (("low", theta[:, j] <= low), ("high", theta[:, j] >= high)):
            if mask.sum() and float(np.mean(accept[mask])) < worst[0]:
                worst = (float(np.mean(accept[mask])), str(names[j]), side)
    rate, name, side = worst
    if not rate < TAIL_RATIO * overall:
        return None
    return (
        f"the surrogate is lighter-tailed than the posterior: in the {side} "
        f"{100 * TAIL_SHARE:.0f}% of {name}'s draws the exact accept step accepted "
        f"{rate:.2f}, against {overall:.2f} overall. The chains reach that tail rarely and "
        "stick there: exact in the limit, but the means are biased towards the surrogate's "
        "centre at this length. Interleave exact NUTS draws (exact_every=4, "
        "--exact-every 4) or sample without the surrogate"
    )


def summarize(tree) -> str:
    """ArviZ summary (mean, sd, 95% HDI, r_hat, ESS bulk and tail) plus sampler statistics."""
    import arviz as az

    names = [v for v in tree["posterior"].data_vars if v != "theta"] + ["theta"]
    with warnings.catch_warnings():
        # A quantity fixed by construction (a gauge: V = 0 at a reference site) has no
        # chain variance; its r_hat is NaN, which is the right answer, not a warning.
        warnings.filterwarnings("ignore", "invalid value encountered", RuntimeWarning)
        table = az.summary(tree, var_names=names, ci_kind="hdi", ci_prob=0.95)
    stats = tree["sample_stats"]
    chains, draws = stats.sizes["chain"], stats.sizes["draw"]
    kernel = tree.attrs.get("linest_kernel", "nuts")
    depth = f", max tree depth {int(stats['tree_depth'].max())}" if kernel == "nuts" else ""
    lines = [
        f"{kernel.upper()} with gradient "
        f"{tree.attrs.get('linest_gradient')}: {chains} chains x {draws} draws; "
        f"acceptance {float(stats['acceptance_rate'].mean()):.2f}, divergences "
        f"{int(stats['diverging'].sum())}, step size "
        f"{float(stats['step_size'].mean()):.3g}, mean leapfrog steps "
        f"{float(stats['n_steps'].mean()):.1f}{depth}",
        f"prior: {_short_prior(tree.attrs.get('linest_prior', ''))}",
    ]
    if "second_stage_acceptance" in stats:
        lines.append(
            f"delayed acceptance on the surrogate {tree.attrs.get('linest_surrogate')!r}: "
            f"second-stage acceptance "
            f"{float(np.nanmean(stats['second_stage_acceptance'])):.3f} "
            "(the exact posterior's accept step; first stage as above)"
        )
    if "surrogate_acceptance" in stats:
        lines.append(
            f"trajectories on the surrogate {tree.attrs.get('linest_surrogate')!r}, accepted "
            f"with the exact energy (acceptance above); the surrogate's own energy would "
            f"accept {float(np.nanmean(stats['surrogate_acceptance'])):.3f}"
        )
    if "exact_transition" in stats and bool(stats["exact_transition"].any()):
        exact = np.asarray(stats["exact_transition"], bool)
        lines.append(
            f"exact NUTS transitions interleaved: {int(exact.sum())} of {exact.size} draws "
            f"(acceptance {float(np.asarray(stats['acceptance_rate'])[exact].mean()):.2f})"
        )
    if tree.attrs.get("linest_surrogate_report"):
        lines.append(str(tree.attrs["linest_surrogate_report"]))
    if tree.attrs.get("linest_init") == "mle":
        lines.append("started from the fit, in its whitened coordinates (init='mle')")
    lines += [
        "",
        table.to_string(),
    ]
    return "\n".join(lines)


def _short_prior(text: str) -> str:
    """'a ~ d; b ~ d; c ~ d; e ~ f' -> 'a ... c (3 parameters) ~ d; e ~ f' (groups of more
    than three parameters with the same prior)."""
    groups: dict[str, list[str]] = {}
    for item in filter(None, (part.strip() for part in text.split(";"))):
        name, _, distribution = item.partition(" ~ ")
        groups.setdefault(distribution, []).append(name)
    parts = []
    for distribution, names in groups.items():
        shown = (
            ", ".join(names)
            if len(names) <= 3
            else f"{names[0]} ... {names[-1]} ({len(names)} parameters)"
        )
        parts.append(f"{shown} ~ {distribution}")
    return "; ".join(parts)
