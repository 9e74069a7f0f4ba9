"""Continuous-time Markov chains: a generator with named states and allowed transitions.

The generator ``Q`` has ``Q[r, s] = q_rs(z) = exp(theta_rs + beta_rs . (z - zbar))`` on
the allowed transitions ``r -> s``, zero elsewhere off the diagonal, and rows summing to
zero. ``theta`` (log-rates, then covariate effects) is unconstrained. Covariates are
centred at their means over the intervals' starting rows, as msm does, so the baseline
rates are those of an average subject.

Three kinds of data give three likelihood terms, summed (Kalbfleisch & Lawless 1985;
Jackson 2011, the msm paper):

* panel visits ``a`` at ``t`` then ``b`` at ``t + dt``: ``log P(dt)[a, b]`` with
  ``P(t) = exp(tQ)``. Entry into an absorbing state whose time is known exactly (msm's
  ``deathexact``): ``log sum_{j != D} P(dt)[a, j] q_jD = log (P(dt) Q)[a, D]``.
* fully observed paths: ``sum N_rs log q_rs - sum_r R_r q_r`` (``N_rs`` jumps ``r -> s``,
  ``R_r`` time spent in ``r``, ``q_r = -Q[r, r]``), maximised by ``q_rs = N_rs / R_r``.
* aggregated counts ``C(tau)``: ``sum C[a, b] log P(tau)[a, b]``.

Panel intervals and counts are grouped by (covariate pattern, time step): the cost
grows with the number of distinct steps, not of intervals.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from linest.data import Chains, DataError, read_chains, read_count_matrix, state_key
from linest.engine import expm, expm_times
from linest.gradients import Eigen, Exact
from linest.models import ctmc_outputs as outputs
from linest.models.base import AbstractLinearModel
from linest.models.result import FitResult, exp_interval

__all__ = ["CTMC", "CTMCFit", "CTMCStatistics"]

#: The default gradient method of CTMC likelihoods: one eigendecomposition per
#: covariate pattern shared by all time steps, exact, falling back to the Pade Frechet
#: derivative (Exact) when the eigenvectors are ill-conditioned (e.g. equal rates in a
#: progressive model make Q defective).
DEFAULT_GRADIENT = Eigen(fallback=True)

# Probabilities below this count as zero in the log (keeps optimisers' trial steps finite).
_TINY = 1e-300


class CTMCStatistics(eqx.Module):
    """Sufficient statistics of observed chains for a :class:`CTMC` (a pytree of arrays).

    ``z``: (G, C) distinct centred covariate patterns. Panel/counts cells, one per
    distinct (pattern, time step): ``lag`` (K,), ``group`` (K,), ``counts`` (K, n, n),
    ``exact_counts`` (K, n, E) for entries into the model's exactly-timed states.
    Paths: ``jumps`` (G, n, n) and ``time_at_risk`` (G, n).
    """

    z: jax.Array
    covariate_means: jax.Array
    lag: jax.Array
    group: jax.Array
    counts: jax.Array
    exact_counts: jax.Array
    jumps: jax.Array
    time_at_risk: jax.Array
    # Per interval (panel) or table row (counts), for pointwise log-likelihoods (LOO):
    # its cell, from-state, to-column (n + slot for an exactly-timed entry), weight and
    # observation (subject or row) index. Empty in for_compute() copies.
    row_cell: jax.Array | None = None
    row_from: jax.Array | None = None
    row_to: jax.Array | None = None
    row_weight: jax.Array | None = None
    row_observation: jax.Array | None = None
    num_subjects: int = eqx.field(static=True, default=0)
    num_intervals: int = eqx.field(static=True, default=0)
    source: str = eqx.field(static=True, default="")
    observation_dim: str = eqx.field(static=True, default="")
    observation_names: tuple = eqx.field(static=True, default=())

    @property
    def num_cells(self) -> int:
        """Cells holding data (the arrays are padded with empty cells; see ``_bucket``)."""
        used = np.asarray(self.counts).sum(axis=(1, 2)) + np.asarray(self.exact_counts).sum(
            axis=(1, 2)
        )
        return int(np.count_nonzero(used))

    def for_compute(self) -> CTMCStatistics:
        """A copy without the static labels and totals, which jitted code never reads.

        Data sets whose arrays have the same shapes then share one compiled program
        (simulation studies and resampling otherwise recompile for every data set).
        """
        return dataclasses.replace(
            self,
            row_cell=None,
            row_from=None,
            row_to=None,
            row_weight=None,
            row_observation=None,
            num_subjects=0,
            num_intervals=0,
            source="",
            observation_dim="",
            observation_names=(),
        )


def _bucket(size: int) -> int:
    """``size`` rounded up to ``m 2^e`` with ``m`` in 4..7: at most 25% padding, and few
    distinct shapes (so few compilations) across data sets of similar size."""
    if size <= 8:
        return size
    e = size.bit_length() - 3
    return -(-size // (1 << e)) * (1 << e)


def _parse_transition(item, caller: str) -> tuple[str, str]:
    if isinstance(item, str):
        parts = re.split(r"\s*(?:->|-|,)\s*", item.strip())
        if len(parts) != 2 or not all(parts):
            raise ValueError(f"{caller}: transition {item!r} is not of the form 'r-s'")
        return state_key(parts[0]), state_key(parts[1])
    try:
        r, s = item
    except (TypeError, ValueError):
        raise ValueError(f"{caller}: transition {item!r} is not a pair (r, s)") from None
    return state_key(r), state_key(s)


class CTMC(AbstractLinearModel):
    """A continuous-time Markov chain on named states with allowed transitions.

    Parameters
    ----------
    states : sequence
        State codes as they appear in the data (``1``, ``"well"``...).
    transitions : sequence of "r-s" strings or (r, s) pairs
        The allowed instantaneous transitions (the off-diagonal pattern of Q).
    exact : sequence, optional
        Absorbing states whose entry time is observed exactly (msm's ``deathexact``).
    covariates : sequence of str, optional
        Covariate names (data columns); each acts log-linearly on intensities.
    effects : sequence of (transition, covariate), optional
        Which transition each covariate acts on; default every covariate on every
        transition (msm's ``covariates = ~ x``).
    labels : sequence of str, optional
        Display names of the states.

    Examples
    --------
    >>> import linest
    >>> cav = linest.CTMC(states=[1, 2, 3, 4],
    ...                   transitions=["1-2", "1-4", "2-1", "2-3", "2-4", "3-2", "3-4"],
    ...                   exact=[4])
    >>> cav.param_names[:2]
    ('log q(1-2)', 'log q(1-4)')
    """

    states: tuple[str, ...] = eqx.field(static=True)
    transitions: tuple[tuple[int, int], ...] = eqx.field(static=True)
    exact: tuple[int, ...] = eqx.field(static=True)
    covariates: tuple[str, ...] = eqx.field(static=True)
    effects: tuple[tuple[int, int], ...] = eqx.field(static=True)
    labels: tuple[str, ...] = eqx.field(static=True)

    def __init__(
        self,
        states: Sequence,
        transitions: Sequence,
        exact: Sequence = (),
        covariates: Sequence[str] = (),
        effects: Sequence | None = None,
        labels: Sequence[str] | None = None,
    ):
        caller = "CTMC"
        names = tuple(state_key(s) for s in states)
        if len(names) < 2:
            raise ValueError(f"{caller}: need at least two states, got {list(states)!r}")
        if len(set(names)) != len(names):
            raise ValueError(f"{caller}: repeated state in {list(states)!r}")
        position = {s: i for i, s in enumerate(names)}

        def where(code, what):
            if code not in position:
                raise ValueError(
                    f"{caller}: {what} names state {code!r}, which is not one of the "
                    f"states {', '.join(names)}"
                )
            return position[code]

        pairs = []
        for item in transitions:
            r, s = _parse_transition(item, caller)
            pair = (where(r, f"transition {item!r}"), where(s, f"transition {item!r}"))
            if pair[0] == pair[1]:
                raise ValueError(f"{caller}: transition {item!r} goes from a state to itself")
            if pair in pairs:
                raise ValueError(f"{caller}: transition {item!r} is listed twice")
            pairs.append(pair)
        if not pairs:
            raise ValueError(f"{caller}: no transitions allowed")
        exact_idx = tuple(where(state_key(e), "exact") for e in exact)
        for e in exact_idx:
            if any(r == e for r, _ in pairs):
                raise ValueError(
                    f"{caller}: state {names[e]} is listed as exact (absorbing, entry time "
                    "known) but has outgoing transitions"
                )
        covariates = (covariates,) if isinstance(covariates, str) else tuple(covariates)
        if len(set(covariates)) != len(covariates):
            raise ValueError(f"{caller}: repeated covariate in {list(covariates)!r}")
        if effects is None:
            effect_idx = tuple((t, c) for t in range(len(pairs)) for c in range(len(covariates)))
        else:
            effect_idx = []
            for item in effects:
                try:
                    transition, covariate = item
                except (TypeError, ValueError):
                    raise ValueError(
                        f"{caller}: effect {item!r} is not a (transition, covariate) pair"
                    ) from None
                r, s = _parse_transition(transition, caller)
                pair = (where(r, f"effect {item!r}"), where(s, f"effect {item!r}"))
                if pair not in pairs:
                    raise ValueError(f"{caller}: effect {item!r} is on a transition not allowed")
                if covariate not in covariates:
                    raise ValueError(
                        f"{caller}: effect {item!r} names covariate {covariate!r}, not one of "
                        f"{list(covariates)!r}"
                    )
                effect_idx.append((pairs.index(pair), covariates.index(covariate)))
            effect_idx = tuple(dict.fromkeys(effect_idx))
        self.states = names
        self.transitions = tuple(pairs)
        self.exact = exact_idx
        self.covariates = covariates
        self.effects = effect_idx
        labels = names if labels is None else tuple(str(x) for x in labels)
        if len(labels) != len(names):
            raise ValueError(f"{caller}: {len(labels)} labels for {len(names)} states")
        self.labels = labels

    # ------------------------------------------------------------------ structure

    @property
    def num_states(self) -> int:
        return len(self.states)

    @property
    def num_rates(self) -> int:
        return len(self.transitions)

    def transition_name(self, k: int) -> str:
        r, s = self.transitions[k]
        return f"{self.states[r]}-{self.states[s]}"

    @property
    def param_names(self) -> tuple[str, ...]:
        rates = tuple(f"log q({self.transition_name(k)})" for k in range(self.num_rates))
        betas = tuple(
            f"beta {self.covariates[c]} ({self.transition_name(t)})" for t, c in self.effects
        )
        return rates + betas

    prior_kinds: ClassVar[tuple[str, ...]] = ("log_rate", "effect")

    @property
    def param_kinds(self) -> tuple[str, ...]:
        return ("log_rate",) * self.num_rates + ("effect",) * len(self.effects)

    @property
    def param_positive(self) -> tuple[bool, ...]:
        return (True,) * self.num_rates + (False,) * len(self.effects)

    def natural_parameters(self, theta):
        """Rates ``q`` per transition and hazard ratios ``exp(beta)`` per effect."""
        theta = jnp.asarray(theta)
        out = {
            "rate": (
                jnp.exp(theta[..., : self.num_rates]),
                "transition",
                tuple(self.transition_name(k) for k in range(self.num_rates)),
            )
        }
        if self.effects:
            labels = tuple(
                f"{self.covariates[c]} ({self.transition_name(t)})" for t, c in self.effects
            )
            out["hazard_ratio"] = (jnp.exp(theta[..., self.num_rates :]), "effect", labels)
        return out

    @property
    def absorbing(self) -> tuple[int, ...]:
        sources = {r for r, _ in self.transitions}
        return tuple(i for i in range(self.num_states) if i not in sources)

    def reachable(self) -> np.ndarray:
        """reach[a, b]: b can follow a after any time (a path of allowed transitions)."""
        return outputs.reaches(self._direct())

    def with_covariates(self, covariates: Sequence[str]) -> CTMC:
        """The same chain with every covariate acting on every transition."""
        return CTMC(
            states=self.states,
            transitions=[(self.states[r], self.states[s]) for r, s in self.transitions],
            exact=[self.states[e] for e in self.exact],
            covariates=covariates,
            labels=self.labels,
        )

    # ------------------------------------------------------------------ the matrix

    def rates(self, theta, z=None) -> jax.Array:
        """Intensities of the allowed transitions, shape (R,) or (G, R) for patterns z."""
        theta = jnp.asarray(theta)
        log_q = theta[: self.num_rates]
        if z is None or not self.effects:
            log = log_q if z is None else jnp.broadcast_to(log_q, (jnp.shape(z)[0], self.num_rates))
            return jnp.exp(log)
        return jnp.exp(log_q + jnp.asarray(z, theta.dtype) @ self._beta(theta).T)

    def _beta(self, theta):
        """Covariate effects as a (rates, covariates) matrix."""
        beta = jnp.zeros((self.num_rates, len(self.covariates)), theta.dtype)
        if self.effects:
            t, c = zip(*self.effects)
            beta = beta.at[list(t), list(c)].set(theta[self.num_rates :])
        return beta

    def _rates_natural(self, values, z=None) -> jax.Array:
        """As :meth:`rates`, from the baseline rates themselves (0 allowed) and the effects."""
        values = jnp.asarray(values)
        q = values[: self.num_rates]
        if z is None or not self.effects:
            return q if z is None else jnp.broadcast_to(q, (jnp.shape(z)[0], self.num_rates))
        return q * jnp.exp(jnp.asarray(z, values.dtype) @ self._beta(values).T)

    def generator(self, theta, z=None) -> jax.Array:
        """Q(theta) of shape (n, n), or (G, n, n) for covariate patterns ``z`` (G, C)."""
        return self._generator_from(self.rates(theta, z))

    def _generator_from(self, q) -> jax.Array:
        rows, cols = (list(x) for x in zip(*self.transitions))
        n = self.num_states
        Q = jnp.zeros((*q.shape[:-1], n, n), q.dtype).at[..., rows, cols].set(q)
        return Q - jnp.eye(n, dtype=q.dtype) * Q.sum(axis=-1, keepdims=True)

    matrix = generator

    def system_matrix(self, theta):
        """Q at the baseline covariates."""
        return self.generator(theta)

    def exponent_times(self, statistics):
        return np.asarray(statistics.lag)

    # ------------------------------------------------------------------ likelihood

    def loglik(self, theta, statistics: CTMCStatistics, gradient=None) -> jax.Array:
        """Log-likelihood; derivatives by ``gradient`` (default: shared eigendecomposition)."""
        return self._loglik_of(self.generator(theta, statistics.z), statistics, gradient)

    def boundary_mask(self) -> tuple[bool, ...]:
        """The baseline rates may be 0 (a transition that does not happen)."""
        return self.param_positive

    def loglik_natural(self, values, statistics: CTMCStatistics, gradient=None) -> jax.Array:
        """The log-likelihood from the baseline rates themselves (>= 0) and the effects."""
        Q = self._generator_from(self._rates_natural(values, statistics.z))
        return self._loglik_of(Q, statistics, gradient)

    def _loglik_of(self, Q, statistics: CTMCStatistics, gradient) -> jax.Array:
        gradient = DEFAULT_GRADIENT if gradient is None else gradient
        st = statistics
        total = jnp.zeros((), Q.dtype)
        if st.lag.shape[0]:
            P, F = self._cell_probabilities(Q, st, gradient)
            observed = st.counts > 0
            total += jnp.sum(st.counts * jnp.log(jnp.where(observed, jnp.maximum(P, _TINY), 1.0)))
            if F is not None:
                seen = st.exact_counts > 0
                total += jnp.sum(
                    st.exact_counts * jnp.log(jnp.where(seen, jnp.maximum(F, _TINY), 1.0))
                )
        diag = jnp.diagonal(Q, axis1=-2, axis2=-1)  # -q_r
        jumps = st.jumps > 0
        total += jnp.sum(st.jumps * jnp.log(jnp.where(jumps, Q, 1.0))) + jnp.sum(
            st.time_at_risk * diag
        )
        return total

    def _cell_probabilities(self, Q, st, gradient):
        """P(lag_k) per cell (K, n, n), and (P q_.D) per cell (K, n, E) for exact entries."""
        P = expm_times(Q, st.lag, st.group, gradient=gradient)
        if not self.exact:
            return P, None
        into = Q[:, :, list(self.exact)][st.group]  # (K, n, E): q_jD
        return P, jnp.einsum("kaj,kje->kae", P, into)  # sum_j P[a, j] q_jD

    def pointwise_loglik(self, theta, statistics: CTMCStatistics, gradient=None):
        """Log-likelihood per subject (panel data) or per table row (counts), or None.

        Needs the statistics as :meth:`statistics` returns them (not a for_compute()
        copy). Fully observed paths give None (their likelihood is kept pooled).
        """
        st = statistics
        if (
            st.row_cell is None
            or st.row_from is None
            or st.row_to is None
            or st.row_weight is None
            or st.row_observation is None
            or not st.lag.shape[0]
        ):
            return None
        gradient = DEFAULT_GRADIENT if gradient is None else gradient
        Q = self.generator(theta, st.z)
        P, F = self._cell_probabilities(Q, st, gradient)
        table = P if F is None else jnp.concatenate([P, F], axis=-1)
        log_table = jnp.log(jnp.maximum(table, _TINY))
        per_row = st.row_weight * log_table[st.row_cell, st.row_from, st.row_to]
        return jax.ops.segment_sum(
            per_row, st.row_observation, num_segments=len(st.observation_names)
        )

    def observation_labels(self, statistics: CTMCStatistics):
        if statistics.row_cell is None or not statistics.observation_names:
            return None
        return statistics.observation_dim, list(statistics.observation_names)

    # ------------------------------------------------------------------ data

    def statistics(self, data: Chains) -> CTMCStatistics:
        """Check observed chains against the model and reduce them to sufficient statistics.

        Raises :class:`linest.data.DataError` naming the file, line and subject for a
        state the model does not have, a transition its allowed transitions cannot
        produce, or a covariate the data lack.
        """
        if isinstance(data, CTMCStatistics):
            return data
        if not isinstance(data, Chains):
            raise TypeError(
                f"CTMC.statistics: expected Chains from linest.read_chains, got {type(data).__name__}"
            )
        missing = [c for c in self.covariates if c not in data.covariate_names]
        if missing:
            raise DataError(
                f"{data.source}: the model uses covariate(s) {missing} but the data were read "
                f"with covariates {list(data.covariate_names)}; pass covariates=[...] to "
                "read_chains"
            )
        cov_cols = [data.covariate_names.index(c) for c in self.covariates]
        n = self.num_states
        position = {s: i for i, s in enumerate(self.states)}

        if data.kind == "counts":
            a = self._codes(data, data.state_from, position, data.columns["from"])
            b = self._codes(data, data.state_to, position, data.columns["to"])
            reach = self.reachable()
            bad = np.flatnonzero(~reach[a, b] & (data.count > 0))
            if bad.size:
                i = bad[0]
                raise DataError(
                    f"{data.where(i)}: {data.count[i]:g} transitions {self.states[a[i]]} -> "
                    f"{self.states[b[i]]}, which no path of allowed transitions produces "
                    f"(allowed: {self._allowed()})"
                )
            z, means = _centre(data.covariates[:, cov_cols])
            return self._cells(
                z, means, data.lag, a, b, data.count, np.zeros(len(a), bool),
                num_subjects=0, num_intervals=int(data.count.sum()), source=data.source,
                observation=np.arange(len(a)), observation_dim="row",
                observation_names=tuple(data.line),
            )  # fmt: skip

        codes = self._codes(data, data.state, position, data.columns["state"])
        same = data.subject[1:] == data.subject[:-1]
        start = np.flatnonzero(same)  # interval i runs from row i to row i + 1
        a, b = codes[start], codes[start + 1]
        dt = data.time[start + 1] - data.time[start]
        z_rows, means = _centre(data.covariates[start][:, cov_cols])
        if data.kind == "paths":
            bad = np.flatnonzero((a != b) & ~self._direct()[a, b])
            if bad.size:
                i = start[bad[0]] + 1
                raise DataError(
                    f"{data.where(i)}: a jump {self.states[a[bad[0]]]} -> "
                    f"{self.states[b[bad[0]]]} in fully observed paths, which the model does "
                    f"not allow (allowed: {self._allowed()})"
                )
            patterns, group = _unique_rows(z_rows)
            G = len(patterns)
            jumps = np.zeros((G, n, n))
            np.add.at(jumps, (group, a, b), (a != b).astype(float))
            time_at_risk = np.zeros((G, n))
            np.add.at(time_at_risk, (group, a), dt)
            return CTMCStatistics(
                z=jnp.asarray(patterns),
                covariate_means=jnp.asarray(means),
                lag=jnp.zeros((0,)),
                group=jnp.zeros((0,), jnp.int32),
                counts=jnp.zeros((0, n, n)),
                exact_counts=jnp.zeros((0, n, len(self.exact))),
                jumps=jnp.asarray(jumps),
                time_at_risk=jnp.asarray(time_at_risk),
                num_subjects=data.num_subjects,
                num_intervals=len(start),
                source=data.source,
            )

        reach = self.reachable()
        bad = np.flatnonzero(~reach[a, b])
        if bad.size:
            i = start[bad[0]]
            raise DataError(
                f"{data.where(i + 1)}: subject {data.subject[i]} is in state "
                f"{self.states[a[bad[0]]]} at time {data.time[i]:g} ({data.line[i]}) and in "
                f"state {self.states[b[bad[0]]]} at time {data.time[i + 1]:g}, which no path "
                f"of allowed transitions reaches (allowed: {self._allowed()})"
            )
        into_exact = np.isin(b, self.exact) & (a != b)
        stay_absorbed = np.isin(a, self.absorbing) & (a == b)  # probability 1: no information
        keep = ~stay_absorbed
        names, observation = np.unique(data.subject[start][keep], return_inverse=True)
        return self._cells(
            z_rows[keep], means, dt[keep], a[keep], b[keep], np.ones(keep.sum()), into_exact[keep],
            num_subjects=data.num_subjects, num_intervals=len(start), source=data.source,
            observation=observation.reshape(-1), observation_dim="subject",
            observation_names=tuple(str(x) for x in names),
        )  # fmt: skip

    def _cells(
        self, z, means, lag, a, b, weight, exact, *, num_subjects, num_intervals, source,
        observation, observation_dim, observation_names,
    ):  # fmt: skip
        """Sum intervals (or count-table rows) a -> b into (covariate pattern, time step) cells.

        ``z`` are centred covariates, ``weight`` the number each row stands for, and
        ``exact`` marks entries into an exactly-timed state (they go to exact_counts).
        """
        n, E = self.num_states, len(self.exact)
        patterns, group = _unique_rows(z)
        G = len(patterns)
        cell, cell_lag, cell_group = _cell_index(group, lag)
        K = len(cell_lag)
        counts = np.zeros((K, n, n))
        np.add.at(counts, (cell[~exact], a[~exact], b[~exact]), weight[~exact])
        exact_counts = np.zeros((K, n, E))
        column = b.copy()
        if exact.any():
            slots = np.array([self.exact.index(x) for x in b[exact]])
            np.add.at(exact_counts, (cell[exact], a[exact], slots), weight[exact])
            column[exact] = n + slots
        return CTMCStatistics(
            z=jnp.asarray(patterns),
            covariate_means=jnp.asarray(means),
            lag=jnp.asarray(cell_lag, dtype=float),
            group=jnp.asarray(cell_group, dtype=jnp.int32),
            counts=jnp.asarray(counts),
            exact_counts=jnp.asarray(exact_counts),
            jumps=jnp.zeros((G, n, n)),
            time_at_risk=jnp.zeros((G, n)),
            row_cell=jnp.asarray(cell, dtype=jnp.int32),
            row_from=jnp.asarray(a, dtype=jnp.int32),
            row_to=jnp.asarray(column, dtype=jnp.int32),
            row_weight=jnp.asarray(weight, dtype=float),
            row_observation=jnp.asarray(observation, dtype=jnp.int32),
            num_subjects=num_subjects,
            num_intervals=num_intervals,
            source=source,
            observation_dim=observation_dim,
            observation_names=observation_names,
        )

    def _codes(self, data: Chains, values, position, column) -> np.ndarray:
        codes = np.array([position.get(v, -1) for v in values], dtype=int)
        bad = np.flatnonzero(codes < 0)
        if bad.size:
            i = bad[0]
            raise DataError(
                f"{data.where(i)}: column '{column}' holds state {values[i]!r}, which is not a "
                f"state of the model ({', '.join(self.states)})"
            )
        return codes

    def _direct(self) -> np.ndarray:
        direct = np.zeros((self.num_states, self.num_states), bool)
        for r, s in self.transitions:
            direct[r, s] = True
        return direct

    def _allowed(self) -> str:
        return ", ".join(self.transition_name(k) for k in range(self.num_rates))

    # ------------------------------------------------------------------ specs

    spec_keys: ClassVar[dict[str, str]] = {
        "states": "state codes as in the data",
        "labels": "display names of the states",
        "transitions": 'allowed transitions, e.g. ["1-2", "2-1"]',
        "exact": "absorbing states entered at exactly known times (msm's deathexact)",
        "covariates": "covariate columns acting on every intensity",
        "effects": "[transition, covariate] pairs, when not every covariate acts everywhere",
        # These make the visits a hidden Markov model (linest.HiddenCTMC, the forward
        # algorithm): see HiddenCTMC.spec_keys.
        "misclassification": "true -> recorded pairs (msm's ematrix); see hidden_ctmc",
        "obstrue": "column of visits recording the true state (msm's obstrue)",
        "initial": "probabilities of the true state at the first visit (msm's initprobs)",
        "censor": 'codes standing for sets of states, e.g. { "99" = [1, 2, 3] }',
        "pci": "cut times of piecewise-constant intensities, e.g. [5, 10] (msm's pci)",
        "estimate_initial": "estimate the initial probabilities (msm's est.initprobs)",
        "outcomes": "per state the distribution of a recorded number (msm's hmodel)",
        "outcome_shared": "outcome covariates with one effect across states",
        "phases": 'phase-type sojourns, e.g. { "1" = 2 } (msm\'s phase.states)',
        "misc_covariates": "columns acting on the misclassification probabilities (msm's "
        "misccovariates)",
        "initial_covariates": "columns acting on the estimated initial probabilities (msm's "
        "initcovariates)",
    }
    data_keys: ClassVar[dict[str, str]] = {
        "kind": '"panel" (default), "paths", "counts" (long: from, to, count, lag) or "matrix" '
        "(a square count table: the first column the from-states, the header the to-states)",
        "subject": "subject column",
        "time": "time column",
        "state": "state column",
        "covariates": "(ignored: the model's covariates are read)",
        "from": "from-state column (counts)",
        "to": "to-state column (counts)",
        "count": "count column (counts)",
        "lag": "lag column, or one number for every row (counts)",
        "missing": '"error" (default) or "drop" (msm\'s na.omit)',
    }
    numeric_data_keys: ClassVar[tuple[str, ...]] = ("lag",)

    @classmethod
    def from_spec(cls, table: dict, where: str) -> CTMC:
        """The model from a spec file's ``[model]`` table: a :class:`HiddenCTMC` when it
        names misclassification, obstrue, initial probabilities, censor codes, pci cut
        points, outcomes, phases or covariates of the observation model."""
        hidden = ("misclassification", "obstrue", "initial", "censor", "pci", "outcomes")
        hidden += ("phases", "estimate_initial", "misc_covariates", "initial_covariates")
        hidden += ("outcome_shared",)
        if any(key in table for key in hidden):
            from linest.models.hidden_ctmc import HiddenCTMC

            return HiddenCTMC.from_spec(table, where)  # type: ignore[return-value]
        for key in ("states", "transitions"):
            if key not in table:
                raise ValueError(f"{where}: model.{key} is required")
            if not isinstance(table[key], list):
                raise ValueError(f"{where}: model.{key} must be a list")
        return cls(
            states=table["states"],
            transitions=table["transitions"],
            exact=table.get("exact", []),
            covariates=table.get("covariates", []),
            effects=table.get("effects"),
            labels=table.get("labels"),
        )

    def read_data(self, source, **columns) -> Chains:
        """Read the spec's data file with :func:`linest.read_chains` and this model's covariates."""
        columns = dict(columns)
        columns.pop("covariates", None)
        if columns.get("kind") == "matrix":
            unknown = set(columns) - {"kind", "lag"}
            if unknown:
                raise DataError(
                    f"{source}: data.{sorted(unknown)[0]} does not apply to a count matrix "
                    '(kind = "matrix" takes lag only)'
                )
            return read_count_matrix(source, lag=columns.get("lag", 1.0))
        if "from" in columns:
            columns["state_from"] = columns.pop("from")
        if "to" in columns:
            columns["state_to"] = columns.pop("to")
        return read_chains(source=source, covariates=list(self.covariates), **columns)

    # ------------------------------------------------------------------ fit hooks

    @property
    def result_class(self) -> type[FitResult]:
        return CTMCFit

    def fit_methods(self, gradient, information_gradient=None):
        """One shared eigendecomposition, then the Pade Frechet derivative where it is NaN."""
        default = (Eigen(), Exact())
        if information_gradient is None and isinstance(gradient, (Exact, Eigen)):
            information_gradient = gradient
        drive = (gradient,) if gradient is not None else default
        information = (information_gradient,) if information_gradient is not None else default
        return drive, information

    def describe_fit(self, statistics) -> str:
        st = statistics
        # A count table has no subjects: its intervals are the table's counted transitions.
        seen = f"{st.num_subjects} subjects, " if st.num_subjects else "a count table, "
        return (
            f"CTMC fit: {seen}{st.num_intervals} intervals, "
            f"{st.num_cells} distinct (covariate pattern, time step) cells"
        )

    def observed_data(self, statistics):
        """The transition count table (from state, to state) for ArviZ's observed_data."""
        counts = getattr(statistics, "counts", None)
        if counts is None:
            return None
        table = np.asarray(counts).sum(axis=0)
        exact = np.asarray(statistics.exact_counts).sum(axis=0)
        for slot, state in enumerate(self.exact):
            table[:, state] += exact[:, slot]
        labels = [str(s) for s in self.states]
        return {
            "transitions": (
                table,
                ["from_state", "to_state"],
                {"from_state": labels, "to_state": labels},
            )
        }

    # ------------------------------------------------------------------ starting values

    def initial_theta(self, statistics: CTMCStatistics) -> np.ndarray:
        """Crude rates, as msm's ``crudeinits.msm``: transitions per unit time at risk.

        Panel cells: ``q_rs ~ n_rs / T_r`` with ``n_rs`` the intervals starting in ``r``
        and ending in ``s`` and ``T_r`` their total length; paths: ``N_rs / R_r``.
        Transitions never seen get a tenth of the smallest seen rate. Effects start at 0.
        """
        st = statistics
        counts = np.asarray(st.counts).sum(axis=0)
        counts[:, [*self.exact]] += np.asarray(st.exact_counts).sum(axis=0)
        lag = np.asarray(st.lag)
        total = np.asarray(st.counts).sum(axis=2) + np.asarray(st.exact_counts).sum(axis=2)
        time = (lag[:, None] * total).sum(axis=0)
        counts += np.asarray(st.jumps).sum(axis=0)
        time += np.asarray(st.time_at_risk).sum(axis=0)
        rates = np.full(self.num_rates, np.nan)
        for k, (r, s) in enumerate(self.transitions):
            if counts[r, s] > 0 and time[r] > 0:
                rates[k] = counts[r, s] / time[r]
        seen = rates[np.isfinite(rates)]
        fill = seen.min() / 10 if seen.size else 0.1
        rates = np.where(np.isfinite(rates), rates, fill)
        return np.concatenate([np.log(rates), np.zeros(len(self.effects))])


def _cell_index(group: np.ndarray, lag: np.ndarray):
    """Distinct (covariate pattern, time step) cells: ``(cell of each row, cell lags, cell
    patterns)``, lags equal to 11 significant digits counting as one. The cells are padded
    to ``_bucket(K)`` with empty ones (lag 0, pattern 0), which add exactly 0 to a
    log-likelihood and keep the number of distinct shapes, so of compilations, small."""
    if len(lag):
        scale = float(np.max(lag))
        decimals = 11 - int(np.floor(np.log10(scale))) if scale > 0 else 11
        key = np.column_stack([group, np.round(lag, decimals)])
        _, first, cell = np.unique(key, axis=0, return_index=True, return_inverse=True)
        cell, cell_lag, cell_group = cell.reshape(-1), lag[first], group[first]
    else:
        cell, cell_lag, cell_group = np.zeros(0, int), np.zeros(0), np.zeros(0, int)
    padding = _bucket(len(cell_lag)) - len(cell_lag)
    cell_lag = np.concatenate([cell_lag, np.zeros(padding)])
    cell_group = np.concatenate([cell_group, np.zeros(padding, int)])
    return cell, cell_lag, cell_group


def _centre(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Covariates minus their means over the rows (msm centres at the interval starts)."""
    means = z.mean(axis=0) if len(z) else np.zeros(z.shape[1])
    return z - means, means


def _unique_rows(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z = np.asarray(z, float).reshape(len(z), -1)
    if z.shape[1] == 0:
        return np.zeros((1, 0)), np.zeros(len(z), int)
    patterns, group = np.unique(z, axis=0, return_inverse=True)
    return patterns, group.reshape(-1)


class CTMCFit(FitResult):
    """A CTMC's fit: intensities, hazard ratios, P(t), sojourn times, prevalence, and msm's
    after-fit outputs (pnext, totlos, envisits, efpt, ppass, qratio) with intervals.

    The outputs take the interval options of :meth:`FitResult.function_interval` as
    keywords: ``ci`` (``"normal"``, the default but for qratio: simulation from the
    estimate's normal approximation as msm's ``ci = "normal"``; ``"delta"``; ``"none"``),
    ``draws`` (1000) and ``seed`` (0).
    """

    REPORTS = {  # noqa: RUF012  (a ClassVar of the base class)
        "sojourn": "mean time in each transient state per visit",
        "pnext": "probability of each next state (msm's pnext.msm)",
        "totlos": "expected total time in each state, from the first state, for ever (msm's totlos.msm)",
        "envisits": "expected number of visits to each state, from the first state (msm's envisits.msm)",
        "efpt": "expected time to reach the absorbing states, from each state (msm's efpt.msm)",
        "pearson": "Pearson-type goodness of fit, observed against expected transitions per "
        "group of time, interval length and covariates (msm's pearson.msm)",
    }

    def pearson(
        self,
        data,
        timegroups: int = 3,
        intervalgroups: int = 3,
        covgroups: int = 3,
        boot: int = 0,
        seed: int = 0,
    ) -> dict:
        """msm's ``pearson.msm`` (Aguirre-Hernandez and Farewell's test for panel data):
        ``{"observed", "expected", "deviance"}`` tables (a row per group of end time,
        interval length and covariates; a column per possible transition; deviance is
        (O - E)^2 / E with the sign of O - E) and ``"test"`` (stat, df_lower, p_lower,
        df_upper, p_upper: the null distribution lies between the two chi-squares). The
        data are the fit's (``read_chains`` output). See :mod:`linest.models.ctmc_pearson`
        for what is not covered (exact death times, censoring, misclassification; msm's
        "accurate" p-value). ``boot = B``: also ``p_boot``, the share of B data sets
        simulated from the fit and refitted whose statistic exceeds this one (msm's
        ``boot = TRUE``; B refits), and their statistics as ``"boot"``."""
        from linest.models.ctmc_pearson import bootstrap, pearson_table

        grouping = dict(timegroups=timegroups, intervalgroups=intervalgroups, covgroups=covgroups)
        out = pearson_table(self, data, **grouping)
        if boot:
            stats = bootstrap(self, data, boot, seed, grouping)
            out["test"]["p_boot"] = float(np.mean(stats > out["test"]["stat"]))
            out["boot"] = pd.Series(stats, name="stat")
        return out

    def intensities(self) -> pd.DataFrame:
        """Baseline intensities q_rs (at the covariate means) with 95% intervals.

        Intervals are ``exp(theta +/- 1.96 se)``: Wald on the log scale, as msm reports;
        or the profile-likelihood interval where the fit computed one (``intervals=
        "profile"``, and always for a rate at 0: ``[0, upper]``, one-sided).
        """
        m = self.model
        R = m.num_rates
        theta, se = self.theta[:R], self.se[:R]
        lower, upper, method = self.theta_intervals()
        names = [m.transition_name(k) for k in range(R)]
        with np.errstate(over="ignore"):
            table = {
                "estimate": np.exp(theta),
                "lower": np.exp(lower[:R]),
                "upper": np.exp(upper[:R]),
            }
        return pd.DataFrame(
            table | {"se_log": se, "interval": method[:R], "at_boundary": self.boundary[:R]},
            index=pd.Index(names, name="transition"),
        )

    def hazard_ratios(self) -> pd.DataFrame:
        """exp(beta) per covariate and transition with 95% intervals."""
        m = self.model
        R = m.num_rates
        effects = slice(R, R + len(m.effects))  # (a hidden chain's misclassification follows)
        beta, se = self.theta[effects], self.se[effects]
        index = pd.MultiIndex.from_tuples(
            [(m.covariates[c], m.transition_name(t)) for t, c in m.effects],
            names=["covariate", "transition"],
        )
        lower, upper, _ = self.theta_intervals()
        with np.errstate(over="ignore"):
            table = {
                "hr": np.exp(beta),
                "lower": np.exp(lower[effects]),
                "upper": np.exp(upper[effects]),
            }
        return pd.DataFrame(
            {k: table[k] for k in ("hr", "lower", "upper")} | {"beta": beta, "se": se},
            index=index,
        )

    def _z(self, covariates):
        m, st = self.model, self.statistics
        if not m.covariates:
            if covariates:
                raise ValueError(f"the model has no covariates; got {covariates!r}")
            return None
        means = np.asarray(st.covariate_means)
        covariates = covariates or {}
        unknown = set(covariates) - set(m.covariates)
        if unknown:
            raise ValueError(f"unknown covariate(s) {sorted(unknown)}; model has {m.covariates}")
        z = np.array([covariates.get(c, means[i]) for i, c in enumerate(m.covariates)])
        return jnp.asarray((z - means)[None])

    def qmatrix(self, covariates: dict | None = None) -> pd.DataFrame:
        """Q at the given covariate values (default: their means)."""
        z = self._z(covariates)
        Q = self.model.generator(self.theta, z)
        Q = np.asarray(Q[0] if z is not None else Q)
        return pd.DataFrame(Q, index=list(self.model.labels), columns=list(self.model.labels))

    def pmatrix(self, t: float, covariates: dict | None = None) -> pd.DataFrame:
        """Transition probabilities P(t) = exp(tQ)."""
        Q = self.qmatrix(covariates).to_numpy()
        P = np.asarray(expm(jnp.asarray(t * Q), Exact()))
        labels = list(self.model.labels)
        return pd.DataFrame(P, index=labels, columns=labels)

    def sojourn(self, covariates: dict | None = None) -> pd.DataFrame:
        """Mean sojourn time -1/q_rr in each transient state, delta-method SE, 95% interval.

        The interval is Wald on the log scale (as msm's ``sojourn.msm``).
        """
        m = self.model
        z = self._z(covariates)
        transient = [i for i in range(m.num_states) if i not in m.absorbing]

        def log_sojourn(theta):
            Q = m.generator(theta, z)
            Q = Q[0] if z is not None else Q
            return -jnp.log(-jnp.diagonal(Q)[jnp.array(transient)])

        value = np.asarray(log_sojourn(jnp.asarray(self.theta)))
        J = np.asarray(jax.jacobian(log_sojourn)(jnp.asarray(self.theta)))
        se_log = np.sqrt(np.einsum("ip,pq,iq->i", J, self.covariance, J))
        table = exp_interval(value, se_log)
        return pd.DataFrame(
            {
                "estimate": table["estimate"],
                "se": table["estimate"] * se_log,  # delta method
                "lower": table["lower"],
                "upper": table["upper"],
            },
            index=pd.Index([m.labels[i] for i in transient], name="state"),
        )

    # ------------------------------------------------ msm's outputs after a fit

    def _generator_fn(self, covariates):
        """theta -> Q at the given covariate values (default: their means)."""
        m, z = self.model, self._z(covariates)

        def generator(theta):
            Q = m.generator(theta, z)
            return Q[0] if z is not None else Q

        return generator

    def _state(self, state, what: str) -> int:
        """A state's index from its code (as in the data) or its label."""
        m = self.model
        for i, (code, label) in enumerate(zip(m.states, m.labels)):
            if str(state) in (str(code), str(label)):
                return i
        raise ValueError(
            f"{what}: unknown state {state!r}; states are {list(m.states)} ({list(m.labels)})"
        )

    def _start(self, start, what: str) -> np.ndarray:
        """A distribution over states from a state (code or label) or probabilities."""
        n = self.model.num_states
        if isinstance(start, (str, int, np.integer)):
            p = np.zeros(n)
            p[self._state(start, what)] = 1.0
            return p
        p = np.asarray(start, float)
        if p.shape != (n,) or np.any(p < 0) or not np.isfinite(p).all() or p.sum() <= 0:
            raise ValueError(
                f"{what}: start must be a state or {n} non-negative weights, got {start!r}"
            )
        return p / p.sum()

    def _interval_table(self, fn, index, interval) -> pd.DataFrame:
        """``fn(theta)`` with intervals (``interval``: ``ci``, ``draws``, ``seed`` of
        :meth:`function_interval`; default ``ci="normal"``, 1000 draws) as a table."""
        estimate, lower, upper = self.function_interval(fn, **interval)
        return pd.DataFrame(
            {"estimate": estimate.ravel(), "lower": lower.ravel(), "upper": upper.ravel()},
            index=index,
        )

    def pnext(self, covariates=None, **interval) -> pd.DataFrame:
        """Probability that the next state is s when leaving r, -q_rs / q_rr (msm's pnext.msm),
        per allowed transition, with intervals (``ci``: see :meth:`function_interval`)."""
        m, generator = self.model, self._generator_fn(covariates)
        rows, cols = (np.array(v, int) for v in zip(*m.transitions))
        index = pd.MultiIndex.from_arrays(
            [[m.labels[r] for r in rows], [m.labels[c] for c in cols]], names=["from", "to"]
        )
        return self._interval_table(
            lambda t: outputs.pnext(generator(t))[rows, cols], index, interval
        )

    def totlos(
        self,
        start=None,
        fromt: float = 0.0,
        tot: float = np.inf,
        covariates=None,
        **interval,
    ) -> pd.DataFrame:
        """Expected total time in each state between ``fromt`` and ``tot`` from ``start``
        (a state or a distribution; default the first state): msm's totlos.msm.

        Exact: start^T int P(u) du by one matrix exponential (tot finite), or
        start_T (-Q_TT)^-1 (tot = inf: absorbing states inf, which needs an absorbing state).
        """
        return self._from_start(
            "totlos",
            lambda Q, p0, transient, _: outputs.totlos(Q, p0, transient, fromt, tot),
            start,
            fromt,
            tot,
            covariates,
            interval,
        )

    def envisits(
        self,
        start=None,
        fromt: float = 0.0,
        tot: float = np.inf,
        covariates=None,
        **interval,
    ) -> pd.DataFrame:
        """Expected number of visits to (entries into) each state: msm's envisits.msm."""
        return self._from_start(
            "envisits",
            lambda Q, p0, transient, absorbing: outputs.envisits(
                Q, p0, transient, absorbing, fromt, tot
            ),
            start,
            fromt,
            tot,
            covariates,
            interval,
        )

    def _from_start(self, what, fn, start, fromt, tot, covariates, interval):
        """A per-state table of ``fn(Q, start distribution, transient, absorbing)``."""
        m, generator = self.model, self._generator_fn(covariates)
        p0 = jnp.asarray(self._start(m.states[0] if start is None else start, what))
        transient, absorbing = self._transient_absorbing(what, fromt, tot)
        return self._interval_table(
            lambda t: fn(generator(t), p0, transient, absorbing),
            pd.Index(list(m.labels), name="state"),
            interval,
        )

    def _transient_absorbing(self, what, fromt, tot):
        if not (np.isfinite(fromt) and fromt >= 0 and tot >= fromt):
            raise ValueError(f"{what}: need 0 <= fromt <= tot, got fromt={fromt!r}, tot={tot!r}")
        absorbing = list(self.model.absorbing)
        transient = [i for i in range(self.model.num_states) if i not in absorbing]
        if np.isinf(tot):
            if not absorbing:
                raise ValueError(f"{what}: tot = inf needs an absorbing state; give a finite tot")
            closed = outputs.passage_finite(self.model._direct(), absorbing)
            if not all(closed[i] for i in transient):
                raise ValueError(
                    f"{what}: tot = inf needs every transient state to be absorbed eventually; "
                    "this chain has a closed class without an absorbing state: give a finite tot"
                )
        return transient, absorbing

    def efpt(
        self,
        tostate=None,
        start="all",
        covariates=None,
        **interval,
    ) -> pd.DataFrame:
        """Expected first passage time into ``tostate`` (a state or a list of states) from
        each state, or averaged over ``start`` (a state or a distribution): msm's efpt.msm.
        inf where another absorbing state or closed class may be entered first. Without
        ``tostate``: into the absorbing states (all of them together)."""
        m, generator = self.model, self._generator_fn(covariates)
        if tostate is None:
            tostate = [m.states[i] for i in list(self.model.absorbing)]
            if not tostate:
                raise ValueError("efpt: the chain has no absorbing state; name tostate")
        states = tostate if isinstance(tostate, (list, tuple)) else [tostate]
        targets = [self._state(s, "efpt") for s in states]
        finite = outputs.passage_finite(self.model._direct(), targets)

        def fn(t):
            return outputs.efpt(generator(t), targets, finite)

        if isinstance(start, str) and start == "all":
            return self._interval_table(fn, pd.Index(list(m.labels), name="from"), interval)
        p0 = jnp.asarray(self._start(start, "efpt"))
        return self._interval_table(
            lambda t: (p0 @ fn(t))[None], pd.Index(["start"], name="from"), interval
        )

    def ppass(
        self,
        tot: float,
        start="all",
        covariates=None,
        **interval,
    ) -> pd.DataFrame:
        """Probability of having entered each state by time ``tot``: msm's ppass.msm. Rows
        (from, to) for every pair, or (``start``, to) for a state or distribution."""
        m, generator = self.model, self._generator_fn(covariates)
        if not (np.isfinite(tot) and tot >= 0):
            raise ValueError(f"ppass: tot must be a finite time >= 0, got {tot!r}")
        labels = list(m.labels)
        if isinstance(start, str) and start == "all":
            index = pd.MultiIndex.from_product([labels, labels], names=["from", "to"])
            return self._interval_table(lambda t: outputs.ppass(generator(t), tot), index, interval)
        p0 = jnp.asarray(self._start(start, "ppass"))
        index = pd.MultiIndex.from_product([["start"], labels], names=["from", "to"])
        return self._interval_table(
            lambda t: p0 @ outputs.ppass(generator(t), tot), index, interval
        )

    def qratio(self, ind1, ind2, covariates=None, **interval) -> pd.Series:
        """Ratio q[ind1] / q[ind2] of two entries of Q (each a pair of states; diagonal
        entries allowed), with an interval: msm's qratio.msm (default the delta method)."""
        generator = self._generator_fn(covariates)
        i1 = tuple(self._state(s, "qratio") for s in ind1)
        i2 = tuple(self._state(s, "qratio") for s in ind2)
        Q = np.asarray(generator(jnp.asarray(self.theta)))
        if Q[i2] == 0:
            raise ValueError(f"qratio: the denominator q{tuple(ind2)} is 0")

        def ratio(theta):
            Q = generator(theta)
            return (Q[i1] / Q[i2])[None]

        estimate, lower, upper = self.function_interval(
            ratio, ci=interval.pop("ci", "delta"), **interval
        )
        return pd.Series({"estimate": estimate[0], "lower": lower[0], "upper": upper[0]})

    def expected_prevalence(self, data, times, **interval) -> pd.DataFrame:
        """Expected percentage in each state at ``times``, 100 pi0 P(t), with intervals
        (msm's prevalence.msm "Expected percentages" with ``ci``; ``pi0`` the distribution
        of the subjects' first observed states; with covariates, averaged over the subjects'
        covariate histories as msm's default ``covariates = "population"``, see
        :meth:`_expected_shares`).

        Rows (time, state); columns estimate, lower, upper (interval options as the other
        outputs: default ``ci="normal"``, 1000 draws).
        """
        if data.kind != "panel":
            raise ValueError("expected_prevalence needs panel data (read_chains kind='panel')")
        times = np.atleast_1d(np.asarray(times, float))
        if not (np.all(np.isfinite(times)) and np.all(times >= 0)):
            raise ValueError(f"expected_prevalence: times must be finite and >= 0, got {times!r}")
        labels, _, _, shares = self._prevalence_model(data, times)
        index = pd.MultiIndex.from_product([times, labels], names=["time", "state"])
        return self._interval_table(lambda theta: 100 * shares(theta), index, interval)

    def _initial_distribution(self, data) -> np.ndarray:
        """The distribution of the subjects' first observed states (panel data)."""
        position = {s: i for i, s in enumerate(self.model.states)}
        first, _ = _subject_rows(data)
        codes = [position[s] for s in np.asarray(data.state)[first]]
        return np.bincount(codes, minlength=self.model.num_states) / len(codes)

    def _prevalence_model(self, data, times):
        """What prevalence compares: the categories' labels, the map from a recorded state
        to its category, which categories are absorbing, and ``theta -> shares`` (T, R),
        the expected share in each category at ``times``: ``pi0 P(t)`` with ``pi0`` the
        distribution of the first observed states (see :meth:`_expected_shares`)."""
        m = self.model
        pi0 = jnp.asarray(self._initial_distribution(data))
        position = {s: i for i, s in enumerate(m.states)}
        absorbing = np.isin(np.arange(m.num_states), m.absorbing)
        shares = self._expected_shares(times, lambda theta: pi0, None, data, position, absorbing)
        return list(m.labels), position, absorbing, shares

    def _history_layout(self) -> tuple[tuple[str, ...], tuple[float, ...]]:
        """The data covariates of the model's intensities and the times at which the
        intensities change by themselves (a hidden model's pci cut points)."""
        return tuple(self.model.covariates), ()

    def _expected_shares(self, times, initial, record=None, data=None, position=None,
                         absorbing=None):  # fmt: skip
        """``theta -> initial(theta) P(t) [record(theta)]`` (T, n or R), optionally through
        a map ``record`` (n, R) of the states.

        Without covariates ``P(t) = exp(tQ)``. With covariates (or pci), as msm 1.7's
        expected.msm with its default ``covariates = "population"``: the subjects are
        grouped by covariate history (msm's get.covhist: the values from each subject's
        first row, changing where a later row other than its last changes them, and at the
        pci cut points inside its follow-up), each history's ``P(0, t)`` is the product of
        ``exp(Q(z_k) d_k)`` over its pieces (the last piece's covariates held after the
        history ends), and the share at ``t`` is their average weighted by the numbers of
        each history counted at ``t`` (the observed prevalence's rule)."""
        names, cuts = self._history_layout()
        if not (names or cuts) or data is None:
            generator = self._generator_fn(None)

            def shares(theta):
                out = jnp.einsum(
                    "i,tij->tj",
                    initial(theta),
                    expm(jnp.asarray(times)[:, None, None] * generator(theta), Exact()),
                )
                return out if record is None else out @ record(theta)

            return shares
        times = np.asarray(times, float)
        starts, values, member = _covariate_histories(data, names, cuts)
        counted, _ = _last_seen(data, times, position, absorbing)  # (subjects, T)
        risk = np.stack([counted[member == g].sum(axis=0) for g in range(len(starts))])
        weight = risk / np.maximum(risk.sum(axis=0), 1)  # (groups, T)
        # Every history padded to the most pieces (a padded piece lasts 0: exp(0) = I), so
        # that one batched exponential serves all histories, times and pieces.
        K = max(len(start) for start in starts)
        spans = np.zeros((len(starts), len(times), K))
        z = np.zeros((len(starts), K, values[0].shape[1]))
        for g, (start, value) in enumerate(zip(starts, values)):
            ends = np.append(start[1:], np.inf)
            k = len(start)
            spans[g, :, :k] = np.clip(np.minimum(times[:, None], ends[None]) - start[None], 0, None)
            z[g, :k] = value
            z[g, k:] = value[-1]
        z -= np.asarray(self.statistics.covariate_means, float)
        m, weight = self.model, jnp.asarray(weight.T)  # (T, groups)
        spans, z = jnp.asarray(spans), jnp.asarray(z.reshape(-1, z.shape[-1]))

        def shares(theta):
            n = m.num_states
            Q = m.generator(theta, z).reshape(len(starts), 1, K, n, n)
            E = expm(spans[..., None, None] * Q, Exact())  # (groups, T, K, n, n)
            P = E[:, :, 0]
            for k in range(1, K):
                P = P @ E[:, :, k]
            out = jnp.einsum("tg,i,gtij->tj", weight, initial(theta), P)
            return out if record is None else out @ record(theta)

        return shares

    def prevalence(self, data, times) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Observed and expected numbers in each state at ``times`` (msm's prevalence.msm).

        Observed: each subject counts at time ``t`` if ``t`` is within its follow-up, or
        after it entered an absorbing state; its state is the one last observed at or
        before ``t``. Expected: the number counted at ``t`` times its expected share
        (:meth:`_prevalence_model`: ``pi0 P(t)``, with ``pi0`` the distribution of the
        subjects' first observed states, taken at time 0; with covariates or pci, ``P``
        averaged over the subjects' covariate histories as msm does, see
        :meth:`_expected_shares`).
        """
        times = np.atleast_1d(np.asarray(times, float))
        labels, position, absorbing, shares = self._prevalence_model(data, times)
        observed = _observed_prevalence(data, times, position, absorbing)
        expected = observed.sum(axis=1)[:, None] * np.asarray(shares(jnp.asarray(self.theta)))
        index = pd.Index(times, name="time")
        return (
            pd.DataFrame(observed, index=index, columns=labels),
            pd.DataFrame(expected, index=index, columns=labels),
        )

    def _body(self) -> list[str]:
        lines = [
            "Transition intensities"
            + (" (baseline, at the covariate means)" if self.model.covariates else "")
            + f" with {100 * self.level:g}% intervals:",
        ]
        for name, row in self.intensities().iterrows():
            if row.at_boundary:
                lines.append(
                    f"  q({name:>7})  0 (at the boundary)  (0, {row.upper:.5f}] one-sided, "
                    "profile likelihood"
                )
                continue
            if row.se_log == 0:  # held fixed (linest.Constrained)
                lines.append(f"  q({name:>7})  {row.estimate:10.5f}  (fixed)")
                continue
            lines.append(
                f"  q({name:>7})  {row.estimate:10.5f}  ({row.lower:.5f}, {row.upper:.5f})"
            )
        if self.model.effects:
            lines += ["", "Hazard ratios with 95% intervals:"]
            for label, row in self.hazard_ratios().iterrows():
                cov, name = tuple(label)  # type: ignore[arg-type]  (a MultiIndex row)
                lines.append(
                    f"  {cov} ({name:>7})  {row.hr:10.5g}  ({row.lower:.5g}, {row.upper:.5g})"
                )
        if self.information != "observed":
            lines += ["", f"Information matrix: {self.information}."]
        return lines

    def _tables(self) -> dict[str, pd.DataFrame]:
        tables = {"intensities": self.intensities()}
        if self.model.effects:
            tables["hazard_ratios"] = self.hazard_ratios()
        return tables

    def plot(self, data):
        """Observed and expected prevalence (msm's plot.prevalence.msm)."""
        from linest.plots import plot_prevalence

        return plot_prevalence(self, data)


def _subject_rows(data):
    """(first, last) row of each subject (rows are grouped by subject)."""
    new = np.r_[True, data.subject[1:] != data.subject[:-1]]
    starts = np.flatnonzero(new)
    return starts, np.r_[starts[1:], len(data.subject)] - 1


def _last_seen(data, times, position, absorbing) -> tuple[np.ndarray, np.ndarray]:
    """(subjects, T) each: whether each subject counts at each time in the observed
    prevalence (within its follow-up, or after it entered an absorbing category), and the
    category it was recorded in last at or before that time."""
    code = np.array([position[s] for s in data.state])
    counted, category = [], []
    for first, last in zip(*_subject_rows(data)):
        t_sub = data.time[first : last + 1]
        k = np.searchsorted(t_sub, times, side="right") - 1
        counted.append((k >= 0) & ((times <= t_sub[-1]) | absorbing[code[last]]))
        category.append(code[first + np.clip(k, 0, None)])
    shape = (-1, len(times))
    return np.array(counted, bool).reshape(shape), np.array(category, int).reshape(shape)


def _covariate_histories(data, names, cuts):
    """Each subject's covariate history, grouped as msm's get.covhist groups them.

    A history starts at time 0 with the subject's first row's values (and the time period
    of its first visit); a piece starts where a row other than the first and the last
    changes the values, or at a pci cut point strictly inside the follow-up. Returns the
    distinct histories' piece start times and covariate values (the data columns
    ``names``, then one indicator per period after the first) and each subject's history.
    """
    index = [data.covariate_names.index(c) for c in names]
    x = np.asarray(data.covariates, float)[:, index] if index else np.zeros((len(data.time), 0))
    cuts = np.asarray(cuts, float)

    def vector(row, at):
        period = np.searchsorted(cuts, at, side="right")
        return np.r_[x[row], (np.arange(1, len(cuts) + 1) == period).astype(float)]

    keys, starts, values, member = {}, [], [], []
    for first, last in zip(*_subject_rows(data)):
        t = data.time[first : last + 1]
        change = {0.0: vector(first, t[0])}
        for row in range(first + 1, last):
            if np.any(x[row] != x[row - 1]):
                change[float(data.time[row])] = None
        for c in cuts[(cuts > t[0]) & (cuts < t[-1])]:
            change[float(c)] = None
        times, vectors = [], []
        for at in sorted(change):
            row = first + int(np.searchsorted(t, at, side="right")) - 1
            v = change[at] if change[at] is not None else vector(row, at)
            if not vectors or np.any(v != vectors[-1]):
                times.append(at)
                vectors.append(v)
        key = (tuple(times), tuple(map(tuple, vectors)))
        if key not in keys:
            keys[key] = len(starts)
            starts.append(np.asarray(times))
            values.append(np.asarray(vectors))
        member.append(keys[key])
    return starts, values, np.asarray(member)


def _observed_prevalence(data, times, position, absorbing) -> np.ndarray:
    """Numbers observed in each category at ``times`` (msm's prevalence.msm): a subject
    counts at ``t`` within its follow-up, or after it entered an absorbing category; its
    category is the one recorded last at or before ``t``. ``position`` maps a recorded
    state to its category, ``absorbing`` (categories,) says which are absorbing."""
    if data.kind != "panel":
        raise ValueError("prevalence needs panel data (read_chains kind='panel')")
    counted, category = _last_seen(data, times, position, absorbing)
    observed = np.zeros((len(times), len(absorbing)))
    np.add.at(observed, (np.nonzero(counted)[1], category[counted]), 1)
    return observed
