"""Outcome distributions of a hidden Markov model's states (msm's ``hmodel``).

A visit records a number ``y`` (a lung-function value, a count, ...) instead of a state
code; the true state ``r`` determines its distribution, ``e_r(y) = f_r(y)``, which takes
the place of a column of the misclassification matrix in the forward algorithm. Each
distribution's parameters are estimated on an unconstrained scale (msm's): a mean as it is,
a standard deviation or a rate on the log scale, a probability on the logit scale. The
first of them is the *location*: covariates recorded at the visit shift it on that scale
(msm's ``hcovariates``): ``mean + b z`` for the normal, ``log rate + b z`` for the Poisson,
``logit p + b z`` for the binomial.

``identity`` is the point mass at a code (msm's ``hmmIdent``): a state such as death that
is recorded exactly, e.g. ``999`` in msm's ``fev`` data. Such a state entered at an exact
time (the model's ``exact``) makes the visit that records its code an exact entry.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import jax.numpy as jnp
from jax.scipy.special import gammaln

__all__ = ["DISTRIBUTIONS", "Outcome", "outcome_logpdf"]

# name -> ((parameter, scale), ...) estimated, first the location; and the fixed arguments.
DISTRIBUTIONS: dict[str, tuple[tuple[tuple[str, str], ...], tuple[str, ...]]] = {
    "normal": ((("mean", "identity"), ("sd", "log")), ()),
    "lognormal": ((("meanlog", "identity"), ("sdlog", "log")), ()),
    "poisson": ((("rate", "log"),), ()),
    "exponential": ((("rate", "log"),), ()),
    "binomial": ((("prob", "logit"),), ("size",)),
    "identity": ((), ("value",)),
}
_SCALE_PREFIX = {"identity": "", "log": "log ", "logit": "logit "}


@dataclasses.dataclass(frozen=True)
class Outcome:
    """One state's outcome distribution: its name, starting values of the estimated
    parameters (natural scale), fixed arguments and the covariates acting on its location."""

    distribution: str
    start: tuple[float, ...]
    fixed: tuple[float, ...] = ()
    covariates: tuple[str, ...] = ()
    covariate_start: tuple[float, ...] = ()

    @classmethod
    def parse(cls, spec, field: str) -> Outcome:
        """From ``{distribution = "normal", mean = 100, sd = 16, covariates = ["acute"]}``
        (a spec table or a dict); errors name ``field``."""
        if not isinstance(spec, Mapping):
            raise ValueError(
                f'{field}: expected a table such as {{ distribution = "normal", mean = 100, '
                f"sd = 16 }}, got {spec!r}"
            )
        spec = dict(spec)
        name = spec.pop("distribution", None)
        if not isinstance(name, str) or name not in DISTRIBUTIONS:
            raise ValueError(
                f"{field}.distribution: {name!r} is not one of {', '.join(DISTRIBUTIONS)}"
            )
        estimated, fixed_names = DISTRIBUTIONS[name]
        covariates = spec.pop("covariates", [])
        if isinstance(covariates, str):
            covariates = [covariates]
        if isinstance(covariates, Mapping):  # name -> starting effect (msm's hcovinits)
            starts = list(covariates.values())
            covariates = list(covariates)
        else:
            starts = [0.0] * len(covariates) if isinstance(covariates, (list, tuple)) else []
        if (
            not isinstance(covariates, (list, tuple))
            or not all(isinstance(c, str) for c in covariates)
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in starts)
        ):
            raise ValueError(
                f"{field}.covariates: expected a list of column names, or a table of column "
                "name -> starting effect"
            )
        if covariates and not estimated:
            raise ValueError(f"{field}.covariates: an {name} outcome has no parameter to shift")
        values = {}
        for key in [p for p, _ in estimated] + list(fixed_names):
            if key not in spec:
                raise ValueError(f"{field}.{key} is required for a {name} outcome")
            value = spec.pop(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{field}.{key}: expected a number, got {value!r}")
            values[key] = float(value)
        if spec:
            allowed = [p for p, _ in estimated] + list(fixed_names) + ["covariates"]
            raise ValueError(
                f"{field}.{sorted(spec)[0]}: unknown key for a {name} outcome (it takes "
                f"{', '.join(allowed)})"
            )
        for key, scale in estimated:
            v = values[key]
            ok = (
                math.isfinite(v)
                if scale == "identity"
                else v > 0 and math.isfinite(v)
                if scale == "log"
                else 0 < v < 1
            )
            if not ok:
                need = {
                    "identity": "finite",
                    "log": "positive",
                    "logit": "strictly between 0 and 1",
                }
                raise ValueError(f"{field}.{key}: {v:g} is not {need[scale]}")
        if name == "binomial" and not (values["size"] >= 1 and values["size"].is_integer()):
            raise ValueError(f"{field}.size: {values['size']:g} is not a positive integer")
        return cls(
            distribution=name,
            start=tuple(values[p] for p, _ in estimated),
            fixed=tuple(values[f] for f in fixed_names),
            covariates=tuple(covariates),
            covariate_start=tuple(float(v) for v in starts),
        )

    @property
    def parameters(self) -> tuple[str, ...]:
        """Names of the estimated parameters on their estimation scale: ``mean``, ``log sd``."""
        return tuple(_SCALE_PREFIX[s] + p for p, s in DISTRIBUTIONS[self.distribution][0])

    def unconstrained_start(self) -> list[float]:
        out = []
        for (_, scale), v in zip(DISTRIBUTIONS[self.distribution][0], self.start):
            out.append(
                v
                if scale == "identity"
                else math.log(v)
                if scale == "log"
                else math.log(v / (1 - v))
            )
        return out

    def natural(self, eta):
        """The estimated parameters on their natural scale, from the unconstrained ``eta``
        (..., k)."""
        scales = [s for _, s in DISTRIBUTIONS[self.distribution][0]]
        return [
            eta[..., i] if s == "identity" else jnp.exp(eta[..., i]) if s == "log"
            else 1 / (1 + jnp.exp(-eta[..., i]))
            for i, s in enumerate(scales)
        ]  # fmt: skip

    def to_dict(self) -> dict:
        estimated, fixed_names = DISTRIBUTIONS[self.distribution]
        out: dict = {"distribution": self.distribution}
        out |= {p: v for (p, _), v in zip(estimated, self.start)}
        out |= dict(zip(fixed_names, self.fixed))
        if self.covariates:
            out["covariates"] = dict(zip(self.covariates, self.covariate_start))
        return out


def outcome_logpdf(outcome: Outcome, y, eta, shift):
    """``log f(y)`` for values ``y`` (...), unconstrained parameters ``eta`` (k,) and a
    shift of the location (...) on its scale; ``-inf`` outside the support."""
    name = outcome.distribution
    if name == "identity":
        return jnp.where(y == outcome.fixed[0], 0.0, -jnp.inf)
    location = eta[0] + shift
    if name in ("normal", "lognormal"):
        log_sd = eta[1]
        if name == "lognormal":
            positive = y > 0
            x = jnp.log(jnp.where(positive, y, 1.0))
        else:
            positive, x = True, y
        z = (x - location) * jnp.exp(-log_sd)
        out = -0.5 * z**2 - log_sd - 0.5 * math.log(2 * math.pi)
        if name == "lognormal":
            out = jnp.where(positive, out - x, -jnp.inf)
        return out
    if name == "poisson":
        count = jnp.round(y)
        ok = (y >= 0) & (y == count)
        out = count * location - jnp.exp(location) - gammaln(count + 1)
        return jnp.where(ok, out, -jnp.inf)
    if name == "exponential":
        return jnp.where(y >= 0, location - jnp.exp(location) * y, -jnp.inf)
    # binomial: the log-odds is the location
    size = outcome.fixed[0]
    count = jnp.round(y)
    ok = (y >= 0) & (y <= size) & (y == count)
    out = (
        gammaln(size + 1) - gammaln(count + 1) - gammaln(size - count + 1)
        + count * location - size * jnp.logaddexp(0.0, location)
    )  # fmt: skip
    return jnp.where(ok, out, -jnp.inf)


def check_outcomes(outcomes, shared, states, exact, caller: str):
    """Per state (in ``states`` order) its :class:`Outcome`, from a mapping state ->
    table; and the covariates whose effect is one parameter across states (msm's
    ``hconstraint`` on a covariate). Every state needs one; a state entered at an exact
    time needs an ``identity`` outcome (its code marks the exact entry)."""
    from linest.data import state_key

    if not outcomes:
        if shared:
            raise ValueError(f"{caller}: outcome_shared without outcomes")
        return (), ()
    if not isinstance(outcomes, Mapping):
        raise ValueError(
            f'{caller}: outcomes must be a table of state -> distribution, e.g. {{ "1" = '
            '{ distribution = "normal", mean = 100, sd = 16 } }'
        )
    parsed = {}
    for state, spec in outcomes.items():
        key = state_key(state)
        if key not in states:
            raise ValueError(
                f"{caller}: outcomes names state {state!r}, not one of the states "
                f"{', '.join(states)}"
            )
        field = f"{caller}: outcomes.{key}"
        parsed[key] = spec if isinstance(spec, Outcome) else Outcome.parse(spec, field)
    missing = [s for s in states if s not in parsed]
    if missing:
        raise ValueError(
            f"{caller}: outcomes gives no distribution for state(s) {', '.join(missing)}; "
            "every state needs one (identity with a code for a state recorded exactly)"
        )
    for i in exact:
        if parsed[states[i]].distribution != "identity":
            raise ValueError(
                f"{caller}: outcomes.{states[i]}: state {states[i]} is entered at an exact "
                "time (model.exact), so its outcome must be identity with the code that "
                "records it"
            )
    shared = (shared,) if isinstance(shared, str) else tuple(shared)
    if len(set(shared)) != len(shared):
        raise ValueError(f"{caller}: outcome_shared lists a column twice")
    used = {c for o in parsed.values() for c in o.covariates}
    for c in shared:
        if c not in used:
            raise ValueError(
                f"{caller}: outcome_shared names {c!r}, a covariate of no state's outcome"
            )
    return tuple(parsed[s] for s in states), shared


def in_support(outcome: Outcome, y):
    """Whether each value ``y`` can be recorded under ``outcome`` at any parameters."""
    import numpy as np

    y = np.asarray(y, float)
    name = outcome.distribution
    whole = y == np.round(y)
    return {
        "normal": np.isfinite(y),
        "lognormal": y > 0,
        "poisson": (y >= 0) & whole,
        "exponential": y >= 0,
        "binomial": (y >= 0) & whole & (y <= (outcome.fixed[0] if outcome.fixed else 0)),
        "identity": y == (outcome.fixed[0] if outcome.fixed else np.nan),
    }[name]
