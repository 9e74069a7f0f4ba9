"""Pearson-type goodness of fit for panel data (msm's ``pearson.msm``; Aguirre-Hernandez and
Farewell 2002).

Each interval between consecutive visits of a subject is put in a group by the time it ends
(``timegroups`` quantile groups), its length (``intervalgroups`` quantile groups within its
time group) and, with covariates, the total rate out of states at its covariates
(``covgroups`` quantile groups). Within a group, the observed count of each (from, to)
pair is compared with its expected count, the sum over the group's intervals of the fitted
transition probability ``P(dt; z)[from, to]``; the statistic is
``sum (O - E)^2 / E``. The null distribution lies between chi-square on ``df_lower`` and
``df_upper`` degrees of freedom (the cells' independent transitions, less the parameters
for the lower bound), as msm reports.

The grouping follows msm 1.7 exactly (its ``qcut``: R's type-7 quantiles, at most two equal
quantiles kept, the second nudged up by 1e-6, intervals closed on the left), so the tables
equal msm's. Like msm, the covariates of an interval's end visit set its transition
probability here. Exactly-timed deaths (msm imputes the next sampling time by simulation;
its deterministic ``next.obstime`` path recycles vectors of the wrong length in msm 1.7, so
there is no reference to check against), censored states and misclassification are not
handled. :func:`bootstrap` gives msm's bootstrap p-value.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import scipy.linalg
import scipy.stats

__all__ = ["pearson_table", "qcut"]

EPS = 1e-6


def qcut(x, n: int | None = None, qu=None) -> tuple[np.ndarray, list[str]]:
    """msm's ``qcut``: 0-based group codes of ``x`` by its ``n``-quantile groups (or the
    cut points ``qu``), and the groups' labels."""
    x = np.asarray(x, float)
    if qu is None:
        if n is None:
            raise ValueError("qcut: give n or qu")
        qu = np.quantile(x, np.linspace(0, 1, n + 1))  # type 7, as R's default
    cuts = np.asarray(qu, float)
    # Keep at most two copies of each value (R: sequence(table(qu)) <= 2).
    keep, seen = [], {}
    for v in cuts:
        seen[float(v)] = seen.get(float(v), 0) + 1
        keep.append(seen[float(v)] <= 2)
    qu = cuts[np.asarray(keep, bool)]
    qu[qu == qu.max()] = max(qu.max(), x.max())
    qu[qu == qu.min()] = min(qu.min(), x.min())
    m = len(qu) - 1
    labels = [f"[{_r(a)},{_r(b)})" for a, b in itertools.pairwise(qu)]
    if qu[-2] != qu[-1]:
        labels[-1] = labels[-1][:-1] + "]"
    lag = np.concatenate([[-np.inf], qu[:-1]])
    qu = np.where(qu == lag, qu + EPS, qu)
    # cut(right = FALSE, include.lowest = TRUE): [a, b), the last [a, b].
    codes = np.searchsorted(qu, x, side="right") - 1
    codes[x == qu[-1]] = m - 1
    return codes, labels


def _r(v: float) -> str:
    return f"{round(float(v), 2):g}"


