"""A continuous-time Markov chain seen through an observation process: misclassification
(msm's hidden Markov model), censored states, piecewise-constant intensities.

The true state follows a :class:`~linest.models.ctmc.CTMC`; a visit records the true state
``r`` as ``s`` with probability ``e_rs`` (msm's ``ematrix``). Each subject's likelihood is
the forward algorithm over its visits (Jackson et al. 2003; msm's ``ematrix``, ``obstrue``,
``initprobs`` and ``deathexact``)::

    alpha_1 = pi * e(o_1),   alpha_k = (alpha_{k-1} P(t_k - t_{k-1})) * e(o_k),
    log L = sum_k log c_k   (c_k the sum of alpha_k, which is then divided by it)

where ``e(o)`` is the column of the emission matrix for the observed code: the probability
of recording ``o`` given each true state. A visit flagged as true (``obstrue``) has
``e(o)`` the indicator of ``o``. Entry into an exactly-timed absorbing state ``D`` (death)
replaces ``P`` by ``P Q`` and keeps column ``D``: the chain was in some ``j != D`` just
before and jumped at the recorded time. A censor code (msm's ``censor``) has ``e(o)`` the
indicator of its set of states. Piecewise-constant intensities (msm's ``pci``) insert a
visit that records nothing (``e = 1``) at each cut point inside an interval, so the
interval's transition matrix is the product of the pieces', and each period after the
first is a covariate ``timeperiod[a,b)`` acting on every intensity.

Parameters: the chain's log-rates and covariate effects, then one ``eta_rs`` per allowed
misclassification, the multinomial logit of row ``r`` against its diagonal (msm's own
scale): ``e_rs = exp(eta_rs) / (1 + sum_k exp(eta_rk))``. With one misclassification in
a row this is ``logit(e_rs)``.

The recursion runs as one ``jax.lax.scan`` over visit index, batched over subjects (padded
to the longest follow-up); the transition matrices come from ``expm_times`` over the
distinct (covariate pattern, time step) cells, with the engine's gradient methods.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jax import lax

from linest.data import Chains, DataError, read_chains, state_key
from linest.engine import expm_times
from linest.gradients import Exact
from linest.models.base import AbstractLinearModel
from linest.models.ctmc import (
    _TINY,
    CTMC,
    DEFAULT_GRADIENT,
    CTMCFit,
    _cell_index,
    _centre,
    _parse_transition,
    _unique_rows,
)
from linest.models.result import FitResult

__all__ = ["HiddenCTMC", "HiddenCTMCFit", "HiddenStatistics"]

# Visit kinds in HiddenStatistics.kind.
_NOISY, _TRUE, _EXACT, _PAD = 0, 1, 2, 3


class HiddenStatistics(eqx.Module):
    """Subjects' visits, padded to a rectangle ``(S, T)``.

    ``code``: observed state index; ``kind``: 0 recorded with misclassification, 1 known
    true (``obstrue``), 2 entry into an exactly-timed state, 3 padding; ``cell``: the
    (covariate pattern, time step) cell of the interval ending at the visit (0 at the
    first visit). Cells: ``lag`` (K,), ``group`` (K,) into the patterns ``z`` (G, C).
    """

    z: jax.Array
    covariate_means: jax.Array
    lag: jax.Array
    group: jax.Array
    code: jax.Array
    kind: jax.Array
    cell: jax.Array
    num_subjects: int = eqx.field(static=True, default=0)
    num_visits: int = eqx.field(static=True, default=0)
    source: str = eqx.field(static=True, default="")
    subjects: tuple = eqx.field(static=True, default=())

    def for_compute(self) -> HiddenStatistics:
        """Without the static labels: same-shaped data sets share one compiled program."""
        return HiddenStatistics(
            self.z, self.covariate_means, self.lag, self.group, self.code, self.kind, self.cell
        )


class HiddenCTMC(AbstractLinearModel):
    """A CTMC whose visits record the state with misclassification (a hidden Markov model).

    Parameters
    ----------
    states, transitions, exact, covariates, effects, labels
        The true chain, as for :class:`~linest.CTMC`.
    misclassification : sequence of "r-s", or a mapping "r-s" -> starting probability
        True state ``r`` may be recorded as ``s`` (msm's ``ematrix`` pattern; its values
        are the starting points, default 0.1). States entered at exact times cannot be
        misclassified.
    obstrue : str, optional
        A data column, nonzero where the visit records the true state (msm's ``obstrue``).
    initial : sequence of float, optional
        Probabilities of the true state at each subject's first visit (msm's
        ``initprobs``; default: the first state, as msm).
    estimate_initial : bool
        Estimate those probabilities (msm's ``est.initprobs``): parameters
        ``eta init(s) = log(p_s / p_first)`` for every state ``s`` after the first whose
        ``initial`` probability is positive (the others stay at 0); ``initial`` is the
        starting point, so give it as positive where a state may start.

    Examples
    --------
    >>> import linest
    >>> misc = linest.HiddenCTMC(states=[1, 2, 3, 4],
    ...     transitions=["1-2", "1-4", "2-3", "2-4", "3-4"], exact=[4],
    ...     misclassification=["1-2", "2-1", "2-3", "3-2"], obstrue="firstobs")
    >>> misc.param_names[-1]
    'eta e(3-2)'
    """

    chain: CTMC
    data_covariates: tuple[str, ...] = eqx.field(static=True)
    pci: tuple[float, ...] = eqx.field(static=True)
    censor: tuple[tuple[str, tuple[int, ...]], ...] = eqx.field(static=True)
    misclassification: tuple[tuple[int, int], ...] = eqx.field(static=True)
    starting_probabilities: tuple[float, ...] = eqx.field(static=True)
    obstrue: str | None = eqx.field(static=True)
    initial: tuple[float, ...] = eqx.field(static=True)
    estimate_initial: bool = eqx.field(static=True)

    def __init__(
        self,
        states: Sequence,
        transitions: Sequence,
        misclassification: Sequence | Mapping = (),
        exact: Sequence = (),
        covariates: Sequence[str] = (),
        effects: Sequence | None = None,
        labels: Sequence[str] | None = None,
        obstrue: str | None = None,
        initial: Sequence[float] | None = None,
        censor: Mapping | None = None,
        pci: Sequence[float] = (),
        estimate_initial: bool = False,
    ):
        caller = "HiddenCTMC"
        covariates = (covariates,) if isinstance(covariates, str) else tuple(covariates)
        pci = tuple(float(c) for c in pci)
        if any(c <= 0 for c in pci) or any(b <= a for a, b in itertools.pairwise(pci)):
            raise ValueError(
                f"{caller}: pci: cut points must be positive and increasing, got {list(pci)!r}"
            )
        periods = tuple(
            f"timeperiod[{_cut(a)},{_cut(b)})" for a, b in zip(pci, (*pci[1:], float("inf")))
        )
        clash = set(periods) & set(covariates)
        if clash:
            raise ValueError(f"{caller}: covariate name(s) {sorted(clash)} are reserved for pci")
        if periods:  # every period acts on every transition, besides the user's effects
            base = CTMC(states, transitions, exact, covariates, effects, labels)
            user = [(base.transition_name(t), covariates[c]) for t, c in base.effects]
            effects = user + [
                (base.transition_name(t), p) for p in periods for t in range(base.num_rates)
            ]
        self.chain = CTMC(states, transitions, exact, (*covariates, *periods), effects, labels)
        self.data_covariates = covariates
        self.pci = pci
        names = self.chain.states
        position = {s: i for i, s in enumerate(names)}
        censored = []
        for code, members in (censor or {}).items():
            key = state_key(code)
            if key in position:
                raise ValueError(
                    f"{caller}: censor code {code!r} is also a state of the model; a censor "
                    "code stands for a set of states"
                )
            if isinstance(members, (str, int, float)) or not members:
                raise ValueError(
                    f"{caller}: censor code {code!r} must map to a non-empty list of states"
                )
            index = []
            for m in members:
                if state_key(m) not in position:
                    raise ValueError(
                        f"{caller}: censor code {code!r} names state {m!r}, not one of the "
                        f"states {', '.join(names)}"
                    )
                index.append(position[state_key(m)])
            censored.append((key, tuple(sorted(set(index)))))
        self.censor = tuple(censored)
        items = (
            list(misclassification.items())
            if isinstance(misclassification, Mapping)
            else [(item, 0.1) for item in misclassification]
        )
        if not items and not censored and not pci:
            raise ValueError(
                f"{caller}: misclassification allows nothing (and no censor codes or pci); "
                "a chain observed without error is a CTMC (model.type = 'ctmc')"
            )
        pairs, start = [], []
        for item, value in items:
            r, s = _parse_transition(item, f"{caller}: misclassification")
            for code in (r, s):
                if code not in position:
                    raise ValueError(
                        f"{caller}: misclassification {item!r} names state {code!r}, not one "
                        f"of the states {', '.join(names)}"
                    )
            pair = (position[r], position[s])
            if pair[0] == pair[1]:
                raise ValueError(
                    f"{caller}: misclassification {item!r} maps a state to itself (the "
                    "diagonal is 1 minus the rest of its row)"
                )
            if pair in pairs:
                raise ValueError(f"{caller}: misclassification {item!r} is listed twice")
            if pair[0] in self.chain.exact or pair[1] in self.chain.exact:
                raise ValueError(
                    f"{caller}: misclassification {item!r} involves state "
                    f"{names[pair[0] if pair[0] in self.chain.exact else pair[1]]}, whose "
                    "entry time is exact (model.exact): such states are recorded without error"
                )
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise ValueError(
                    f"{caller}: misclassification {item!r}: starting probability {value!r} "
                    "is not a number"
                ) from None
            if not 0 < value < 1:
                raise ValueError(
                    f"{caller}: misclassification {item!r}: starting probability {value} is "
                    "not strictly between 0 and 1"
                )
            pairs.append(pair)
            start.append(value)
        for r in {p[0] for p in pairs}:
            total = sum(v for (a, _), v in zip(pairs, start) if a == r)
            if total >= 1:
                raise ValueError(
                    f"{caller}: misclassification of true state {names[r]}: starting "
                    f"probabilities sum to {total:g} >= 1 (a row of msm's ematrix must sum "
                    "to less than 1: the rest is recording the state correctly)"
                )
        n = len(names)
        if initial is None:
            initial = (1.0,) + (0.0,) * (n - 1)
        initial = tuple(float(x) for x in initial)
        if (
            len(initial) != n
            or not all(math.isfinite(x) for x in initial)
            or min(initial) < 0
            or abs(sum(initial) - 1) > 1e-9
        ):
            raise ValueError(
                f"{caller}: initial must hold {n} probabilities summing to 1, got {list(initial)!r}"
            )
        if not isinstance(estimate_initial, bool):
            raise ValueError(
                f"{caller}: estimate_initial must be true or false, got {estimate_initial!r}"
            )
        if estimate_initial and (initial[0] <= 0 or sum(x > 0 for x in initial) < 2):
            raise ValueError(
                f"{caller}: estimate_initial needs initial probabilities positive for the first "
                f"state (the base of the logits) and at least one other, got {list(initial)!r}"
            )
        self.misclassification = tuple(pairs)
        self.starting_probabilities = tuple(start)
        self.obstrue = obstrue
        self.initial = initial
        self.estimate_initial = estimate_initial

    # ------------------------------------------------------------------ the chain's views

    states = property(lambda self: self.chain.states)
    labels = property(lambda self: self.chain.labels)
    exact = property(lambda self: self.chain.exact)
    covariates = property(lambda self: self.chain.covariates)
    effects = property(lambda self: self.chain.effects)
    num_states = property(lambda self: self.chain.num_states)
    num_rates = property(lambda self: self.chain.num_rates)
    transitions = property(lambda self: self.chain.transitions)
    absorbing = property(lambda self: self.chain.absorbing)

    def _direct(self) -> np.ndarray:
        return self.chain._direct()

    def transition_name(self, k: int) -> str:
        return self.chain.transition_name(k)

    def with_covariates(self, covariates: Sequence[str]) -> HiddenCTMC:
        """The same model with every covariate acting on every intensity (CLI --covariates)."""
        names = self.states
        return HiddenCTMC(
            states=names,
            transitions=[(names[r], names[s]) for r, s in self.transitions],
            misclassification={
                f"{names[r]}-{names[s]}": p
                for (r, s), p in zip(self.misclassification, self.starting_probabilities)
            },
            exact=[names[e] for e in self.exact],
            covariates=covariates,
            labels=self.labels,
            obstrue=self.obstrue,
            initial=self.initial,
            censor={code: [names[i] for i in members] for code, members in self.censor},
            pci=self.pci,
            estimate_initial=self.estimate_initial,
        )

    def misclassification_name(self, k: int) -> str:
        r, s = self.misclassification[k]
        return f"{self.states[r]}-{self.states[s]}"

    @property
    def _num_chain(self) -> int:
        return self.chain.num_params

    def generator(self, theta, z=None) -> jax.Array:
        return self.chain.generator(jnp.asarray(theta)[..., : self._num_chain], z)

    def rates(self, theta, z=None) -> jax.Array:
        return self.chain.rates(jnp.asarray(theta)[..., : self._num_chain], z)

    def system_matrix(self, theta):
        return self.generator(theta)

    def exponent_times(self, statistics):
        return np.asarray(statistics.lag)

    # ------------------------------------------------------------------ parameters

    @property
    def initial_free(self) -> tuple[int, ...]:
        """States whose initial probability is estimated (after the first, the logits' base)."""
        if not self.estimate_initial:
            return ()
        return tuple(k for k in range(1, self.num_states) if self.initial[k] > 0)

    @property
    def param_names(self) -> tuple[str, ...]:
        own = tuple(
            f"eta e({self.misclassification_name(k)})" for k in range(len(self.misclassification))
        )
        init = tuple(f"eta init({self.states[k]})" for k in self.initial_free)
        return self.chain.param_names + own + init

    prior_kinds: ClassVar[tuple[str, ...]] = ("log_rate", "effect", "misclassification", "initial")

    @property
    def param_kinds(self) -> tuple[str, ...]:
        return (
            self.chain.param_kinds
            + ("misclassification",) * len(self.misclassification)
            + ("initial",) * len(self.initial_free)
        )

    @property
    def param_positive(self) -> tuple[bool, ...]:
        return self.chain.param_positive + (False,) * (
            len(self.misclassification) + len(self.initial_free)
        )

    def initial_probabilities(self, theta) -> jax.Array:
        """The true state's distribution at the first visit (n,): ``initial``, or the
        multinomial logit of the ``eta init`` parameters (msm's est.initprobs)."""
        theta = jnp.asarray(theta)
        if not self.estimate_initial:
            return jnp.asarray(self.initial, theta.dtype)
        free = list(self.initial_free)
        eta = theta[..., len(self.param_names) - len(free) :]
        logits = jnp.full((*eta.shape[:-1], self.num_states), -jnp.inf, theta.dtype)
        logits = logits.at[..., 0].set(0.0).at[..., free].set(eta)
        return jax.nn.softmax(logits, axis=-1)

    def emission_matrix(self, theta) -> jax.Array:
        """``E[r, s]``: the probability that true state ``r`` is recorded as ``s`` (n, n),
        or (..., n, n) for a stack of theta."""
        theta = jnp.asarray(theta)
        eta = theta[..., self._num_chain : self._num_chain + len(self.misclassification)]
        n = self.num_states
        if not self.misclassification:
            return jnp.broadcast_to(jnp.eye(n, dtype=theta.dtype), (*eta.shape[:-1], n, n))
        rows, cols = (list(x) for x in zip(*self.misclassification))
        # Multinomial logit against the diagonal: exp(eta) off it, 1 on it, rows normalised.
        weights = (
            jnp.zeros((*eta.shape[:-1], n, n), theta.dtype).at[..., rows, cols].set(jnp.exp(eta))
        )
        weights = weights + jnp.eye(n, dtype=theta.dtype)
        return weights / weights.sum(axis=-1, keepdims=True)

    def natural_parameters(self, theta):
        """The chain's rates (and hazard ratios), and the misclassification probabilities."""
        out = self.chain.natural_parameters(jnp.asarray(theta)[..., : self._num_chain])
        if not self.misclassification:
            return out
        E = self.emission_matrix(theta)
        rows, cols = (list(x) for x in zip(*self.misclassification))
        # (The variable must not share its dimension's name, or xarray makes it a coordinate.)
        out["misclassification_probability"] = (
            E[..., rows, cols],
            "misclassification",
            tuple(self.misclassification_name(k) for k in range(len(self.misclassification))),
        )
        return out

    # ------------------------------------------------------------------ likelihood

    def _transition_stacks(self, theta, st: HiddenStatistics, gradient):
        """P per cell (K, n, n), and P Q (K, n, n) for entries into exactly-timed states."""
        gradient = DEFAULT_GRADIENT if gradient is None else gradient
        Q = self.generator(theta, st.z)
        P = expm_times(Q, st.lag, st.group, gradient=gradient)
        PQ = P @ Q[st.group] if self.exact else P
        return P, PQ

    def _emissions(self, theta, st: HiddenStatistics) -> jax.Array:
        """e(o) per visit (S, T, n): the probability of the record given each true state."""
        E = self.emission_matrix(theta)
        # Codes 0..n-1 are states, then the censor codes (indicators of their sets), then
        # "any state" (the visits pci inserts at its cut points).
        n = self.num_states
        sets = np.zeros((len(self.censor) + 1, n))
        for j, (_, members) in enumerate(self.censor):
            sets[j, list(members)] = 1.0
        sets[-1] = 1.0
        sets = jnp.asarray(sets, E.dtype)
        onehot = jnp.concatenate([jnp.eye(n, dtype=E.dtype), sets])[st.code]
        # Row o of E^T: P(record o | true r) for every r.
        noisy = jnp.concatenate([jnp.swapaxes(E, 0, 1), sets])[st.code]
        emit = jnp.where((st.kind == _NOISY)[..., None], noisy, onehot)
        return jnp.where((st.kind == _PAD)[..., None], 1.0, emit)

    def _steps(self, theta, st: HiddenStatistics, gradient):
        """Time-major inputs of the recursion: (T, S, n, n) transitions and (T, S, n) emissions."""
        P, PQ = self._transition_stacks(theta, st, gradient)
        emit = self._emissions(theta, st)
        exact = (st.kind == _EXACT)[..., None, None]
        trans = jnp.where(exact, PQ[st.cell], P[st.cell])  # (S, T, n, n)
        return jnp.swapaxes(trans, 0, 1), jnp.swapaxes(emit, 0, 1)

    def subject_loglik(self, theta, statistics: HiddenStatistics, gradient=None) -> jax.Array:
        """Log-likelihood of each subject (S,), by the scaled forward algorithm."""
        st = statistics
        theta = jnp.asarray(theta)
        trans, emit = self._steps(theta, st, gradient)
        init = self.initial_probabilities(theta)
        pad = jnp.swapaxes(st.kind == _PAD, 0, 1)

        def normalise(alpha):
            c = alpha.sum(axis=-1)
            return alpha / jnp.where(c > 0, c, 1.0)[..., None], jnp.log(jnp.maximum(c, _TINY))

        alpha, total = normalise(init * emit[0])

        def step(carry, x):
            alpha, total = carry
            T, e, padded = x
            new, log_c = normalise(jnp.einsum("si,sij->sj", alpha, T) * e)
            alpha = jnp.where(padded[:, None], alpha, new)
            return (alpha, total + jnp.where(padded, 0.0, log_c)), None

        (_, total), _ = lax.scan(step, (alpha, total), (trans[1:], emit[1:], pad[1:]))
        return total

    def loglik(self, theta, statistics: HiddenStatistics, gradient=None) -> jax.Array:
        return jnp.sum(self.subject_loglik(theta, statistics, gradient))

    def pointwise_loglik(self, theta, statistics: HiddenStatistics, gradient=None):
        """Per subject (the independent units, for LOO)."""
        return self.subject_loglik(theta, statistics, gradient)

    def observation_labels(self, statistics: HiddenStatistics):
        return "subject", list(statistics.subjects)

    def viterbi(self, theta, statistics: HiddenStatistics, gradient=None):
        """The most likely true path of every subject (msm's ``viterbi.msm``): (S, T) state
        indices, -1 at padding; and the posterior probabilities of the true state at each
        visit given all of the subject's visits (S, T, n), by forward-backward."""
        st = statistics
        theta = jnp.asarray(theta)
        trans, emit = self._steps(theta, st, Exact() if gradient is None else gradient)
        pad = jnp.swapaxes(st.kind == _PAD, 0, 1)
        n = self.num_states
        with np.errstate(divide="ignore"):
            log_trans = jnp.log(jnp.maximum(trans, 0.0))
            log_emit = jnp.log(emit)
        init = self.initial_probabilities(theta)
        identity = jnp.where(jnp.eye(n, dtype=bool), 0.0, -jnp.inf)

        def best(delta, x):
            lt, le, padded = x
            lt = jnp.where(padded[:, None, None], identity, lt)
            le = jnp.where(padded[:, None], 0.0, le)
            scores = delta[:, :, None] + lt  # (S, from, to)
            back = jnp.argmax(scores, axis=1)
            return jnp.max(scores, axis=1) + le, back

        delta0 = jnp.log(init) + log_emit[0]
        delta, backs = lax.scan(best, delta0, (log_trans[1:], log_emit[1:], pad[1:]))
        last = jnp.argmax(delta, axis=-1)

        def trace(state, back):
            previous = jnp.take_along_axis(back, state[:, None], axis=1)[:, 0]
            return previous, state

        first, path = lax.scan(trace, last, backs, reverse=True)
        path = jnp.concatenate([first[None], path], axis=0)

        # Forward-backward, scaled, for the posterior state probabilities.
        def forward(alpha, x):
            T, e, padded = x
            new = jnp.einsum("si,sij->sj", alpha, T) * e
            new = new / new.sum(-1, keepdims=True)
            alpha = jnp.where(padded[:, None], alpha, new)
            return alpha, alpha

        a0 = init * emit[0]
        a0 = a0 / a0.sum(-1, keepdims=True)
        _, alphas = lax.scan(forward, a0, (trans[1:], emit[1:], pad[1:]))
        alphas = jnp.concatenate([a0[None], alphas], axis=0)

        def backward(beta, x):
            T, e, padded = x
            new = jnp.einsum("sij,sj->si", T, e * beta)
            new = new / new.sum(-1, keepdims=True)
            beta = jnp.where(padded[:, None], beta, new)
            return beta, beta

        ones = jnp.ones_like(a0)
        _, betas = lax.scan(backward, ones, (trans[1:], emit[1:], pad[1:]), reverse=True)
        betas = jnp.concatenate([betas, ones[None]], axis=0)
        # Clipped at 0: P Q has entries of order -1e-17 where the exact value is 0.
        post = jnp.maximum(alphas * betas, 0.0)
        post = post / post.sum(-1, keepdims=True)
        path = jnp.where(pad, -1, path)
        return np.asarray(jnp.swapaxes(path, 0, 1)), np.asarray(jnp.swapaxes(post, 0, 1))

    # ------------------------------------------------------------------ data

    def statistics(self, data: Chains) -> HiddenStatistics:
        """Subjects' visits, checked: states the model has, an ``obstrue`` column, and no
        visit after entry into an exactly-timed state."""
        if isinstance(data, HiddenStatistics):
            return data
        if not isinstance(data, Chains) or data.kind != "panel":
            raise TypeError(
                "HiddenCTMC.statistics: expected panel Chains from linest.read_chains, got "
                f"{type(data).__name__}"
                + (f" of kind {data.kind!r}" if isinstance(data, Chains) else "")
            )
        needed = [*self.data_covariates] + ([self.obstrue] if self.obstrue else [])
        missing = [c for c in needed if c not in data.covariate_names]
        if missing:
            raise DataError(
                f"{data.source}: the model uses column(s) {missing} but the data were read "
                f"with covariates {list(data.covariate_names)}; pass covariates=[...] to "
                "read_chains"
            )
        n, C = self.num_states, len(self.censor)
        position = {s: i for i, s in enumerate(self.states)}
        position |= {code: n + j for j, (code, _) in enumerate(self.censor)}
        anything = n + C
        codes = self.chain._codes(data, data.state, position, data.columns["state"])
        true = (
            data.covariates[:, data.covariate_names.index(self.obstrue)] != 0
            if self.obstrue
            else np.zeros(len(codes), bool)
        )
        cov = data.covariates[:, [data.covariate_names.index(c) for c in self.data_covariates]]
        if self.pci and len(data.time) and self.pci[-1] >= np.max(data.time):
            raise DataError(
                f"{data.source}: model.pci: cut point {self.pci[-1]:g} is not before the "
                f"last visit of any subject (latest visit at time {np.max(data.time):g})"
            )
        names, first = np.unique(data.subject, return_index=True)
        order = np.argsort(first)
        names, first = names[order], first[order]
        counts = np.diff(np.append(first, len(codes)))
        subjects = []  # per subject: visits as (time, code, kind, row of its covariates)
        for i, (row0, count) in enumerate(zip(first, counts)):
            rows = np.arange(row0, row0 + count)
            if np.any(data.subject[rows] != names[i]):
                raise DataError(
                    f"{data.source}: subject {names[i]}'s rows are not contiguous; sort the "
                    "data by subject and time"
                )
            if codes[rows[0]] in self.exact:
                raise DataError(
                    f"{data.where(rows[0])}: subject {names[i]}'s first visit is in state "
                    f"{self.states[codes[rows[0]]]}, entered at an exact time (model.exact)"
                )
            visits: list[tuple] = [(float(data.time[rows[0]]), codes[rows[0]], _TRUE if true[rows[0]] else _NOISY,
                       rows[0])]  # fmt: skip
            for k in range(1, count):
                before, row = rows[k - 1], rows[k]
                if codes[before] in self.exact:
                    raise DataError(
                        f"{data.where(row)}: subject {names[i]} has a visit after entering "
                        f"state {self.states[codes[before]]} at time {data.time[before]:g}, "
                        "which is absorbing with an exact entry time (model.exact)"
                    )
                for cut in self.pci:  # the generator changes here: an unobserved visit
                    if data.time[before] < cut < data.time[row]:
                        visits.append((cut, anything, _TRUE, before))
                kind = _EXACT if codes[row] in self.exact else _TRUE if true[row] else _NOISY
                visits.append((data.time[row], codes[row], kind, row))
            subjects.append(visits)
        S, T = len(names), max(len(v) for v in subjects)
        code = np.zeros((S, T), int)
        kind = np.full((S, T), _PAD)
        cell_of = np.zeros((S, T), int)
        subj, visit, start, dt, cov_row = [], [], [], [], []
        for i, visits in enumerate(subjects):
            for k, (time, c, kd, _) in enumerate(visits):
                code[i, k], kind[i, k] = c, kd
                if k:
                    subj.append(i)
                    visit.append(k)
                    start.append(visits[k - 1][0])
                    dt.append(time - visits[k - 1][0])
                    cov_row.append(visits[k - 1][3])
        subj, visit, cov_row = (np.asarray(x, int) for x in (subj, visit, cov_row))
        start, dt = np.asarray(start, float), np.asarray(dt, float)
        period = np.searchsorted(np.asarray(self.pci), start, side="right")
        dummies = (period[:, None] == np.arange(1, len(self.pci) + 1)[None, :]).astype(float)
        z_rows, means = _centre(np.column_stack([cov[cov_row], dummies]))
        patterns, group = _unique_rows(z_rows)
        cell, lag, cell_group = _cell_index(group, dt)
        cell_of[subj, visit] = cell
        return HiddenStatistics(
            z=jnp.asarray(patterns),
            covariate_means=jnp.asarray(means),
            lag=jnp.asarray(lag, dtype=float),
            group=jnp.asarray(cell_group, dtype=jnp.int32),
            code=jnp.asarray(code, dtype=jnp.int32),
            kind=jnp.asarray(kind, dtype=jnp.int32),
            cell=jnp.asarray(cell_of, dtype=jnp.int32),
            num_subjects=S,
            num_visits=len(codes),
            source=data.source,
            subjects=tuple(str(x) for x in names),
        )

    def initial_theta(self, statistics: HiddenStatistics) -> np.ndarray:
        """Crude rates from the recorded states taken at face value (msm's crudeinits:
        ``q_rs ~ n_rs / T_r``), the chain's effects at 0, and the misclassification
        probabilities the model was given (default 0.1)."""
        st = statistics
        code, kind, cell = (np.asarray(x) for x in (st.code, st.kind, st.cell))
        lag = np.asarray(st.lag)
        n = self.num_states
        counts, time = np.zeros((n, n)), np.zeros(n)
        live = (kind[:, 1:] != _PAD) & (code[:, :-1] < n) & (code[:, 1:] < n)
        a, b = code[:, :-1][live], code[:, 1:][live]
        dt = lag[cell[:, 1:][live]]
        np.add.at(counts, (a, b), 1.0)
        np.add.at(time, a, dt)
        rates = np.full(self.num_rates, np.nan)
        for k, (r, s) in enumerate(self.transitions):
            if counts[r, s] > 0 and time[r] > 0:
                rates[k] = counts[r, s] / time[r]
        seen = rates[np.isfinite(rates)]
        rates = np.where(np.isfinite(rates), rates, seen.min() / 10 if seen.size else 0.1)
        eta = np.zeros(len(self.misclassification))
        for k, ((r, _), p) in enumerate(zip(self.misclassification, self.starting_probabilities)):
            row_total = sum(
                v for (a_, _), v in zip(self.misclassification, self.starting_probabilities)
                if a_ == r
            )  # fmt: skip
            eta[k] = np.log(p / (1 - row_total))
        init = [np.log(self.initial[k] / self.initial[0]) for k in self.initial_free]
        return np.concatenate([np.log(rates), np.zeros(len(self.effects)), eta, init])

    # ------------------------------------------------------------------ specs

    spec_keys: ClassVar[dict[str, str]] = {
        **CTMC.spec_keys,
        "misclassification": 'true -> recorded pairs, e.g. ["1-2", "2-1"], or a table '
        '{ "1-2" = 0.1 } of starting probabilities (msm\'s ematrix)',
        "obstrue": "data column, nonzero where a visit records the true state (msm's obstrue)",
        "initial": "probabilities of the true state at the first visit (msm's initprobs)",
        "estimate_initial": "true: estimate the initial probabilities, starting from "
        "initial (msm's est.initprobs)",
        "censor": 'codes standing for sets of states, e.g. { "99" = [1, 2, 3] } (msm\'s '
        "censor and censor.states)",
        "pci": "cut times of piecewise-constant intensities, e.g. [5, 10]: each period acts "
        "on every intensity as a covariate (msm's pci)",
    }
    data_keys: ClassVar[dict[str, str]] = {
        "kind": '"panel" (the only kind with misclassification)',
        "subject": "subject column",
        "time": "time column",
        "state": "recorded state column",
        "missing": '"error" (default) or "drop" (msm\'s na.omit)',
    }

    @classmethod
    def from_spec(cls, table: dict, where: str) -> HiddenCTMC:
        for key in ("states", "transitions"):
            if key not in table:
                raise ValueError(f"{where}: model.{key} is required")
            if not isinstance(table[key], list):
                raise ValueError(f"{where}: model.{key} must be a list")
        if not isinstance(table.get("misclassification", []), (list, dict)):
            raise ValueError(
                f"{where}: model.misclassification must be a list of 'r-s' pairs or a table"
            )
        try:
            return cls(
                states=table["states"],
                transitions=table["transitions"],
                misclassification=table.get("misclassification", ()),
                exact=table.get("exact", []),
                covariates=table.get("covariates", []),
                effects=table.get("effects"),
                labels=table.get("labels"),
                obstrue=table.get("obstrue"),
                initial=table.get("initial"),
                censor=table.get("censor"),
                pci=table.get("pci", ()),
                estimate_initial=table.get("estimate_initial", False),
            )
        except ValueError as error:
            text = str(error)
            for field in ("misclassification", "initial", "censor", "pci", "estimate_initial"):
                text = text.replace(f"HiddenCTMC: {field}", f"model.{field}")
            raise ValueError(f"{where}: {text}") from None

    def read_data(self, source, **columns) -> Chains:
        columns = dict(columns)
        kind = columns.pop("kind", "panel")
        if kind != "panel":
            raise DataError(
                f"{source}: data.kind = {kind!r}; a chain with misclassification is read "
                'from panel visits (kind = "panel")'
            )
        needed = [*self.data_covariates] + ([self.obstrue] if self.obstrue else [])
        return read_chains(source=source, covariates=needed, **columns)

    # ------------------------------------------------------------------ fit hooks

    @property
    def result_class(self) -> type[FitResult]:
        return HiddenCTMCFit

    def fit_methods(self, gradient, information_gradient=None):
        return self.chain.fit_methods(gradient, information_gradient)

    def describe_fit(self, statistics) -> str:
        st = statistics
        features = [
            name
            for name, on in (
                ("misclassification", self.misclassification),
                ("censored states", self.censor),
                (
                    f"piecewise-constant intensities (cuts {', '.join(map(_cut, self.pci))})",
                    self.pci,
                ),
            )
            if on
        ]
        return (
            f"CTMC with {', '.join(features)} (forward algorithm) fit: {st.num_subjects} "
            f"subjects, {st.num_visits} visits, {int(np.count_nonzero(np.asarray(st.lag)))} "
            "distinct (covariate pattern, time step) cells"
        )


class HiddenCTMCFit(CTMCFit):
    """A :class:`HiddenCTMC` fit: the chain's views (intensities, qmatrix, pmatrix,
    sojourn, hazard ratios) plus the misclassification probabilities and Viterbi paths."""

    def misclassification(self) -> pd.DataFrame:
        """``P(recorded s | true r)`` for every allowed pair and the diagonal of those rows,
        with intervals by the delta method on the logit scale (as msm's ``ematrix.msm``)."""
        model = self.model
        theta = jnp.asarray(self.theta)
        E = np.asarray(model.emission_matrix(theta))
        J = np.asarray(jax.jacobian(lambda t: model.emission_matrix(t))(theta))  # (n, n, p)
        rows = sorted({r for r, _ in model.misclassification})
        z = _normal_quantile(self.level)
        out = []
        for r in rows:
            for s in [r] + [s for a, s in model.misclassification if a == r]:
                e = E[r, s]
                grad_logit = J[r, s] / (e * (1 - e))
                se = float(np.sqrt(grad_logit @ self.covariance @ grad_logit))
                logit = np.log(e / (1 - e))
                lower, upper = (1 / (1 + np.exp(-(logit + k * z * se))) for k in (-1, 1))
                out.append(
                    {
                        "true": model.states[r],
                        "recorded": model.states[s],
                        "estimate": float(e),
                        "lower": float(lower),
                        "upper": float(upper),
                        "se_logit": se,
                    }
                )
        return pd.DataFrame(out).set_index(["true", "recorded"])

    def viterbi(self, data=None) -> pd.DataFrame:
        """Each visit with the recorded and most likely true state (msm's ``viterbi.msm``)
        and the posterior probability of every true state."""
        st = self.statistics if data is None else self.model.statistics(data)
        path, post = self.model.viterbi(self.theta, st)
        kind = np.asarray(st.kind)
        code = np.asarray(st.code)
        states = self.model.states
        recorded = [*states, *(key for key, _ in self.model.censor)]
        rows = []
        for i, subject in enumerate(st.subjects):
            for k in np.flatnonzero(kind[i] != _PAD):
                if code[i, k] >= len(recorded):  # a cut point of pci, not a visit
                    continue
                row = {"subject": subject, "visit": int(k), "recorded": recorded[code[i, k]]}
                row["fitted"] = states[path[i, k]]
                row |= {f"p({s})": float(post[i, k, j]) for j, s in enumerate(states)}
                rows.append(row)
        return pd.DataFrame(rows)

    def initial_probabilities(self, **interval) -> pd.DataFrame:
        """The true state's distribution at the first visit with intervals (estimated with
        ``estimate_initial``, else the given ``initial``); interval options as the CTMC
        outputs (default ``ci="normal"``)."""
        m = self.model
        if not m.estimate_initial:
            interval = {"ci": "none"} | interval
        return self._interval_table(
            m.initial_probabilities, pd.Index(list(m.labels), name="state"), interval
        )

    def _body(self) -> list[str]:
        lines = super()._body()
        if self.model.misclassification:
            lines += ["", f"Misclassification probabilities with {100 * self.level:g}% intervals:"]
            for label, row in self.misclassification().iterrows():
                true, recorded = tuple(label)  # type: ignore[arg-type]  (a MultiIndex row)
                lines.append(
                    f"  recorded {recorded} | true {true}  {row.estimate:9.5f}  "
                    f"({row.lower:.5f}, {row.upper:.5f})"
                )
        if self.model.estimate_initial:
            lines += ["", f"Initial state probabilities with {100 * self.level:g}% intervals:"]
            for state, row in self.initial_probabilities().iterrows():
                lines.append(
                    f"  {state:>12}  {row.estimate:9.5f}  ({row.lower:.5f}, {row.upper:.5f})"
                )
        return lines

    def _tables(self) -> dict[str, pd.DataFrame]:
        tables = super()._tables()
        if self.model.misclassification:
            tables["misclassification"] = self.misclassification().reset_index()
        return tables

    def plot(self, data):
        raise NotImplementedError(
            "fits with misclassification have no prevalence plot yet; see .viterbi()"
        )


def _cut(value: float) -> str:
    """A cut point as msm labels it: 5 -> '5', 2.5 -> '2.5', inf -> 'Inf'."""
    return "Inf" if np.isinf(value) else f"{value:g}"


def _normal_quantile(level: float) -> float:
    from scipy.special import ndtri

    return float(ndtri(0.5 + level / 2))
