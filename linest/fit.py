"""Maximum likelihood with standard errors from the observed information.

:func:`fit` minimises ``-loglik`` with scipy's L-BFGS-B (or any gradient-based scipy
method) driven by the gradient method you choose, then computes the observed
information ``-d^2 loglik / d theta^2`` with ``jax.hessian`` through the exact
engine. Non-convergence, a non-positive-definite information matrix and weakly
identified parameters are reported in the result and as warnings, never silently.
"""

from __future__ import annotations

import dataclasses
import json
import time
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import scipy.optimize

from linest.engine import _check_gradient, expm
from linest.gradients import Eigen, Exact
from linest.models.base import for_compute

__all__ = ["FitResult", "FitWarning", "fit"]

Z95 = 1.959963984540054  # standard normal 97.5% quantile


class FitWarning(UserWarning):
    """The optimiser did not converge, or the standard errors are not trustworthy."""


@eqx.filter_jit
def _value_and_grad(model, gradient, theta, statistics):
    """-loglik and its gradient; compiled once per (model, method, data shapes)."""
    return jax.value_and_grad(lambda t: -model.loglik(t, statistics, gradient))(theta)


#: Memory the Hessian may use at once, in bytes; directions beyond it run in sequence.
HESSIAN_MEMORY = 2**30


