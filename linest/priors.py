"""Prior distributions on a model's parameters, with the change-of-variables Jacobian.

A prior is written as a table (the ``[priors]`` table of a spec file, or a dict in
Python) mapping a *target* to a distribution ``{name = [arguments]}``::

    log_rate = { normal = [-2.0, 2.0] }     # every log-rate theta = log q
    effect   = { normal = [0.0, 1.0] }      # every covariate effect beta
    "q(2-4)" = { gamma = [2.0, 10.0] }      # one rate, on the rate scale
    "log q(1-2)" = { normal = [-1.5, 1.0] } # one log-rate

Targets are parameter kinds (``log_rate``, ``effect``; ``rate`` for every rate on its
natural scale) or single parameter names (``param_names``, or ``q(r-s)`` for a rate on
its natural scale). A named parameter overrides its kind. Every parameter needs a
prior: an improper flat prior is never implied.

Distributions on the unconstrained scale: ``normal(mu, sigma)``, ``student_t(df, mu,
sigma)``, ``laplace(mu, b)``. On the rate scale (positive): ``gamma(shape, rate)``,
``exponential(rate)``, ``lognormal(mu, sigma)``, ``half_normal(sigma)``. A prior stated on
a rate ``q = exp(theta)`` contributes ``log p(q) + theta`` to the log density of
``theta``, the Jacobian ``|dq/dtheta| = q`` (gradients.md, section 6).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import jax.numpy as jnp
import jax.scipy.stats as jstats
import numpy as np

__all__ = ["Prior", "PriorError"]


class PriorError(ValueError):
    """A prior is wrong; the message names the source and the field."""


# name -> (argument names, whether its support is the positive numbers)
_DISTRIBUTIONS = {
    "normal": (("mu", "sigma"), False),
    "student_t": (("df", "mu", "sigma"), False),
    "laplace": (("mu", "b"), False),
    "gamma": (("shape", "rate"), True),
    "exponential": (("rate",), True),
    "lognormal": (("mu", "sigma"), True),
    "half_normal": (("sigma",), True),
}
# Arguments that must be strictly positive.
_POSITIVE = {"sigma", "df", "b", "shape", "rate"}


def _logpdf(name: str, x, args):
    if name == "normal":
        return jstats.norm.logpdf(x, args[0], args[1])
    if name == "student_t":
        return jstats.t.logpdf(x, args[0], args[1], args[2])
    if name == "laplace":
        return jstats.laplace.logpdf(x, args[0], args[1])
    if name == "gamma":
        return jstats.gamma.logpdf(x, args[0], scale=1.0 / args[1])
    if name == "exponential":
        return jnp.log(args[0]) - args[0] * x
    if name == "lognormal":
        return jstats.norm.logpdf(jnp.log(x), args[0], args[1]) - jnp.log(x)
    if name == "half_normal":
        return math.log(2.0) + jstats.norm.logpdf(x, 0.0, args[0])
    raise AssertionError(name)


@dataclasses.dataclass(frozen=True)
class _Term:
    parameter: int
    distribution: str
    args: tuple[float, ...]
    natural: bool  # stated on exp(theta)
    field: str  # where it came from, for messages


@dataclasses.dataclass(frozen=True)
class Prior:
    """A product of independent priors, one per parameter; ``logpdf(theta)`` is jittable."""

    names: tuple[str, ...]
    terms: tuple[_Term, ...]
    source: str = "prior"

    @classmethod
    def from_table(cls, model, table: Mapping, source: str = "prior") -> Prior:
        """Build from a ``{target: {distribution: [args]}}`` table; errors name ``source``."""
        if isinstance(table, Prior):
            return table
        if not isinstance(table, Mapping):
            raise PriorError(f"{source}: expected a table of priors, got {type(table).__name__}")
        names = tuple(model.param_names)
        kinds = tuple(model.param_kinds)
        positive = tuple(model.param_positive)  # natural scale exp(theta) allowed
        natural_names = {_natural_name(n): i for i, n in enumerate(names) if positive[i]}
        by_kind: dict[str, _Term] = {}
        by_param: dict[int, _Term] = {}
        for target, spec in table.items():
            field = f"{source}: priors.{target}"
            distribution, args = _parse(spec, field)
            on_rates = _DISTRIBUTIONS[distribution][1]
            if target in names:
                i = names.index(target)
                if on_rates:
                    raise PriorError(
                        f"{field}: {distribution} is a distribution on positive numbers, but "
                        f"{target} is unconstrained; put the prior on "
                        f"{_natural_name(target)!r} instead"
                        if positive[i]
                        else f"{field}: {distribution} needs a positive parameter"
                    )
                by_param[i] = _Term(i, distribution, args, False, field)
            elif target in natural_names:
                i = natural_names[target]
                by_param[i] = _Term(i, distribution, args, True, field)
            elif target in set(kinds) | set(model.prior_kinds) or target == "rate":
                natural = target == "rate"
                if natural and not on_rates:
                    raise PriorError(
                        f"{field}: {distribution} allows negative values; a prior on the rates "
                        "needs gamma, exponential, lognormal or half_normal (or put "
                        f"{distribution} on log_rate)"
                    )
                if not natural and on_rates:
                    raise PriorError(
                        f"{field}: {distribution} is a distribution on positive numbers but "
                        f"{target} parameters are unconstrained; use normal, student_t or "
                        f"laplace, or put it on 'rate'"
                    )
                by_kind[target] = _Term(-1, distribution, args, natural, field)
            else:
                options = sorted(set(kinds) | set(model.prior_kinds) | {"rate"})
                options += list(names) + sorted(natural_names)
                raise PriorError(
                    f"{field}: unknown target {target!r}; expected one of {', '.join(options)}"
                )
        if "rate" in by_kind and "log_rate" in by_kind:
            raise PriorError(
                f"{source}: priors.rate and priors.log_rate both set a prior on the rates; keep one"
            )
        terms = []
        for i, (name, kind) in enumerate(zip(names, kinds)):
            term = by_param.get(i)
            if term is None:
                term = by_kind.get(kind) or (by_kind.get("rate") if positive[i] else None)
            if term is None:
                raise PriorError(
                    f"{source}: no prior for parameter {name!r} (kind {kind}); add e.g. "
                    f"{kind} = {{ normal = [0.0, 1.0] }} to [priors]"
                )
            terms.append(dataclasses.replace(term, parameter=i))
        return cls(names=names, terms=tuple(terms), source=source)

    def logpdf(self, theta):
        """Log prior density of ``theta`` (unconstrained), Jacobians included."""
        total = jnp.zeros((), jnp.result_type(theta.dtype, float))
        for term in self.terms:
            x = theta[term.parameter]
            if term.natural:
                total = total + _logpdf(term.distribution, jnp.exp(x), term.args) + x
            else:
                total = total + _logpdf(term.distribution, x, term.args)
        return total

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """Draws of theta from the prior, shape ``(size, num_params)``."""
        out = np.empty((size, len(self.names)))
        for term in self.terms:
            a = term.args
            d = term.distribution
            if d == "normal":
                x = rng.normal(a[0], a[1], size)
            elif d == "student_t":
                x = a[1] + a[2] * rng.standard_t(a[0], size)
            elif d == "laplace":
                x = rng.laplace(a[0], a[1], size)
            elif d == "gamma":
                x = rng.gamma(a[0], 1.0 / a[1], size)
            elif d == "exponential":
                x = rng.exponential(1.0 / a[0], size)
            elif d == "lognormal":
                x = np.exp(rng.normal(a[0], a[1], size))
            else:  # half_normal
                x = np.abs(rng.normal(0.0, a[0], size))
            out[:, term.parameter] = np.log(x) if term.natural else x
        return out

    def describe(self) -> list[str]:
        """One line per parameter, e.g. ``log q(1-2) ~ normal(-2, 2)``."""
        lines = []
        for term in self.terms:
            name = self.names[term.parameter]
            shown = _natural_name(name) if term.natural else name
            args = ", ".join(f"{v:g}" for v in term.args)
            lines.append(f"{shown} ~ {term.distribution}({args})")
        return lines


def _natural_name(name: str) -> str:
    return name[4:] if name.startswith("log ") else f"exp({name})"


def _parse(spec, field) -> tuple[str, tuple[float, ...]]:
    if not isinstance(spec, Mapping) or len(spec) != 1:
        raise PriorError(
            f"{field}: expected one distribution as {{ name = [arguments] }}, e.g. "
            f"{{ normal = [0.0, 1.0] }}; got {spec!r}"
        )
    ((distribution, args),) = spec.items()
    if distribution not in _DISTRIBUTIONS:
        raise PriorError(
            f"{field}: unknown distribution {distribution!r}; expected one of "
            f"{', '.join(_DISTRIBUTIONS)}"
        )
    wanted = _DISTRIBUTIONS[distribution][0]
    if isinstance(args, (int, float)) and not isinstance(args, bool):
        args = [args]
    if not isinstance(args, (list, tuple)) or len(args) != len(wanted):
        raise PriorError(
            f"{field}: {distribution} takes {len(wanted)} argument(s) "
            f"[{', '.join(wanted)}], got {args!r}"
        )
    values = []
    for name, value in zip(wanted, args):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise PriorError(
                f"{field}: {distribution} argument {name} must be a number, got {value!r}"
            )
        if not math.isfinite(value):
            raise PriorError(f"{field}: {distribution} argument {name} = {value} is not finite")
        if name in _POSITIVE and value <= 0:
            raise PriorError(f"{field}: {distribution} argument {name} must be > 0, got {value}")
        values.append(float(value))
    return distribution, tuple(values)
