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
scale): ``e_rs = exp(eta_rs) / (1 + sum_k exp(eta_rk))`` (with one misclassification in
a row, ``logit(e_rs)``); the misclassification covariates' effects (covariate-major);
the outcome distributions' parameters per state with their unshared covariate effects,
then the shared effects (:mod:`linest.models.outcomes`); the estimated initial
probabilities' logits and their covariates' effects (covariate-major).

Visits may instead record a number with a distribution per true state (``outcomes``, msm's
hmodel), and a state may be split into latent Coxian phases (``phases``, msm's
phase.states; :mod:`linest.models.phase_type`).

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
from linest.models.outcomes import (
    DISTRIBUTIONS,
    Outcome,
    check_outcomes,
    in_support,
    outcome_logpdf,
)
from linest.models.phase_type import check_phases, expand_phases
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
    With outcome distributions, ``value`` is the recorded number and ``hz`` the outcomes'
    covariates at the visit; ``code`` is then the state of an exact entry.
    """

    z: jax.Array
    covariate_means: jax.Array
    lag: jax.Array
    group: jax.Array
    code: jax.Array
    kind: jax.Array
    cell: jax.Array
    value: jax.Array  # (S, T) the recorded outcome, for models with outcomes (else (S, 0))
    hz: jax.Array  # (S, T, H) the outcomes' covariates at each visit
    num_subjects: int = eqx.field(static=True, default=0)
    num_visits: int = eqx.field(static=True, default=0)
    source: str = eqx.field(static=True, default="")
    subjects: tuple = eqx.field(static=True, default=())

    def for_compute(self) -> HiddenStatistics:
        """Without the static labels: same-shaped data sets share one compiled program."""
        return HiddenStatistics(
            self.z, self.covariate_means, self.lag, self.group, self.code, self.kind,
            self.cell, self.value, self.hz,
        )  # fmt: skip


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
    censor : mapping, optional
        Codes standing for sets of states (msm's ``censor``).
    pci : sequence of float
        Cut times of piecewise-constant intensities (msm's ``pci``).
    outcomes : mapping state -> table, optional
        The distribution of the number a visit records, per state (msm's ``hmodel``); see
        :mod:`linest.models.outcomes` and models/README.md.
    outcome_shared : sequence of str
        Outcome covariates with one effect across the states using them.
    phases : mapping state -> int, optional
        States with a Coxian phase-type sojourn (msm's ``phase.states``).
    misc_covariates, initial_covariates : sequence of str
        Columns acting on every misclassification probability (msm's ``misccovariates``)
        and on the estimated initial probabilities (msm's ``initcovariates``).

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
    outcomes: tuple[Outcome, ...] = eqx.field(static=True)
    outcome_shared: tuple[str, ...] = eqx.field(static=True)
    phases: tuple[tuple[str, int], ...] = eqx.field(static=True)
    original: tuple = eqx.field(static=True)
    misc_covariates: tuple[str, ...] = eqx.field(static=True)
    initial_covariates: tuple[str, ...] = eqx.field(static=True)

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
        outcomes: Mapping | None = None,
        outcome_shared: Sequence[str] = (),
        phases: Mapping | None = None,
        misc_covariates: Sequence[str] = (),
        initial_covariates: Sequence[str] = (),
    ):
        caller = "HiddenCTMC"
        self.original = (
            tuple(state_key(s) for s in states),
            tuple(_parse_transition(t, f"{caller}: transitions") for t in transitions),
            tuple(state_key(e) for e in exact),
            None if labels is None else tuple(labels),
        )
        self.phases = check_phases(phases, self.original, caller)
        if self.phases:
            states, transitions, labels, phase_sets, initial = expand_phases(
                self.original, self.phases, initial
            )
            if censor or misclassification:
                raise ValueError(
                    f"{caller}: phases do not combine with censor codes or misclassification "
                    "(a phased state is itself recorded as the set of its phases; msm's "
                    "phase.states refuses an ematrix too)"
                )
            censor = phase_sets
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
        if not items and not censored and not pci and not outcomes:
            raise ValueError(
                f"{caller}: misclassification allows nothing (and no censor codes, pci, "
                "outcomes or phases); a chain observed without error is a CTMC "
                "(model.type = 'ctmc')"
            )
        self.outcomes, self.outcome_shared = check_outcomes(
            outcomes, outcome_shared, names, self.chain.exact, caller
        )
        if self.outcomes and (items or censored or obstrue):
            raise ValueError(
                f"{caller}: outcomes replace the recorded state codes; they do not combine "
                "with misclassification, censor codes, phases or obstrue"
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
        self.misc_covariates = _columns(
            misc_covariates, "misc_covariates", bool(pairs), caller,
            "act on misclassification probabilities, and the model has none "
            "(model.misclassification)",
        )  # fmt: skip
        self.initial_covariates = _columns(
            initial_covariates, "initial_covariates", estimate_initial, caller,
            "act on estimated initial probabilities; set estimate_initial = true",
        )  # fmt: skip
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
        if self.phases:  # rebuilt from the recorded states, phased again
            states, transitions, exact, labels = self.original
            return HiddenCTMC(
                states=states, transitions=transitions, exact=exact, labels=labels,
                covariates=covariates, initial=self.initial, pci=self.pci,
                estimate_initial=self.estimate_initial, phases=dict(self.phases),
                obstrue=self.obstrue, initial_covariates=self.initial_covariates,
            )  # fmt: skip
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
            misc_covariates=self.misc_covariates,
            initial_covariates=self.initial_covariates,
            outcomes={
                names[k]: o for k, o in enumerate(self.outcomes)
            } if self.outcomes else None,
            outcome_shared=self.outcome_shared,
        )  # fmt: skip

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

    def _outcome_layout(self):
        """The outcome parameters: their names, kinds, and per state the indices into
        theta of its distribution's parameters and of the effects of its covariates."""
        K = len(self.misclassification)
        base = self._num_chain + K * (1 + len(self.misc_covariates))
        names, kinds, layout = [], [], []
        for state, o in zip(self.states, self.outcomes):
            own = [p for p in range(len(o.parameters))]
            names += [f"outcome {p}({state})" for p in o.parameters]
            kinds += ["outcome"] * len(o.parameters)
            index, effects = list(range(base, base + len(own))), []
            base += len(own)
            for c in o.covariates:
                if c in self.outcome_shared:
                    effects.append(c)  # resolved below
                else:
                    names.append(f"outcome {c}({state})")
                    kinds.append("outcome_effect")
                    effects.append(base)
                    base += 1
            layout.append((index, effects))
        shared = {c: base + k for k, c in enumerate(self.outcome_shared)}
        names += [f"outcome {c}" for c in self.outcome_shared]
        kinds += ["outcome_effect"] * len(self.outcome_shared)
        layout = [(i, [shared.get(e, e) for e in eff]) for i, eff in layout]  # type: ignore[misc]
        return names, kinds, layout

    @property
    def param_names(self) -> tuple[str, ...]:
        own = tuple(
            f"eta e({self.misclassification_name(k)})" for k in range(len(self.misclassification))
        )
        own += tuple(
            f"misc {c}({self.misclassification_name(k)})"
            for c in self.misc_covariates
            for k in range(len(self.misclassification))
        )
        init = tuple(f"eta init({self.states[k]})" for k in self.initial_free)
        init += tuple(
            f"init {c}({self.states[k]})"
            for c in self.initial_covariates
            for k in self.initial_free
        )
        return self.chain.param_names + own + tuple(self._outcome_layout()[0]) + init

    prior_kinds: ClassVar[tuple[str, ...]] = (
        "log_rate", "effect", "misclassification", "misclassification_effect", "initial",
        "initial_effect", "outcome", "outcome_effect",
    )  # fmt: skip

    @property
    def param_kinds(self) -> tuple[str, ...]:
        return (
            self.chain.param_kinds
            + ("misclassification",) * len(self.misclassification)
            + ("misclassification_effect",)
            * (len(self.misclassification) * len(self.misc_covariates))
            + tuple(self._outcome_layout()[1])
            + ("initial",) * len(self.initial_free)
            + ("initial_effect",) * (len(self.initial_free) * len(self.initial_covariates))
        )

    @property
    def param_positive(self) -> tuple[bool, ...]:
        return self.chain.param_positive + (False,) * (len(self.param_names) - self._num_chain)

    def outcome_covariates(self) -> tuple[str, ...]:
        """The data columns the outcome distributions use, in first-use order."""
        return tuple(dict.fromkeys(c for o in self.outcomes for c in o.covariates))

    def _visit_covariates(self) -> tuple[str, ...]:
        """Columns read at each visit (``HiddenStatistics.hz``): the outcomes' covariates,
        the misclassification covariates and the initial probabilities' (first visit)."""
        return tuple(
            dict.fromkeys(
                [*self.outcome_covariates(), *self.misc_covariates, *self.initial_covariates]
            )
        )

    def initial_probabilities(self, theta, z=None) -> jax.Array:
        """The true state's distribution at the first visit (n,): ``initial``, or the
        multinomial logit of the ``eta init`` parameters (msm's est.initprobs); with the
        (centred) first-visit covariates ``z`` (S, M) of ``initial_covariates``, one
        distribution per subject (S, n) (msm's initcovariates)."""
        theta = jnp.asarray(theta)
        if not self.estimate_initial:
            return jnp.asarray(self.initial, theta.dtype)
        free = list(self.initial_free)
        M = len(self.initial_covariates)
        first = len(self.param_names) - len(free) * (1 + M)
        eta = theta[..., first : first + len(free)]
        if z is not None and M:  # one theta: effects covariate-major
            B = theta[first + len(free) :].reshape(M, len(free))
            eta = eta + jnp.asarray(z, theta.dtype) @ B
        logits = jnp.full((*eta.shape[:-1], self.num_states), -jnp.inf, theta.dtype)
        logits = logits.at[..., 0].set(0.0).at[..., free].set(eta)
        return jax.nn.softmax(logits, axis=-1)

    def emission_matrix(self, theta, z=None) -> jax.Array:
        """``E[r, s]``: the probability that true state ``r`` is recorded as ``s`` (n, n),
        or (..., n, n) for a stack of theta; at the (centred) misclassification covariates
        ``z`` (..., M) when given (msm's misccovariates), else at their means."""
        theta = jnp.asarray(theta)
        K, M = len(self.misclassification), len(self.misc_covariates)
        eta = theta[..., self._num_chain : self._num_chain + K]
        # With covariates z, theta must be one vector (every caller passes one).
        if z is not None and M:  # one theta, covariates (..., M): effects covariate-major
            start = self._num_chain + K
            eta = eta + jnp.asarray(z, theta.dtype) @ theta[start : start + K * M].reshape(M, K)
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
        """The chain's rates (and hazard ratios), the misclassification probabilities and
        the outcome distributions' parameters on their natural scale."""
        out = self.chain.natural_parameters(jnp.asarray(theta)[..., : self._num_chain])
        if self.outcomes:
            theta = jnp.asarray(theta)
            _, _, layout = self._outcome_layout()
            values, labels = [], []
            for state, o, (index, _) in zip(self.states, self.outcomes, layout):
                eta = theta[..., jnp.asarray(index, int)] if index else theta[..., :0]
                values += o.natural(eta)
                labels += [f"{p}({state})" for p, _ in DISTRIBUTIONS[o.distribution][0]]
            if values:
                out["outcome_parameter"] = (jnp.stack(values, -1), "outcome", tuple(labels))
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

    def boundary_mask(self) -> tuple[bool, ...]:
        """The chain's baseline rates may be 0 (a phase-type fit often puts one there)."""
        return self.param_positive

    def loglik_natural(self, values, statistics: HiddenStatistics, gradient=None):
        """The log-likelihood with the chain's baseline rates themselves (>= 0)."""
        values = jnp.asarray(values)
        c = self.chain
        Q = c._generator_from(c._rates_natural(values[: self._num_chain], statistics.z))
        return jnp.sum(self.subject_loglik(values, statistics, gradient, Q=Q))

    def _transition_stacks(self, theta, st: HiddenStatistics, gradient, Q=None):
        """P per cell (K, n, n), and P Q (K, n, n) for entries into exactly-timed states."""
        gradient = DEFAULT_GRADIENT if gradient is None else gradient
        Q = self.generator(theta, st.z) if Q is None else Q
        P = expm_times(Q, st.lag, st.group, gradient=gradient)
        PQ = P @ Q[st.group] if self.exact else P
        return P, PQ

    def _outcome_logdensity(self, theta, st: HiddenStatistics) -> jax.Array:
        """``log f_r(y)`` of each visit's value under each state's outcome (S, T, n)."""
        theta = jnp.asarray(theta)
        _, _, layout = self._outcome_layout()
        columns = {c: k for k, c in enumerate(self._visit_covariates())}
        out = []
        for o, (index, effects) in zip(self.outcomes, layout):
            shift = jnp.zeros_like(st.value)
            for c, e in zip(o.covariates, effects):
                shift = shift + theta[e] * st.hz[..., columns[c]]
            out.append(outcome_logpdf(o, st.value, theta[jnp.asarray(index, int)], shift))
        return jnp.stack(out, axis=-1)

    def _emissions(self, theta, st: HiddenStatistics):
        """e(o) per visit (S, T, n), the probability (density) of the record given each
        true state, scaled per visit by ``exp(-offset)``; and ``offset`` (S, T), which the
        log-likelihood adds back (densities of outcomes can underflow)."""
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
        if self.misc_covariates:  # E at each visit's covariates: (S, T, n, n)
            columns = [self._visit_covariates().index(c) for c in self.misc_covariates]
            Ev = jnp.swapaxes(self.emission_matrix(theta, st.hz[..., columns]), -1, -2)
            stack = jnp.concatenate([Ev, jnp.broadcast_to(sets, (*Ev.shape[:2], *sets.shape))], -2)
            noisy = jnp.take_along_axis(stack, st.code[..., None, None], axis=-2)[..., 0, :]
        else:
            noisy = jnp.concatenate([jnp.swapaxes(E, 0, 1), sets])[st.code]
        offset = jnp.zeros(st.code.shape, E.dtype)
        if self.outcomes:
            logf = self._outcome_logdensity(theta, st)
            top = lax.stop_gradient(jnp.max(logf, axis=-1))
            top = jnp.where(jnp.isfinite(top), top, 0.0)
            noisy, offset = jnp.exp(logf - top[..., None]), jnp.where(st.kind == _NOISY, top, 0)
        emit = jnp.where((st.kind == _NOISY)[..., None], noisy, onehot)
        return jnp.where((st.kind == _PAD)[..., None], 1.0, emit), offset

    def _steps(self, theta, st: HiddenStatistics, gradient, Q=None):
        """Time-major inputs of the recursion: (T, S, n, n) transitions and (T, S, n)
        emissions, and the emissions' offsets (S, T)."""
        P, PQ = self._transition_stacks(theta, st, gradient, Q)
        emit, offset = self._emissions(theta, st)
        exact = (st.kind == _EXACT)[..., None, None]
        trans = jnp.where(exact, PQ[st.cell], P[st.cell])  # (S, T, n, n)
        return jnp.swapaxes(trans, 0, 1), jnp.swapaxes(emit, 0, 1), offset

    def subject_loglik(
        self, theta, statistics: HiddenStatistics, gradient=None, Q=None
    ) -> jax.Array:
        """Log-likelihood of each subject (S,), by the scaled forward algorithm (with the
        chain's generators ``Q`` per covariate pattern when given)."""
        st = statistics
        theta = jnp.asarray(theta)
        trans, emit, offset = self._steps(theta, st, gradient, Q)
        init = self.initial_probabilities(theta, self._initial_z(st))
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
        return total + offset.sum(axis=-1)

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
        trans, emit, _ = self._steps(theta, st, Exact() if gradient is None else gradient)
        pad = jnp.swapaxes(st.kind == _PAD, 0, 1)
        n = self.num_states
        with np.errstate(divide="ignore"):
            log_trans = jnp.log(jnp.maximum(trans, 0.0))
            log_emit = jnp.log(emit)
        init = self.initial_probabilities(theta, self._initial_z(st))
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
        needed = self._data_columns()
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
        if self.outcomes:
            values, codes = self._outcome_codes(data, anything)
        else:
            values = np.zeros(len(data.state))
            codes = self.chain._codes(data, data.state, position, data.columns["state"])
        hcols = [data.covariate_names.index(c) for c in self._visit_covariates()]
        hcov = data.covariates[:, hcols]
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
        # Centred as msm centres every covariate: over the rows that start an interval.
        starts = np.ones(len(codes), bool)
        starts[first + counts - 1] = False
        hcov = hcov - (hcov[starts].mean(axis=0) if starts.any() else 0.0)
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
        at_visits = bool(self.outcomes or self.misc_covariates or self.initial_covariates)
        value = np.zeros((S, T if self.outcomes else 0))
        hz = np.zeros((S, T if at_visits else 0, hcov.shape[1]))
        code = np.zeros((S, T), int)
        kind = np.full((S, T), _PAD)
        cell_of = np.zeros((S, T), int)
        subj, visit, start, dt, cov_row = [], [], [], [], []
        for i, visits in enumerate(subjects):
            for k, (time, c, kd, row) in enumerate(visits):
                code[i, k], kind[i, k] = c, kd
                if at_visits:
                    hz[i, k] = hcov[row]
                    if self.outcomes:
                        value[i, k] = values[row]
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
            value=jnp.asarray(value, dtype=float),
            hz=jnp.asarray(hz, dtype=float),
            num_subjects=S,
            num_visits=len(codes),
            source=data.source,
            subjects=tuple(str(x) for x in names),
        )

    def _data_columns(self) -> list[str]:
        """The data columns besides subject, time and state that the model reads."""
        extra = [self.obstrue] if self.obstrue else []
        return list(dict.fromkeys([*self.data_covariates, *extra, *self._visit_covariates()]))

    def _outcome_codes(self, data: Chains, anything: int):
        """The recorded values as numbers, and per row the code: the exactly-timed state
        whose identity code it is, else ``anything`` (the outcome densities decide)."""
        column = data.columns["state"]
        values = np.empty(len(data.state))
        for i, v in enumerate(data.state):
            try:
                values[i] = float(v)
            except ValueError:
                raise DataError(
                    f"{data.where(i)}: column {column!r} holds {v!r}; a model with outcome "
                    "distributions reads numbers there"
                ) from None
        possible = np.zeros(len(values), bool)
        for o in self.outcomes:
            possible |= in_support(o, values)
        bad = np.flatnonzero(~possible)
        if bad.size:
            i = bad[0]
            raise DataError(
                f"{data.where(i)}: column {column!r} holds {values[i]:g}, which no state's "
                "outcome can record (model.outcomes: "
                + ", ".join(f"{s} {o.distribution}" for s, o in zip(self.states, self.outcomes))
                + ")"
            )
        codes = np.full(len(values), anything)
        for e in self.exact:
            codes[values == self.outcomes[e].fixed[0]] = e
        return values, codes

    def _initial_z(self, st: HiddenStatistics):
        """The initial-probability covariates at each subject's first visit (S, M)."""
        if not self.initial_covariates:
            return None
        columns = [self._visit_covariates().index(c) for c in self.initial_covariates]
        return st.hz[:, 0, columns]

    def initial_theta(self, statistics: HiddenStatistics) -> np.ndarray:
        """Crude rates from the recorded states taken at face value (msm's crudeinits:
        ``q_rs ~ n_rs / T_r``), the chain's effects at 0, and the misclassification
        probabilities the model was given (default 0.1). With outcomes, a visit counts as
        the state whose outcome makes its value likeliest at the starting parameters; a
        phased state's visits count as its first phase, whose rates are then shared out
        over the phases (exits from 0.8 to 1.2 times the crude ones, each phase moving on
        at 2.5 times the crude total)."""
        st = statistics
        code, kind, cell = (np.asarray(x) for x in (st.code, st.kind, st.cell))
        lag = np.asarray(st.lag)
        n = self.num_states
        code = code.copy()
        if self.phases:  # a recorded phased state: its first phase
            for j, (_, members) in enumerate(self.censor):
                code[code == n + j] = members[0]
        outcome_start = []
        if self.outcomes:
            # Each parameter's start at its place in theta (a shared effect: the mean of
            # the starts given for it).
            starts: dict[int, list[float]] = {}
            for o, (index, effects) in zip(self.outcomes, self._outcome_layout()[2]):
                for i, v in zip(index + effects, o.unconstrained_start() + list(o.covariate_start)):
                    starts.setdefault(i, []).append(v)
            outcome_start = [float(np.mean(starts[i])) for i in sorted(starts)]
            logf = np.stack(
                [
                    np.asarray(
                        outcome_logpdf(o, st.value, jnp.asarray(o.unconstrained_start()), 0.0)
                    )
                    for o in self.outcomes
                ],
                axis=-1,
            )
            noisy = kind == _NOISY
            code[noisy] = np.argmax(logf, axis=-1)[noisy]
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
        index = {t: k for k, t in enumerate(self.transitions)}
        for _, members in self.censor if self.phases else ():
            first = [(k, s) for k, (r, s) in enumerate(self.transitions) if r == members[0]]
            crude = {s: rates[k] for k, s in first if s not in members}
            total = sum(crude.values())
            for j, m in enumerate(members):
                factor = 0.8 + 0.4 * j / (len(members) - 1)
                for s, q in crude.items():
                    rates[index[(m, s)]] = factor * q
                if j + 1 < len(members):
                    rates[index[(m, members[j + 1])]] = 2.5 * total
        eta = np.zeros(len(self.misclassification))
        for k, ((r, _), p) in enumerate(zip(self.misclassification, self.starting_probabilities)):
            row_total = sum(
                v for (a_, _), v in zip(self.misclassification, self.starting_probabilities)
                if a_ == r
            )  # fmt: skip
            eta[k] = np.log(p / (1 - row_total))
        init = [np.log(self.initial[k] / self.initial[0]) for k in self.initial_free]
        init += [0.0] * (len(self.initial_free) * len(self.initial_covariates))
        misc = np.zeros(len(self.misclassification) * len(self.misc_covariates))
        return np.concatenate(
            [np.log(rates), np.zeros(len(self.effects)), eta, misc, outcome_start, init]
        )

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
        "outcomes": "per state the distribution of the recorded value (msm's hmodel), e.g. "
        '{ "1" = { distribution = "normal", mean = 100, sd = 16, covariates = { acute = -8 } }'
        " }: normal, lognormal, poisson, exponential, binomial (size) or identity (value)",
        "misc_covariates": "columns acting on every misclassification probability, on the "
        "logit scale, at each visit (msm's misccovariates)",
        "initial_covariates": "columns at the first visit acting on the estimated initial "
        "probabilities' logits (msm's initcovariates)",
        "outcome_shared": "outcome covariates with one effect across the states using them "
        "(msm's hconstraint on a covariate)",
        "phases": 'states whose sojourn is Coxian phase-type, e.g. { "1" = 2 } (msm\'s '
        "phase.states); covariates, effects and initial then name the phases, '1 [P1]'",
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
                outcomes=table.get("outcomes"),
                outcome_shared=table.get("outcome_shared", ()),
                phases=table.get("phases"),
                misc_covariates=table.get("misc_covariates", ()),
                initial_covariates=table.get("initial_covariates", ()),
            )
        except ValueError as error:
            text = str(error)
            fields = ("misclassification", "initial", "censor", "pci", "estimate_initial")
            fields += ("outcomes", "outcome_shared", "phases", "misc_covariates")
            fields += ("initial_covariates",)
            text = text.replace("HiddenCTMC: outcomes gives", "model.outcomes gives")
            text = text.replace("HiddenCTMC: outcomes names", "model.outcomes names")
            text = text.replace("HiddenCTMC: phases names", "model.phases names")
            for field in fields:
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
        return read_chains(source=source, covariates=self._data_columns(), **columns)

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
                ("censored states", self.censor and not self.phases),
                (
                    f"piecewise-constant intensities (cuts {', '.join(map(_cut, self.pci))})",
                    self.pci,
                ),
                ("outcome distributions", self.outcomes),
                (
                    "phase-type sojourns in "
                    + ", ".join(f"{s} ({k} phases)" for s, k in self.phases),
                    self.phases,
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
    sojourn, hazard ratios) plus the misclassification probabilities, outcome
    distributions, phase-type sojourns and Viterbi paths."""

    REPORTS = CTMCFit.REPORTS | {
        "phases": "sojourn in each phase-type state (msm's phasemeans.msm)",
        "initial_probabilities": "the true state's distribution at the first visit",
    }

    def misclassification(self) -> pd.DataFrame:
        """``P(recorded s | true r)`` for every allowed pair and the diagonal of those rows,
        with intervals by the delta method on the logit scale (as msm's ``ematrix.msm``)."""
        model = self.model
        if not model.misclassification:
            raise ValueError("misclassification: the model has no misclassification")
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
                with np.errstate(over="ignore"):  # an unidentified logit: interval (0, 1)
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

    def outcomes(self) -> pd.DataFrame:
        """The outcome distributions' parameters on their natural scale (a standard
        deviation, not its log) with Wald intervals from the estimation scale, as msm's
        ``hmodel`` printout; covariate effects on the location's scale."""
        m = self.model
        names = m.param_names
        z = _normal_quantile(self.level)
        _, _, layout = m._outcome_layout()
        rows = []
        for state, o, (index, effects) in zip(m.states, m.outcomes, layout):
            scales = [sc for _, sc in DISTRIBUTIONS[o.distribution][0]]
            labels = [p for p, _ in DISTRIBUTIONS[o.distribution][0]]
            for i, label, scale in zip(index, labels, scales):
                rows.append((state, o.distribution, label, i, scale))
            for c, i in zip(o.covariates, effects):
                rows.append((state, o.distribution, c, i, "identity"))
            for f, v in zip(DISTRIBUTIONS[o.distribution][1], o.fixed):
                rows.append((state, o.distribution, f, v, "fixed"))
        out = []
        for state, dist, label, i, scale in rows:
            if scale == "fixed":
                out.append({"state": state, "distribution": dist, "parameter": label,
                            "estimate": i, "lower": np.nan, "upper": np.nan})  # fmt: skip
                continue
            est, se = float(self.theta[i]), float(np.sqrt(max(self.covariance[i, i], 0.0)))
            to = {"identity": lambda x: x, "log": np.exp, "logit": lambda x: 1 / (1 + np.exp(-x))}
            f = to[scale]
            out.append({"state": state, "distribution": dist, "parameter": label,
                        "estimate": float(f(est)), "lower": float(f(est - z * se)),
                        "upper": float(f(est + z * se)), "theta": names[i]})  # fmt: skip
        return pd.DataFrame(out).set_index(["state", "parameter"])

    def phases(self, covariates=None, **interval) -> pd.DataFrame:
        """The sojourn in each phase-type state, with intervals (options as the CTMC
        outputs, default ``ci="normal"``): ``mean_sojourn`` from entry; with two phases
        also msm's ``phasemeans``: ``short_mean`` (leaving from phase 1, 1 / its total
        rate), ``long_mean`` (through phase 2) and ``long_probability``."""
        m = self.model
        if not m.phases:
            raise ValueError("the model has no phase-type states (model.phases)")
        generator = self._generator_fn(covariates)
        rows = []
        for state, members in m.censor:
            names = ["short_mean", "long_mean", "long_probability"] if len(members) == 2 else []
            rows += [(state, q) for q in [*names, "mean_sojourn"]]

        def sojourns(theta):
            Q = generator(theta)
            out = []
            for _, members in m.censor:
                idx = list(members)
                leave = -jnp.diagonal(Q)[jnp.asarray(idx)]
                onward = jnp.stack([Q[a, b] for a, b in itertools.pairwise(idx)])
                reach = jnp.concatenate([jnp.ones(1), jnp.cumprod(onward / leave[:-1])])
                if len(idx) == 2:
                    out += [1 / leave[0], 1 / leave[0] + 1 / leave[1], onward[0] / leave[0]]
                out.append(jnp.sum(reach / leave))
            return jnp.stack(out)

        index = pd.MultiIndex.from_tuples(rows, names=["state", "quantity"])
        return self._interval_table(sojourns, index, interval)

    def viterbi(self, data=None) -> pd.DataFrame:
        """Each visit with the recorded and most likely true state (msm's ``viterbi.msm``)
        and the posterior probability of every true state."""
        st = self.statistics if data is None else self.model.statistics(data)
        path, post = self.model.viterbi(self.theta, st)
        kind = np.asarray(st.kind)
        code = np.asarray(st.code)
        states = self.model.states
        recorded = [*states, *(key for key, _ in self.model.censor)]
        value = np.asarray(st.value)
        rows = []
        for i, subject in enumerate(st.subjects):
            for k in np.flatnonzero(kind[i] != _PAD):
                if kind[i, k] == _TRUE and code[i, k] >= len(recorded):  # a pci cut point
                    continue
                if self.model.outcomes:  # the recorded number (an exact entry: its code)
                    shown = (
                        value[i, k] if kind[i, k] == _NOISY
                        else self.model.outcomes[code[i, k]].fixed[0]
                    )  # fmt: skip
                else:
                    shown = recorded[code[i, k]]
                row = {"subject": subject, "visit": int(k), "recorded": shown}
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
        if self.model.misc_covariates:
            lines += [
                "",
                "Covariate effects on the misclassification logits (centred covariates) "
                f"with {100 * self.level:g}% intervals:",
            ]
            z = _normal_quantile(self.level)
            for i, name in enumerate(self.model.param_names):
                if self.model.param_kinds[i] == "misclassification_effect":
                    se = float(np.sqrt(max(self.covariance[i, i], 0.0)))
                    b = float(self.theta[i])
                    lines.append(f"  {name:>18}  {b:10.5g}  ({b - z * se:.5g}, {b + z * se:.5g})")
        if self.model.outcomes:
            lines += ["", f"Outcome distributions with {100 * self.level:g}% intervals:"]
            for label, row in self.outcomes().iterrows():
                state, parameter = tuple(label)  # type: ignore[arg-type]  (a MultiIndex row)
                interval = (
                    "(fixed)" if row.theta is None or row.theta != row.theta
                    else f"({row.lower:.5g}, {row.upper:.5g})"
                )  # fmt: skip
                lines.append(
                    f"  state {state:>6} {row.distribution:>11} {parameter:>10}  "
                    f"{row.estimate:11.5g}  {interval}"
                )
        if self.model.phases:
            lines += ["", f"Phase-type sojourns with {100 * self.level:g}% intervals:"]
            for label, row in self.phases().iterrows():
                state, quantity = tuple(label)  # type: ignore[arg-type]  (a MultiIndex row)
                lines.append(
                    f"  state {state:>6} {quantity:>16}  {row.estimate:10.5g}  "
                    f"({row.lower:.5g}, {row.upper:.5g})"
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
        if self.model.outcomes:
            tables["outcomes"] = self.outcomes().reset_index()
        return tables

    # Prevalence compares what the visits record with what the model expects them to
    # record: the true state's distribution pi0 P(t) seen through the observation model
    # (the misclassification matrix, or a phased state's phases summed).

    def _prevalence_model(self, data, times):
        """The recorded categories: labels, the map from a recorded code to its category,
        which are absorbing, and ``theta -> pi0 P(t) M`` (T, R) with ``pi0`` the fitted
        initial distribution, ``P`` averaged over the covariate histories (and pci
        periods; :meth:`CTMCFit._expected_shares`) and ``M`` (n, R) the
        probability that each true state is recorded as each category."""
        m = self.model
        if m.outcomes:
            raise ValueError(
                "prevalence: the visits record numbers (outcomes), not states; see .viterbi()"
            )
        if m.censor and not m.phases:
            raise ValueError("prevalence: censor codes are not supported")
        n = m.num_states
        if m.phases:
            states, _, _, labels = m.original
            labels = list(states if labels is None else labels)
            sets = dict(m.censor)
            columns = [list(sets[s]) if s in sets else [m.states.index(s)] for s in states]
            member = np.zeros((n, len(states)))
            for r, rows in enumerate(columns):
                member[rows, r] = 1.0
            position = {s: r for r, s in enumerate(states)}
            absorbing = np.array([all(i in m.absorbing for i in rows) for rows in columns])

            def record(theta):
                return jnp.asarray(member)
        else:
            labels, position = list(m.labels), {s: i for i, s in enumerate(m.states)}
            absorbing = np.isin(np.arange(n), m.absorbing)
            record = m.emission_matrix
        shares = self._expected_shares(
            times, m.initial_probabilities, record, data, position, absorbing
        )
        return labels, position, absorbing, shares

    def _history_layout(self) -> tuple[tuple[str, ...], tuple[float, ...]]:
        return tuple(self.model.data_covariates), tuple(self.model.pci)


def _columns(value, field: str, allowed: bool, caller: str, why: str) -> tuple[str, ...]:
    """A list of data columns for ``field``: no repeats, and only where ``allowed``."""
    columns = (value,) if isinstance(value, str) else tuple(value)
    if columns and not allowed:
        raise ValueError(f"{caller}: {field} {why}")
    if len(set(columns)) != len(columns):
        raise ValueError(f"{caller}: {field} lists a column twice")
    return columns


def _cut(value: float) -> str:
    """A cut point as msm labels it: 5 -> '5', 2.5 -> '2.5', inf -> 'Inf'."""
    return "Inf" if np.isinf(value) else f"{value:g}"


def _normal_quantile(level: float) -> float:
    from scipy.special import ndtri

    return float(ndtri(0.5 + level / 2))