def pearson_table(fit, data, timegroups: int = 3, intervalgroups: int = 3, covgroups: int = 3):
    """The observed and expected tables, the deviances and the test (see the module)."""
    from linest.models.hidden_ctmc import HiddenCTMC

    m = fit.model
    if isinstance(m, HiddenCTMC):  # the records are not the states
        raise ValueError(
            "pearson: the model is a hidden Markov model (misclassification, phases, "
            "outcomes, censor codes or pci); the test here is for a chain observed without "
            "error"
        )
    if getattr(m, "exact", ()):
        raise ValueError(
            "pearson: the model has states entered at exact times (model.exact); msm "
            "imputes the unobserved next sampling time after a death by simulation, which "
            "linest does not do"
        )
    if data.kind != "panel":
        raise ValueError("pearson: needs panel data (states at visit times)")
    n = m.num_states
    theta = np.asarray(fit.theta)
    state, rows, dt = _intervals(m, data)
    prev, to, end = state[rows - 1], state[rows], np.asarray(data.time, float)[rows]
    Qs = _generators(fit, data, rows)  # at each interval's end visit, as msm
    prob = np.stack([scipy.linalg.expm(Q * t)[r] for Q, t, r in zip(Qs, dt, prev)])
    rates = np.einsum("kii->k", Qs)
    tg, t_labels = qcut(end, min(len(np.unique(end)), timegroups))
    ig = np.zeros(len(dt), int)
    for g in range(len(t_labels)):
        rows = tg == g
        if rows.any():
            qu = np.quantile(dt[rows], np.linspace(0, 1, intervalgroups + 1))
            ig[rows] = qcut(dt[rows], qu=qu)[0]
    i_levels = np.unique(ig)  # R: factor() of the codes present
    ig = np.searchsorted(i_levels, ig)
    if m.covariates:
        cg, c_labels = qcut(rates, min(len(np.unique(rates)), covgroups))
    else:
        cg, c_labels = np.zeros(len(dt), int), ["1"]
    dims = (len(t_labels), len(i_levels), len(c_labels))
    obs = np.zeros((*dims, n, n))
    exp = np.zeros((*dims, n, n))
    np.add.at(obs, (tg, ig, cg, prev, to), 1.0)
    np.add.at(exp, (tg, ig, cg, prev), prob)
    exp[exp < np.sqrt(np.finfo(float).eps)] = 0.0
    # msm's intervaltrans.msm: pairs with P(1)[r, s] > sqrt(eps), absorbing -> absorbing out.
    P1 = scipy.linalg.expm(np.asarray(m.generator(theta)))
    absorbing = set(m.absorbing)
    pairs = [
        (r, s)
        for r in range(n)
        for s in range(n)
        if abs(P1[r, s]) > np.sqrt(np.finfo(float).eps) and not (r in absorbing and s in absorbing)
    ]
    # One row per group, the time group varying fastest (msm's expand.grid order).
    O, E = (
        np.stack([a[..., r, s] for r, s in pairs], -1).transpose(2, 1, 0, 3).reshape(-1, len(pairs))
        for a in (obs, exp)
    )
    D = (O - E) ** 2 / (E + (E == 0))
    stat = float(D.sum())
    origins = sorted({r for r, _ in pairs})
    n_indep = len(pairs) - len(origins)
    per_origin = np.stack(
        [O[:, [k for k, (r, _) in enumerate(pairs) if r == a]].sum(1) for a in origins]
    )
    ndf = np.array([sum(r == a for r, _ in pairs) - 1 for a in origins])
    n_zero = int(((per_origin == 0) * ndf[:, None]).sum())
    df_upper = O.shape[0] * n_indep - n_zero
    df_lower = df_upper - len(theta)
    names = [f"{m.states[r]}-{m.states[s]}" for r, s in pairs]
    groups = pd.MultiIndex.from_tuples(
        [(t, i, c) for c in c_labels for i in [str(v + 1) for v in i_levels] for t in t_labels],
        names=["time", "interval", "covariates"],
    )
    frame = lambda a: pd.DataFrame(a, index=groups, columns=names)  # noqa: E731
    test = pd.Series(
        {
            "stat": stat,
            "df_lower": df_lower,
            "p_lower": float(scipy.stats.chi2.sf(stat, df_lower)) if df_lower > 0 else np.nan,
            "df_upper": df_upper,
            "p_upper": float(scipy.stats.chi2.sf(stat, df_upper)),
        }
    )
    return {
        "observed": frame(O),
        "expected": frame(E),
        "deviance": frame(D * np.sign(O - E)),
        "test": test,
    }


def bootstrap(fit, data, boot: int, seed: int, grouping: dict) -> np.ndarray:
    """The statistic over ``boot`` data sets simulated from the fit (msm's
    ``pearson.msm(boot = TRUE)``): each subject starts where it was first seen, and at each
    of its visit times the next state is drawn from ``P(dt; z)`` of the fitted model (the
    covariates of the interval's start, as in the likelihood); each set is refitted and
    tested as the data were."""
    import dataclasses
    import warnings

    import linest

    m = fit.model
    rng = np.random.default_rng(seed)
    observed, rows, dt = _intervals(m, data)
    Qs = _generators(fit, data, rows - 1)  # at each interval's start, as the likelihood
    P = np.stack([scipy.linalg.expm(Q * t) for Q, t in zip(Qs, dt)])
    stats = np.empty(boot)
    for b in range(boot):
        code = observed.copy()
        for k, row in enumerate(rows):  # in file order: a subject's rows are consecutive
            weights = P[k, code[row - 1]].clip(0)
            code[row] = rng.choice(m.num_states, p=weights / weights.sum())
        simulated = dataclasses.replace(data, state=np.array([m.states[i] for i in code], object))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            refit = linest.fit(m, simulated, progress=False)
        stats[b] = pearson_table(refit, simulated, **grouping)["test"]["stat"]
    return stats


def _intervals(model, data):
    """Every row's state code, the rows that end an interval (a subject's visits after its
    first) and those intervals' lengths."""
    position = {s: i for i, s in enumerate(model.states)}
    state = model._codes(data, data.state, position, data.columns["state"])
    rows = np.flatnonzero(np.r_[False, data.subject[1:] == data.subject[:-1]])
    time = np.asarray(data.time, float)
    return state, rows, time[rows] - time[rows - 1]


def _generators(fit, data, rows) -> np.ndarray:
    """The fitted Q at the covariates of each of ``rows`` (centred as the fit)."""
    m, theta = fit.model, np.asarray(fit.theta)
    if not m.covariates:
        return np.broadcast_to(
            np.asarray(m.generator(theta)), (len(rows), m.num_states, m.num_states)
        )
    columns = [data.covariate_names.index(c) for c in m.covariates]
    z = data.covariates[rows][:, columns] - np.asarray(fit.statistics.covariate_means)
    return np.asarray(m.generator(theta, z))
