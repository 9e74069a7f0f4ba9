"""Parameters held equal or fixed, for any model (msm's qconstraint, constraint, fixedpars).

``Constrained(model, equal=[[a, b, ...], ...], fixed={name: value})`` is itself a model
whose parameters are the free ones: one per group of equal parameters (named after its
first member) and one per parameter left alone. The likelihood is the wrapped model's at
the expanded vector::

    theta_full = where(fixed, value, theta_free[index])

so every gradient method, ``fit``, ``sample`` and the command line run it unchanged.
``linest.fit`` reports a constrained fit in the wrapped model's own terms: its result
holds the full vector (fixed entries with standard error 0, equal ones with the same
estimate) and the covariance ``J C J^T`` of the free parameters' ``C`` mapped through
the expansion's Jacobian, so every view of the model's result (intensities, hazard
ratios, ...) works as for an unconstrained fit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from linest.models.base import AbstractLinearModel

__all__ = ["Constrained"]


class Constrained(AbstractLinearModel):
    """``model`` with groups of parameters held equal and parameters held fixed.

    Parameters
    ----------
    model : any linest model
    equal : sequence of sequences of parameter names
        Each group shares one value (msm's ``qconstraint`` for log-rates, ``constraint``
        for covariate effects).
    fixed : mapping of parameter name -> value on the fitting scale (e.g. a log-rate)
        Held at that value (msm's ``fixedpars``).

    Examples
    --------
    >>> import linest
    >>> cav = linest.CTMC([1, 2, 3, 4], ["1-2", "1-4", "2-1", "2-3", "2-4", "3-2", "3-4"],
    ...                   exact=[4])
    >>> tied = linest.Constrained(cav, equal=[["log q(1-2)", "log q(1-4)"]],
    ...                           fixed={"log q(3-4)": -1.5})
    >>> tied.param_names[:2]
    ('log q(1-2) = log q(1-4)', 'log q(2-1)')
    """

    model: AbstractLinearModel
    index: tuple[int, ...] = eqx.field(static=True)  # full -> free (-1: fixed)
    values: tuple[float, ...] = eqx.field(static=True)  # full: the fixed value (0 if free)
    names: tuple[str, ...] = eqx.field(static=True)
    representative: tuple[int, ...] = eqx.field(static=True)  # free -> a full index

    def __init__(
        self,
        model: AbstractLinearModel,
        equal: Sequence[Sequence[str]] = (),
        fixed: Mapping[str, float] | None = None,
    ):
        caller = "Constrained"
        names = list(model.param_names)
        position = {name: i for i, name in enumerate(names)}
        fixed = dict(fixed or {})

        def where(name, what):
            if name not in position:
                raise ValueError(
                    f"{caller}: {what} names parameter {name!r}, which the "
                    f"{type(model).__name__} does not have; its parameters are: " + ", ".join(names)
                )
            return position[name]

        group_of = list(range(len(names)))  # each parameter its own group
        seen: set[int] = set()
        for group in equal:
            if isinstance(group, str) or len(group) < 2:
                raise ValueError(
                    f"{caller}: each group in equal must list two or more parameter names, "
                    f"got {group!r}"
                )
            members = [where(name, "equal") for name in group]
            if seen & set(members) or len(set(members)) != len(members):
                raise ValueError(f"{caller}: a parameter of {list(group)!r} is in two groups")
            seen |= set(members)
            kinds = {model.param_kinds[i] for i in members}
            if len(kinds) > 1:
                raise ValueError(
                    f"{caller}: equal group {list(group)!r} mixes kinds of parameter "
                    f"({', '.join(sorted(kinds))})"
                )
            for i in members:
                group_of[i] = members[0]
        values = [0.0] * len(names)
        is_fixed = [False] * len(names)
        for name, value in fixed.items():
            i = where(name, "fixed")
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"{caller}: fixed value of {name!r} is not a number") from None
            if not np.isfinite(value):
                raise ValueError(f"{caller}: fixed value of {name!r} is {value}")
            if i in seen:
                raise ValueError(
                    f"{caller}: {name!r} is both fixed and in an equal group; fix the group's "
                    "first member instead"
                )
            values[i], is_fixed[i] = value, True
        heads = [i for i in range(len(names)) if group_of[i] == i and not is_fixed[i]]
        free_of = {h: k for k, h in enumerate(heads)}
        self.model = model
        self.index = tuple(-1 if is_fixed[i] else free_of[group_of[i]] for i in range(len(names)))
        self.values = tuple(values)
        self.representative = tuple(heads)
        self.names = tuple(
            " = ".join(names[j] for j in range(len(names)) if group_of[j] == h) for h in heads
        )
        if not heads:
            raise ValueError(f"{caller}: every parameter is fixed; nothing to estimate")

    # ------------------------------------------------------------------ the map

    def expand(self, theta):
        """The wrapped model's full parameter vector (..., p_full) from the free one."""
        theta = jnp.asarray(theta)
        index = np.asarray(self.index)
        picked = theta[..., np.maximum(index, 0)]
        return jnp.where(index >= 0, picked, jnp.asarray(self.values, picked.dtype))

    def jacobian(self) -> np.ndarray:
        """d theta_full / d theta_free (p_full, p_free): 0/1 entries."""
        J = np.zeros((len(self.index), len(self.representative)))
        for i, k in enumerate(self.index):
            if k >= 0:
                J[i, k] = 1.0
        return J

    def describe_constraints(self) -> str:
        full = self.model.param_names
        parts = [name for name in self.names if " = " in name]
        parts += [
            f"{full[i]} fixed at {self.values[i]:g}" for i, k in enumerate(self.index) if k < 0
        ]
        return "; ".join(parts)

    # ------------------------------------------------------------------ the model contract

    @property
    def param_names(self) -> tuple[str, ...]:
        return self.names

    @property
    def param_kinds(self) -> tuple[str, ...]:
        return tuple(self.model.param_kinds[i] for i in self.representative)

    @property
    def prior_kinds(self):  # type: ignore[override]
        return self.model.prior_kinds

    @property
    def param_positive(self) -> tuple[bool, ...]:
        return tuple(self.model.param_positive[i] for i in self.representative)

    def natural_parameters(self, theta):
        return self.model.natural_parameters(self.expand(theta))

    def statistics(self, data):
        return self.model.statistics(data)

    def read_data(self, source, **columns):
        return self.model.read_data(source, **columns)  # type: ignore[attr-defined]

    def loglik(self, theta, statistics, gradient=None):
        return self.model.loglik(self.expand(theta), statistics, gradient)

    def pointwise_loglik(self, theta, statistics, *args, **kwargs):
        return self.model.pointwise_loglik(self.expand(theta), statistics, *args, **kwargs)

    def observation_labels(self, statistics):
        return self.model.observation_labels(statistics)

    def initial_theta(self, statistics) -> np.ndarray:
        """The wrapped model's starting point, averaged over each equal group."""
        full = np.asarray(self.model.initial_theta(statistics), float)
        out = np.zeros(len(self.representative))
        count = np.zeros(len(self.representative))
        for i, k in enumerate(self.index):
            if k >= 0:
                out[k] += full[i]
                count[k] += 1
        return out / count

    def check_estimate(self, theta) -> list[str]:
        """The wrapped model's concerns about the estimate (a mirror-image potential, a
        cell Peclet number above 2...), at the full parameter vector."""
        return self.model.check_estimate(np.asarray(self.expand(jnp.asarray(theta))))

    def model_error(self, theta, statistics, covariance):
        """The wrapped model's error (a discretisation) at the constrained estimate: its
        Newton step taken with the covariance ``J C J^T`` of the full parameters (so it
        moves only along the constraints), read back at each free parameter."""
        J = self.jacobian()
        full = self.model.model_error(
            np.asarray(self.expand(jnp.asarray(theta))),
            statistics,
            J @ np.asarray(covariance) @ J.T,
        )
        if full is None:
            return None
        error = np.asarray(full.error, float)[list(self.representative)]
        return dataclasses.replace(full, error=error)

    def chain_starts(self, statistics, num_chains: int, key) -> jax.Array:
        """The wrapped model's chain starts (e.g. near the best of many local maxima),
        each equal group averaged as in :meth:`initial_theta`."""
        full = self.model.chain_starts(statistics, num_chains, key)
        J = self.jacobian()
        return jnp.asarray(full) @ jnp.asarray(J / J.sum(axis=0))

    def check_gradient(self, gradient, caller: str) -> None:
        self.model.check_gradient(gradient, caller)

    def fit_methods(self, gradient, information_gradient=None):
        return self.model.fit_methods(gradient, information_gradient)

    def sampling_setup(self, gradient, devices):
        return self.model.sampling_setup(gradient, devices)

    def preflight(self, theta, statistics, gradient=None) -> None:
        self.model.preflight(self.expand(theta), statistics, gradient)

    def boundary_mask(self) -> tuple[bool, ...]:
        mask = self.model.boundary_mask()
        return tuple(bool(mask[i]) for i in self.representative)

    def loglik_natural(self, values, statistics, gradient=None):
        """The wrapped model's natural-scale likelihood; fixed boundary parameters enter as
        exp(value)."""
        mask = np.asarray(self.model.boundary_mask(), bool)
        natural = np.where(mask, np.exp(np.asarray(self.values)), np.asarray(self.values))
        values = jnp.asarray(values)
        index = np.asarray(self.index)
        picked = values[..., np.maximum(index, 0)]
        full = jnp.where(index >= 0, picked, jnp.asarray(natural, picked.dtype))
        return self.model.loglik_natural(full, statistics, gradient)

    def system_matrix(self, theta):
        return self.model.system_matrix(self.expand(theta))

    def exponent_times(self, statistics):
        return self.model.exponent_times(statistics)

    def observed_data(self, statistics):
        return self.model.observed_data(statistics)

    def describe_fit(self, statistics) -> str:
        describe = getattr(self.model, "describe_fit", None)
        head = describe(statistics) if describe else type(self.model).__name__
        return f"{head}\nconstraints: {self.describe_constraints()}"

    @property
    def result_class(self):  # type: ignore[override]
        """A constructor of the wrapped model's result in full coordinates (see module)."""
        return self._result

    def _result(self, *, model, theta, covariance, at_boundary=None, profile=None, **fields):
        J = self.jacobian()
        full_theta = np.asarray(self.expand(np.asarray(theta, float)))
        covariance = np.asarray(covariance, float)
        # Free parameters without a standard error (a rate at 0) keep NaN; the matrix
        # product would spread it to every entry.
        known = np.isfinite(np.diag(covariance))
        full_cov = J @ np.where(np.isfinite(covariance), covariance, 0.0) @ J.T
        unknown = J @ (~known).astype(float) > 0
        full_cov[unknown, :] = np.nan
        full_cov[:, unknown] = np.nan
        boundary = np.zeros(len(self.index), bool)
        full_names = self.model.param_names
        rows = {}
        for i, k in enumerate(self.index):
            if k < 0:
                continue
            boundary[i] = at_boundary is not None and bool(at_boundary[k])
            if profile is not None and self.names[k] in profile.index:
                rows[full_names[i]] = profile.loc[self.names[k]]
        if rows:
            profile = pd.DataFrame.from_dict(rows, orient="index")
            profile.index.name = "parameter"
        else:
            profile = None
        fields["message"] = (
            f"{fields.get('message', '')}; constraints: {self.describe_constraints()}"
        )
        return self.model.result_class(
            model=self.model, theta=full_theta, covariance=full_cov, at_boundary=boundary,
            profile=profile, **fields,
        )  # fmt: skip
