"""Simulate chains from a CTMC: fully observed paths, and panel visits taken from them.

Used by the tests (recover known generators) and the benchmarks (scaling). Vectorised
over subjects: each step draws every active subject's next jump at once (Gillespie).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["misclassify", "simulate_panel", "simulate_paths"]


def simulate_paths(
    model, theta, num_subjects: int, t_max: float, rng: np.random.Generator, initial=0
) -> pd.DataFrame:
    """Fully observed paths on ``[0, t_max]``: one row per jump, a last row at the end.

    Columns ``subject``, ``time``, ``state`` (the model's state codes). ``initial`` is
    a state index or an array of one per subject. Read back with
    ``read_chains(frame, kind="paths")``.
    """
    Q = np.asarray(model.generator(np.asarray(theta, float)), float)
    n = Q.shape[0]
    out_rate = -np.diag(Q)
    jump = np.where(out_rate[:, None] > 0, Q / np.where(out_rate > 0, out_rate, 1)[:, None], 0)
    np.fill_diagonal(jump, 0)
    cumulative = np.cumsum(jump, axis=1)
    state = np.broadcast_to(np.asarray(initial), (num_subjects,)).astype(int).copy()
    time = np.zeros(num_subjects)
    subject = np.arange(num_subjects)
    rows = [(subject, time.copy(), state.copy())]
    active = np.ones(num_subjects, bool)
    while active.any():
        idx = np.flatnonzero(active)
        rate = out_rate[state[idx]]
        with np.errstate(divide="ignore"):
            wait = np.where(rate > 0, rng.exponential(1.0 / np.where(rate > 0, rate, 1.0)), np.inf)
        t_new = time[idx] + wait
        ended = t_new >= t_max
        done = idx[ended]
        rows.append((done, np.full(done.size, float(t_max)), state[done]))
        active[done] = False
        moving = idx[~ended]
        u = rng.random(moving.size)
        nxt = np.minimum((cumulative[state[moving]] < u[:, None]).sum(axis=1), n - 1)
        time[moving] = t_new[~ended]
        state[moving] = nxt
        rows.append((moving, time[moving].copy(), nxt.copy()))
    subj = np.concatenate([r[0] for r in rows])
    times = np.concatenate([r[1] for r in rows])
    states = np.concatenate([r[2] for r in rows])
    order = np.lexsort((times, subj))
    frame = pd.DataFrame(
        {
            "subject": subj[order],
            "time": times[order],
            "state": np.asarray(model.states, dtype=object)[states[order]],
        }
    )
    # A path's final row repeats the last jump when it ended in an absorbing state
    # exactly at t_max; drop exact duplicates of (subject, time).
    return frame.drop_duplicates(["subject", "time"], keep="first").reset_index(drop=True)


def simulate_panel(
    model,
    theta,
    num_subjects: int,
    t_max: float,
    rng: np.random.Generator,
    mean_gap: float = 1.0,
    resolution: float | None = None,
    initial=0,
) -> pd.DataFrame:
    """Panel data: each subject visited at 0 and then after gaps ~ Uniform(0.5, 1.5) * mean_gap.

    Visits stop at ``t_max`` or once an absorbing state is seen. Entry into one of the
    model's ``exact`` states is recorded at its exact time (msm's ``deathexact``).
    ``resolution`` rounds visit times (e.g. 1/365 for days), which bounds the number of
    distinct time steps as in real clinic schedules.
    """
    paths = simulate_paths(model, theta, num_subjects, t_max, rng, initial)
    code = {s: i for i, s in enumerate(model.states)}
    p_subject = paths["subject"].to_numpy()
    p_time = paths["time"].to_numpy()
    p_state = np.array([code[x] for x in paths["state"]], dtype=int)
    absorbing = np.isin(np.arange(model.num_states), model.absorbing)
    exact = np.isin(np.arange(model.num_states), model.exact)

    max_visits = int(np.ceil(t_max / (0.5 * mean_gap))) + 2
    gaps = rng.uniform(0.5, 1.5, size=(num_subjects, max_visits)) * mean_gap
    visits = np.concatenate([np.zeros((num_subjects, 1)), np.cumsum(gaps, axis=1)], axis=1)
    if resolution:
        visits = np.round(visits / resolution) * resolution
    visits = np.where(visits <= t_max, visits, np.nan)
    subj = np.repeat(np.arange(num_subjects), visits.shape[1])
    vt = visits.reshape(-1)
    ok = np.isfinite(vt)
    subj, vt = subj[ok], vt[ok]
    # State at each visit: last path row of that subject at or before the visit time.
    key_paths = p_subject * (4 * t_max + 4) + p_time
    key_visits = subj * (4 * t_max + 4) + vt
    pos = np.searchsorted(key_paths, key_visits, side="right") - 1
    v_state = p_state[pos]
    # Exact entries: the first path row (after the start) in an exact state.
    entered = exact[p_state] & np.r_[False, p_subject[1:] == p_subject[:-1]]
    deaths = (
        pd.DataFrame(
            {"subject": p_subject[entered], "time": p_time[entered], "state": p_state[entered]}
        )
        .groupby("subject", sort=True)
        .first()
        .reset_index()
    )
    exact_time = np.full(num_subjects, np.inf)
    exact_time[deaths["subject"].to_numpy()] = deaths["time"].to_numpy()
    before = vt < exact_time[subj]
    frame = pd.DataFrame({"subject": subj[before], "time": vt[before], "state": v_state[before]})
    # Keep visits up to and including the first one in an absorbing state.
    absorbed = absorbing[frame["state"].to_numpy()]
    seen_before = (
        pd.Series(absorbed, index=frame.index).groupby(frame["subject"].to_numpy()).cumsum()
        - absorbed
    )
    frame = pd.concat([frame.loc[seen_before.to_numpy() == 0], deaths], ignore_index=True)
    frame = frame.sort_values(["subject", "time"], kind="stable").reset_index(drop=True)
    frame["state"] = np.asarray(model.states, dtype=object)[frame["state"].to_numpy()]
    return frame


def misclassify(
    frame: pd.DataFrame, model, theta, rng: np.random.Generator, obstrue: str = "obstrue"
) -> pd.DataFrame:
    """Record the true states of panel visits through a :class:`~linest.HiddenCTMC`'s
    misclassification probabilities.

    Each subject's first visit and entries into exactly-timed states are recorded truly;
    column ``obstrue`` (1 on first visits) says which visits are known to be true.
    """
    E = np.asarray(model.emission_matrix(np.asarray(theta, float)), float)
    code = {s: i for i, s in enumerate(model.states)}
    true = np.array([code[x] for x in frame["state"]], dtype=int)
    subject = frame["subject"].to_numpy()
    first = np.r_[True, subject[1:] != subject[:-1]]
    keep = first | np.isin(true, model.exact)
    u = rng.random(len(true))
    recorded = (u[:, None] > np.cumsum(E[true], axis=1)).sum(axis=1)
    recorded = np.minimum(recorded, model.num_states - 1)
    recorded = np.where(keep, true, recorded)
    out = frame.copy()
    out["state"] = np.asarray(model.states, dtype=object)[recorded]
    out[obstrue] = first.astype(int)
    return out
