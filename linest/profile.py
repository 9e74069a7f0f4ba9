"""Maxima on the boundary of rate space, and profile-likelihood intervals.

A rate estimated on the log scale cannot reach 0: when the maximum has a rate at 0 the
log-rate drifts towards -infinity, its gradient vanishes (``d/d log q = q d/dq``) and a
small gradient says nothing about optimality. For models that give the likelihood with
rates on their natural scale (:meth:`AbstractLinearModel.loglik_natural`), the functions
here optimise there with the bound ``q >= 0`` (scipy's L-BFGS-B), check the
Karush-Kuhn-Tucker conditions (``d loglik / d q <= 0`` for a rate at 0, ``= 0`` for the
others), and give likelihood-ratio (profile) intervals: two-sided for interior
parameters, one-sided ``[0, upper]`` for a rate at 0, where the likelihood ratio
statistic is a 50:50 mixture of chi^2_0 and chi^2_1 (Self and Liang 1987), so that a
95% upper limit is where it reaches the chi^2_1 90% quantile (2.706).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import scipy.optimize
import scipy.special

from linest._export import exported_jit
from linest.fit import _first_finite, _value_and_grad

__all__ = ["BoundaryFit", "Profiler", "optimise_on_boundary"]


def _chi2_1_quantile(p: float) -> float:
    """The p quantile of chi^2 with 1 degree of freedom, the square of N(0, 1)'s
    (1 + p) / 2 quantile (scipy.special: scipy.stats costs 0.4 s of start-up)."""
    return float(scipy.special.ndtri(0.5 + p / 2)) ** 2


@exported_jit
def _natural_value_and_grad(model, gradient, values, statistics):
    """-loglik and its gradient with the boundary parameters on their natural scale."""
    return jax.value_and_grad(lambda v: -model.loglik_natural(v, statistics, gradient))(values)


def to_natural(model, theta) -> np.ndarray:
    """theta with the boundary parameters exponentiated (-inf -> 0)."""
    mask = np.asarray(model.boundary_mask(), bool)
    theta = np.asarray(theta, float)
    with np.errstate(over="ignore"):
        return np.where(mask, np.exp(theta), theta)


def to_theta(model, values) -> np.ndarray:
    """Natural values back to theta (0 -> -inf)."""
    mask = np.asarray(model.boundary_mask(), bool)
    values = np.asarray(values, float)
    with np.errstate(divide="ignore"):
        return np.where(mask, np.log(np.where(mask, values, 1.0)), values)


class _Objective:
    """-loglik and gradient in scaled natural coordinates ``u = values / scale`` (the
    boundary parameters; the others as theta with scale 1), or in theta when the model
    has no boundary parameters."""

    def __init__(self, model, statistics, methods, scale):
        self.model = model
        self.statistics = statistics
        self.methods = tuple(methods)
        self.scale = np.asarray(scale, float)
        self.natural = bool(np.any(model.boundary_mask()))
        self.calls = 0

    def __call__(self, u):
        self.calls += 1
        v = jnp.asarray(np.asarray(u, float) * self.scale)
        kernel = _natural_value_and_grad if self.natural else _value_and_grad
        value, grad = _first_finite(
            self.methods, lambda m: kernel(self.model, m, v, self.statistics)
        )
        value, grad = float(value), np.asarray(grad, float) * self.scale
        if not np.isfinite(value) or not np.all(np.isfinite(grad)):
            return np.inf, np.zeros_like(grad)
        return value, grad


def _scale_for(model, values, statistics) -> np.ndarray:
    """Natural-coordinate scale: each rate's own size, but not below 1e-3 of the median
    rate among those not vanishing (a rate near 0 still moves on the scale of the
    others), nor below 1e-6 of the data's own rate scale (the median starting rate): when
    every rate heads for 0, the others give no scale."""
    mask = np.asarray(model.boundary_mask(), bool)
    q = np.asarray(values, float)[mask]
    largest = float(np.max(q, initial=0.0))
    alive = q[q > 1e-6 * largest]
    typical = float(np.median(alive)) if alive.size else 1.0
    with np.errstate(all="ignore"):
        start = to_natural(model, model.initial_theta(statistics))[mask]
    start = start[np.isfinite(start) & (start > 0)]
    if start.size:
        typical = max(typical, 1e-3 * float(np.median(start)))
    return np.where(mask, np.maximum(np.asarray(values, float), 1e-3 * typical), 1.0)


def _minimise(objective, u0, bounds, max_iterations=2000):
    return scipy.optimize.minimize(
        objective,
        u0,
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options={"ftol": 1e-15, "gtol": 1e-10, "maxcor": 20, "maxiter": max_iterations},
    )


@dataclasses.dataclass
class BoundaryFit:
    """The maximum over rates >= 0 and its optimality check."""

    values: np.ndarray  # natural boundary parameters, the others as theta
    loglik: float
    gradient: np.ndarray  # d loglik / d values
    active: np.ndarray  # bool: a boundary parameter at 0
    scale: np.ndarray
    iterations: int
    evaluations: int
    message: str

    def kkt(self, tolerance: float) -> tuple[bool, list[int]]:
        """For a rate at 0: ``q_typical d loglik/dq <= tolerance`` (moving it off 0 gains
        nothing). Returns (holds, problems); the free parameters are checked by the
        caller (the Newton decrement on them)."""
        scaled = self.gradient * self.scale
        bad = np.flatnonzero(self.active & (scaled > tolerance))
        return not bad.size, [int(i) for i in bad]


def optimise_on_boundary(model, statistics, theta, methods, max_iterations=2000) -> BoundaryFit:
    """Maximise the likelihood over rates >= 0, from ``theta`` (the log-scale fit)."""
    mask = np.asarray(model.boundary_mask(), bool)
    values0 = to_natural(model, theta)
    scale = _scale_for(model, values0, statistics)
    objective = _Objective(model, statistics, methods, scale)
    bounds = [(0.0, None) if m else (None, None) for m in mask]
    result = _minimise(objective, values0 / scale, bounds, max_iterations)
    values = np.asarray(result.x, float) * scale
    values = np.where(mask, np.maximum(values, 0.0), values)
    value, grad = objective(values / scale)
    # L-BFGS-B stops on a relative change of f below rounding while a rate it drives to 0
    # is still 1e-15 or so above it: put such rates (the likelihood decreasing in them)
    # at 0, keep that if it loses nothing, and finish the others from there.
    snap = mask & (values > 0) & (values < 1e-8 * scale) & (-np.asarray(grad) <= 0)
    if snap.any():
        snapped = np.where(snap, 0.0, values)
        polish = _minimise(objective, snapped / scale, bounds, max_iterations)
        candidate = np.where(mask, np.maximum(np.asarray(polish.x) * scale, 0.0), polish.x * scale)
        candidate = np.where(snap & (candidate < 1e-8 * scale), 0.0, candidate)
        c_value, c_grad = objective(candidate / scale)
        if c_value <= value + 1e-12 * max(1.0, abs(value)):
            values, value, grad = candidate, c_value, c_grad
            result.nit += polish.nit
    return BoundaryFit(
        values=values,
        loglik=-float(value),
        gradient=-np.asarray(grad) / scale,
        active=mask & (values == 0.0),
        scale=scale,
        iterations=int(result.nit),
        evaluations=objective.calls,
        message=str(result.message),
    )


class Profiler:
    """Profile-likelihood intervals: for each parameter the values where the maximum
    over the others falls ``chi^2_1(level) / 2`` below the overall maximum (one-sided,
    ``chi^2_1(2 level - 1) / 2``, for a rate at 0)."""

    def __init__(self, model, statistics, theta, loglik, methods, se=None):
        self.model = model
        self.statistics = statistics
        self.mask = np.asarray(model.boundary_mask(), bool)
        self.natural = bool(self.mask.any())
        self.theta = np.asarray(theta, float)
        self.values = to_natural(model, theta) if self.natural else self.theta.copy()
        self.loglik = float(loglik)
        self.scale = (
            _scale_for(model, self.values, statistics) if self.natural else np.ones_like(self.theta)
        )
        self.objective = _Objective(model, statistics, methods, self.scale)
        self.se = np.full(self.theta.shape, np.nan) if se is None else np.asarray(se, float)
        self._gradient = None  # d loglik / d values at the estimate, when first needed

    def _slope(self, index: int) -> float:
        """d loglik / d (natural parameter) at the estimate."""
        if self._gradient is None:
            _, grad = self.objective(self.values / self.scale)
            self._gradient = -np.asarray(grad) / self.scale
        return float(self._gradient[index])

    def _bounds(self, index, value):
        out = []
        for j, m in enumerate(self.mask):
            if j == index:
                out.append((value / self.scale[j],) * 2)
            else:
                out.append((0.0, None) if m and self.natural else (None, None))
        return out

    def maximum(self, index: int, value: float, start=None) -> tuple[float, np.ndarray]:
        """max loglik with parameter ``index`` held at ``value`` (natural for a rate)."""
        u0 = (self.values if start is None else start) / self.scale
        u0 = u0.copy()
        u0[index] = value / self.scale[index]
        result = _minimise(self.objective, u0, self._bounds(index, value))
        return -float(result.fun), np.asarray(result.x, float) * self.scale

    def _crossing(self, index, target, inner, outer, to_value, start):
        """The point between ``inner`` (profile >= target) and ``outer`` (below) where the
        profile equals target, in the coordinate ``to_value`` maps to a parameter value."""
        state = {"start": start}

        def f(x):
            value, values = self.maximum(index, to_value(x), state["start"])
            state["start"] = values
            return value - target

        try:
            root = scipy.optimize.brentq(f, inner, outer, xtol=1e-6, full_output=False)
        except ValueError:  # no sign change: the profile at ``inner`` is below the level too
            return math.nan  # (the fit is not at the maximum: its check says so)
        return float(root)  # type: ignore[arg-type]  (a float without full_output)

    def interval(self, index: int, level: float = 0.95) -> tuple[float, float, str]:
        """(lower, upper, kind) on the theta scale (log for a rate; -inf means 0)."""
        at_zero = self.natural and self.mask[index] and self.values[index] == 0.0
        if at_zero:
            drop = _chi2_1_quantile(2 * level - 1) / 2
            target = self.loglik - drop
            # First guess from the slope at 0 (the profile is close to linear there, with
            # slope d loglik/dq <= 0): where that line has fallen by ``drop``.
            slope = self._slope(index)
            step = self.scale[index]
            if slope < 0:
                step = float(np.clip(drop / -slope, 1e-3 * step, 1e3 * step))
            inner, start = 0.0, self.values
            for _ in range(60):
                value, values = self.maximum(index, step, start)
                if value < target:
                    upper = self._crossing(index, target, inner, step, lambda x: x, values)
                    with np.errstate(divide="ignore"):  # a crossing at 0 is a rate pinned there
                        log_upper = float(np.log(upper))
                    return -math.inf, log_upper, "profile, one-sided (rate at 0)"
                inner, start, step = step, values, 2 * step
            return -math.inf, math.inf, "profile, one-sided (rate at 0): unbounded"
        drop = _chi2_1_quantile(level) / 2
        target = self.loglik - drop
        centre = self.theta[index]
        se = self.se[index]
        step = min(float(se), 1.0) if np.isfinite(se) and se > 0 else 0.5
        rate = self.natural and self.mask[index]

        def to_value(x):
            return math.exp(x) if rate else x

        ends = []
        for sign in (-1.0, 1.0):
            if sign < 0 and rate:
                value, _ = self.maximum(index, 0.0)
                if value >= target:  # the interval reaches the boundary
                    ends.append(-math.inf)
                    continue
            inner, start, width = centre, self.values, step
            end = sign * math.inf
            for _ in range(40):
                x = centre + sign * width
                value, values = self.maximum(index, to_value(x), start)
                if value < target:
                    end = self._crossing(index, target, inner, x, to_value, start)
                    break
                inner, start, width = x, values, 2 * width
                if width > 60:
                    break
            ends.append(end)
        # A rate's lower end at 0 (-inf on the log scale) is a bound reached, not a
        # failure; an infinite upper end always is.
        lower_ok = np.isfinite(ends[0]) or (rate and ends[0] == -math.inf)
        kind = "profile" if lower_ok and np.isfinite(ends[1]) else "profile: unbounded"
        if any(math.isnan(end) for end in ends):
            kind = "profile: not found (the profile never crossed its level: no maximum here)"
        return ends[0], ends[1], kind

    def table(self, indices=None, level: float = 0.95, progress=False) -> pd.DataFrame:
        """Profile intervals of the parameters ``indices`` (all by default), one row each;
        ``progress`` as everywhere (:mod:`linest.progress`)."""
        from linest.progress import Progress

        names = self.model.param_names
        indices = list(range(len(names)) if indices is None else indices)
        rows = {}
        with Progress("profile", len(indices), "parameters", progress) as bar:
            for i in indices:
                bar.update(0, parameter=names[i])  # the one under way
                lower, upper, kind = self.interval(i, level)
                rows[names[i]] = {"lower": lower, "upper": upper, "method": kind}
                bar.update(1)
        frame = pd.DataFrame.from_dict(rows, orient="index")
        frame.index.name = "parameter"
        return frame