def _hessian_batch(theta, statistics) -> int:
    """How many Hessian columns to compute at once.

    One forward-over-reverse direction holds a few dozen arrays the size of the data
    statistics (a (cells, n, n) stack for a CTMC); ``jax.hessian`` holds all of them at
    once, which ran out of memory at 100 states. Columns are batched to stay within
    :data:`HESSIAN_MEMORY`.
    """
    data_bytes = sum(
        np.dtype(leaf.dtype).itemsize * int(np.prod(leaf.shape))
        for leaf in jax.tree.leaves(statistics)
        if hasattr(leaf, "shape")
    )
    per_direction = 32 * max(data_bytes, 1)
    return int(min(theta.shape[0], max(1, HESSIAN_MEMORY // per_direction)))


@eqx.filter_jit
def _loglik_derivatives(model, gradient, theta, statistics):
    """loglik, its gradient and its Hessian (forward over reverse, columns in batches)."""

    def loglik(t):
        return model.loglik(t, statistics, gradient)

    value, grad = jax.value_and_grad(loglik)(theta)
    batch = _hessian_batch(theta, statistics)
    if batch >= theta.shape[0]:
        return value, grad, jax.hessian(loglik)(theta)

    def column(direction):
        return jax.jvp(jax.grad(loglik), (theta,), (direction,))[1]

    columns = jax.lax.map(column, jnp.eye(theta.shape[0], dtype=theta.dtype), batch_size=batch)
    return value, grad, columns.T


def _first_finite(methods, call):
    """``call(method)`` for the first method whose every output is finite (else the last).

    The default gradient is the shared eigendecomposition, and where that is NaN
    (eigenvectors too ill-conditioned) the exact Pade derivative. Choosing on concrete
    numbers traces and runs one branch; ``Eigen(fallback=True)``'s ``lax.cond`` traces
    both (3 s of a 6 s ``linest fit``).
    """
    for method in methods:
        out = call(method)
        if all(np.all(np.isfinite(np.asarray(x))) for x in out):
            break
    return out


def _tolerance_scale(loglik) -> float:
    """Rounding in a sum of many terms grows with its size: tolerances scale with |loglik|."""
    return max(1.0, abs(float(loglik)) / 1000)


def _exp_interval(estimate, se) -> dict[str, np.ndarray]:
    """exp(estimate) with the 95% interval exp(estimate -/+ 1.96 se) (Wald on the log scale).

    An unbounded parameter's upper end is reported as inf, without a numpy warning.
    """
    with np.errstate(over="ignore"):
        return {
            "estimate": np.exp(estimate),
            "lower": np.exp(estimate - Z95 * se),
            "upper": np.exp(estimate + Z95 * se),
        }


def _method_name(gradient) -> str:
    if gradient is None:
        return "default"
    return repr(gradient)


@dataclasses.dataclass(eq=False)
class FitResult:
    """The maximum-likelihood fit of a model: estimates, uncertainty and diagnostics.

    Attributes
    ----------
    theta : (p,) estimates on the unconstrained scale (log-rates, effects)
    covariance : (p, p) inverse observed information (NaN if it is not positive definite)
    loglik : maximised log-likelihood; ``minus2loglik`` is -2 times it
    converged : the optimiser's success flag and a small final gradient together
    iterations, evaluations : optimiser counts
    gradient_norm : max |d loglik / d theta| at the estimate, by the exact engine
    information_condition : condition number of the observed information
    """

    model: object
    statistics: object
    theta: np.ndarray
    covariance: np.ndarray
    loglik: float
    converged: bool
    iterations: int
    evaluations: int
    gradient_norm: float
    information_condition: float
    message: str
    gradient: str
    optimizer: str
    seconds: float
    warnings: list[str] = dataclasses.field(default_factory=list)

    @property
    def minus2loglik(self) -> float:
        return -2.0 * self.loglik

    @property
    def se(self) -> np.ndarray:
        return np.sqrt(np.diag(self.covariance))

    @property
    def param_names(self) -> tuple[str, ...]:
        return self.model.param_names

    # ------------------------------------------------------------------ tables

    def parameters(self) -> pd.DataFrame:
        """theta with standard errors and 95% Wald intervals (unconstrained scale)."""
        se = self.se
        return pd.DataFrame(
            {
                "estimate": self.theta,
                "se": se,
                "lower": self.theta - Z95 * se,
                "upper": self.theta + Z95 * se,
            },
            index=pd.Index(self.param_names, name="parameter"),
        )

    def intensities(self) -> pd.DataFrame:
        """Baseline intensities q_rs (at the covariate means) with 95% intervals.

        Intervals are ``exp(theta +/- 1.96 se)``: Wald on the log scale, as msm reports.
        """
        m = self.model
        R = m.num_rates
        theta, se = self.theta[:R], self.se[:R]
        names = [m.transition_name(k) for k in range(R)]
        return pd.DataFrame(
            _exp_interval(theta, se) | {"se_log": se},
            index=pd.Index(names, name="transition"),
        )

    def hazard_ratios(self) -> pd.DataFrame:
        """exp(beta) per covariate and transition with 95% intervals."""
        m = self.model
        R = m.num_rates
        beta, se = self.theta[R:], self.se[R:]
        index = pd.MultiIndex.from_tuples(
            [(m.covariates[c], m.transition_name(t)) for t, c in m.effects],
            names=["covariate", "transition"],
        )
        table = _exp_interval(beta, se)
        table["hr"] = table.pop("estimate")
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
        table = _exp_interval(value, se_log)
        return pd.DataFrame(
            {
                "estimate": table["estimate"],
                "se": table["estimate"] * se_log,  # delta method
                "lower": table["lower"],
                "upper": table["upper"],
            },
            index=pd.Index([m.labels[i] for i in transient], name="state"),
        )

    def prevalence(self, data, times) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Observed and expected numbers in each state at ``times`` (msm's prevalence.msm).

        Observed: each subject counts at time ``t`` if ``t`` is within its follow-up, or
        after it entered an absorbing state; its state is the one last observed at or
        before ``t``. Expected: the number counted at ``t`` times ``pi0 P(t)``, with
        ``pi0`` the distribution of the subjects' first observed states (taken at time 0)
        and ``P`` at the covariate means.
        """
        m = self.model
        if data.kind != "panel":
            raise ValueError("prevalence needs panel data (read_chains kind='panel')")
        times = np.atleast_1d(np.asarray(times, float))
        position = {s: i for i, s in enumerate(m.states)}
        code = np.array([position[s] for s in data.state])
        new = np.r_[True, data.subject[1:] != data.subject[:-1]]
        starts = np.flatnonzero(new)
        ends = np.r_[starts[1:], len(code)] - 1
        absorbing = np.isin(np.arange(m.num_states), m.absorbing)
        observed = np.zeros((len(times), m.num_states))
        for first, last in zip(starts, ends):
            t_sub = data.time[first : last + 1]
            k = np.searchsorted(t_sub, times, side="right") - 1
            inside = (k >= 0) & ((times <= t_sub[-1]) | absorbing[code[last]])
            states = code[first + np.clip(k, 0, None)]
            np.add.at(observed, (np.flatnonzero(inside), states[inside]), 1)
        pi0 = np.bincount(code[starts], minlength=m.num_states) / len(starts)
        totals = observed.sum(axis=1)
        expected = np.stack(
            [totals[i] * pi0 @ self.pmatrix(t).to_numpy() for i, t in enumerate(times)]
        )
        labels = list(m.labels)
        index = pd.Index(times, name="time")
        return (
            pd.DataFrame(observed, index=index, columns=labels),
            pd.DataFrame(expected, index=index, columns=labels),
        )

    def summary(self) -> str:
        """An msm-like report: intensities with 95% intervals, hazard ratios, -2LL."""
        st = self.statistics
        lines = [
            f"CTMC fit: {st.num_subjects} subjects, {st.num_intervals} intervals, "
            f"{st.num_cells} distinct (covariate pattern, time step) cells",
            f"gradient {self.gradient}, optimiser {self.optimizer}: "
            f"{'converged' if self.converged else 'NOT CONVERGED'} in {self.iterations} "
            f"iterations ({self.evaluations} evaluations, {self.seconds:.3f} s), "
            f"max |gradient| {self.gradient_norm:.2e}",
            "",
            "Transition intensities"
            + (" (baseline, at the covariate means)" if self.model.covariates else "")
            + " with 95% intervals:",
        ]
        for name, row in self.intensities().iterrows():
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
        lines += ["", f"-2 log-likelihood: {self.minus2loglik:.6f}"]
        for text in self.warnings:
            lines.append(f"WARNING: {text}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def to_dict(self) -> dict:
        """Plain-Python view for JSON output."""

        def table(frame):
            out = frame.reset_index()
            for column in out.columns:
                if isinstance(out[column].iloc[0] if len(out) else None, tuple):
                    out[column] = out[column].map(str)
            return json.loads(out.to_json(orient="records"))

        result = {
            "minus2loglik": self.minus2loglik,
            "loglik": self.loglik,
            "converged": self.converged,
            "iterations": self.iterations,
            "evaluations": self.evaluations,
            "gradient_norm": self.gradient_norm,
            "information_condition": self.information_condition,
            "message": self.message,
            "gradient": self.gradient,
            "optimizer": self.optimizer,
            "seconds": self.seconds,
            "warnings": list(self.warnings),
            "parameters": table(self.parameters()),
            "intensities": table(self.intensities()),
        }
        if self.model.effects:
            result["hazard_ratios"] = table(self.hazard_ratios())
        return result


def fit(
    model,
    data,
    gradient=None,
    theta0=None,
    *,
    optimizer: str = "L-BFGS-B",
    max_iterations: int = 2000,
    tol: float = 1e-8,
    gtol: float = 1e-6,
    information_gradient=None,
) -> FitResult:
    """Maximum-likelihood fit of ``model`` to ``data``.

    Parameters
    ----------
    model : a linest model (e.g. :class:`linest.models.CTMC`)
    data : observed data (``read_chains`` output) or the model's statistics
    gradient : gradient method driving the optimiser (default: the model's own,
        for a CTMC one shared eigendecomposition with an exact derivative). Surrogates
        are allowed: the optimum is then where the *surrogate* gradient vanishes, and
        the result reports the exact gradient norm there.
    theta0 : starting point (default: the model's crude estimates)
    optimizer : a scipy.optimize.minimize method that uses gradients
    max_iterations : iteration limit
    tol, gtol : with ``scale = max(1, |loglik| / 1000)`` (rounding in a sum of many
        terms grows with its size), the fit counts as converged when a Newton step from
        the estimate would gain at most ``tol * scale`` in log-likelihood
        (``g' I^-1 g / 2``, with ``I`` the observed information), or when
        ``max |d loglik/d theta| <= gtol * scale``
    information_gradient : exact method for the observed information (``jax.hessian``);
        default ``gradient`` if that is exact, else ``Eigen()``, then ``Exact()`` where
        ``Eigen()`` gives a non-finite result

    Returns
    -------
    FitResult
    """
    if gradient is not None:
        _check_gradient(gradient, "fit")
    if information_gradient is None and isinstance(gradient, (Exact, Eigen)):
        information_gradient = gradient
    default = [Eigen(), Exact()]  # see _first_finite
    information_methods = [information_gradient] if information_gradient is not None else default
    drive_methods = [gradient] if gradient is not None else default

    def derivatives(theta):
        theta = jnp.asarray(theta)
        return _first_finite(
            information_methods, lambda m: _loglik_derivatives(model, m, theta, statistics)
        )

    reported = model.statistics(data)
    statistics = for_compute(reported)
    theta0 = model.initial_theta(statistics) if theta0 is None else np.asarray(theta0, float)
    if theta0.shape != (model.num_params,):
        raise ValueError(
            f"fit: theta0 has shape {theta0.shape}, the model has {model.num_params} parameters "
            f"({', '.join(model.param_names)})"
        )

    def scipy_objective(theta):
        theta = jnp.asarray(theta)
        value, grad = _first_finite(
            drive_methods, lambda m: _value_and_grad(model, m, theta, statistics)
        )
        value, grad = float(value), np.asarray(grad, dtype=float)
        if not np.isfinite(value) or not np.all(np.isfinite(grad)):
            # Let the line search back off rather than crash; reported below if final.
            return np.inf, np.zeros_like(grad)
        return value, grad

    notes: list[str] = []
    start = time.perf_counter()
    value0, _ = scipy_objective(theta0)
    if not np.isfinite(value0):
        raise FloatingPointError(
            "fit: the log-likelihood is not finite at the starting point "
            f"theta0 = {np.round(theta0, 4).tolist()}; give a different theta0"
        )
    options = {"maxiter": max_iterations}
    if optimizer.upper() == "L-BFGS-B":
        options |= {"ftol": 1e-15, "gtol": 1e-10, "maxcor": 20}
    elif optimizer.upper() == "BFGS":
        options |= {"gtol": 1e-8}
    result = scipy.optimize.minimize(
        scipy_objective, theta0, jac=True, method=optimizer, options=options
    )
    theta = np.asarray(result.x, float)
    iterations, evaluations, message = int(result.nit), int(result.nfev), str(result.message)

    def assess(theta, drive_grad):
        """Exact loglik, gradient, information, and the predicted remaining gain."""
        loglik, exact_grad, hessian = derivatives(theta)
        H = -np.asarray(hessian)
        covariance, condition, problems = _invert_information(H, model.param_names)
        drive_grad = np.asarray(drive_grad, float)
        if np.all(np.isfinite(covariance)) and covariance.size:
            # Newton decrement: the log-likelihood a Newton step would still gain.
            gain = 0.5 * float(drive_grad @ covariance @ drive_grad)
        else:
            gain = np.inf
        scale = _tolerance_scale(loglik)
        ok = bool(np.isfinite(loglik)) and (
            gain <= tol * scale or float(np.max(np.abs(drive_grad), initial=0.0)) <= gtol * scale
        )
        return float(loglik), np.asarray(exact_grad), covariance, condition, problems, gain, ok

    loglik, exact_grad, covariance, condition, problems, gain, converged = assess(theta, result.jac)
    if not converged:
        # Quasi-Newton methods stall near the optimum when curvature is uneven; finish
        # with scipy's trust-region Newton method on the exact Hessian (same gradient).
        def hessian_of_minus_loglik(t):
            H = derivatives(t)[2]
            return -np.asarray(H)

        polish = scipy.optimize.minimize(
            scipy_objective,
            theta,
            jac=True,
            hess=hessian_of_minus_loglik,
            method="trust-exact",
            options={"gtol": 1e-10, "maxiter": 100},
        )
        if np.isfinite(polish.fun) and polish.fun <= result.fun + 1e-9 * abs(result.fun):
            theta = np.asarray(polish.x, float)
            message = f"{message}; then trust-exact: {polish.message}"
            iterations += int(polish.nit)
            evaluations += int(polish.nfev)
            loglik, exact_grad, covariance, condition, problems, gain, converged = assess(
                theta, polish.jac
            )
    seconds = time.perf_counter() - start
    gradient_norm = float(np.max(np.abs(exact_grad), initial=0.0))
    if not converged:
        notes.append(
            f"the optimiser stopped ({message}) where a Newton step would still gain "
            f"{gain:.3g} in log-likelihood (max |gradient| {gradient_norm:.3g}): not at a "
            "maximum; the estimates and standard errors are not trustworthy"
        )
    else:
        exact_gain = (
            0.5 * float(exact_grad @ covariance @ exact_grad)
            if np.all(np.isfinite(covariance))
            else np.nan
        )
        if exact_gain > tol * _tolerance_scale(loglik):
            notes.append(
                f"the optimiser converged for the {_method_name(gradient)} gradient, but the "
                f"exact gradient there (max |gradient| {gradient_norm:.3g}) says the exact "
                f"maximum is about {exact_gain:.3g} higher in log-likelihood: the approximate "
                "gradient moved the optimum"
            )
    if iterations >= max_iterations:
        notes.append(f"the iteration limit {max_iterations} was reached")
    notes += problems
    if not converged and np.isfinite(condition) and condition > 1e8:
        k = int(np.argmax(np.diag(covariance)))
        notes.append(
            f"{model.param_names[k]} = {theta[k]:.3g} is drifting without bound: the "
            "likelihood has no maximum in that direction (too few events to estimate it); "
            "drop or constrain that parameter"
        )
    for note in notes:
        warnings.warn(note, FitWarning, stacklevel=2)
    return FitResult(
        model=model,
        statistics=reported,
        theta=theta,
        covariance=covariance,
        loglik=loglik,
        converged=converged,
        iterations=iterations,
        evaluations=evaluations,
        gradient_norm=gradient_norm,
        information_condition=condition,
        message=message,
        gradient=_method_name(gradient),
        optimizer=optimizer,
        seconds=seconds,
        warnings=notes,
    )


def _invert_information(H, names) -> tuple[np.ndarray, float, list[str]]:
    p = H.shape[0]
    if p == 0:
        return np.zeros((0, 0)), 1.0, []
    if not np.all(np.isfinite(H)):
        return np.full((p, p), np.nan), np.inf, ["the observed information is not finite"]
    H = (H + H.T) / 2
    eigenvalues, vectors = np.linalg.eigh(H)
    condition = float(eigenvalues[-1] / eigenvalues[0]) if eigenvalues[0] > 0 else np.inf
    problems = []
    if eigenvalues[0] <= 0:
        worst = names[int(np.argmax(np.abs(vectors[:, 0])))]
        problems.append(
            "the observed information is not positive definite (smallest eigenvalue "
            f"{eigenvalues[0]:.3g}, mostly along {worst}): not a strict maximum, so no "
            "standard errors"
        )
        return np.full((p, p), np.nan), condition, problems
    covariance = (vectors / eigenvalues) @ vectors.T
    if condition > 1e8:
        worst = names[int(np.argmax(np.diag(covariance)))]
        problems.append(
            f"the observed information is ill-conditioned (condition number {condition:.3g}): "
            f"{worst} is weakly identified (se {np.sqrt(covariance.max()):.3g}); its interval "
            "is not reliable"
        )
    return covariance, condition, problems
