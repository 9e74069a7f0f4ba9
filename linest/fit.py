"""Maximum likelihood with standard errors from the information matrix, for every model.

:func:`fit` minimises ``-loglik`` with scipy's L-BFGS-B (or any gradient-based scipy
method) driven by the gradient method you choose, then computes the information
matrix: the observed information ``-d^2 loglik / d theta^2`` with ``jax.hessian``
through an exact method, or the model's own (a Gaussian grid model gives the expected
(Fisher) information ``J^T J / sigma^2`` from forward-mode derivatives of its
predictions). Non-convergence, a non-positive-definite information matrix, weakly
identified parameters and the model's own concerns about the estimate (e.g. a cell
Peclet number) are reported in the result and as warnings, never silently.
"""

from __future__ import annotations

import math
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize

from linest._export import exported_jit
from linest._setup import release_compiled_programs
from linest.models.base import for_compute
from linest.models.result import FitResult
from linest.progress import Progress

__all__ = ["FitResult", "FitWarning", "fit"]


class FitWarning(UserWarning):
    """The optimiser did not converge, or the standard errors are not trustworthy."""


@exported_jit
def _value_and_grad(model, gradient, theta, statistics):
    """-loglik and its gradient; compiled once per (model, method, data shapes)."""
    return jax.value_and_grad(lambda t: -model.loglik(t, statistics, gradient))(theta)


#: A rate with a standard error above this on the log scale is weakly identified: ``fit``
#: checks the boundary and gives it a profile interval (at most WEAK_PROFILES of them).
WEAK_SE = 2.0
WEAK_PROFILES = 10

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


@exported_jit
def _information(model, theta, statistics):
    """loglik, its gradient and minus the model's information matrix (a Hessian stand-in)."""
    value, grad, information = model.information(theta, statistics)
    return value, grad, -information


#: ``hessian="auto"`` differentiates the exact gradient numerically above this many
#: parameters (see :func:`fit`).
DIFFERENCE_HESSIAN_ABOVE = 64

#: Central-difference step of the gradient, relative to max(|theta_i|, 1): (3 eps)^(1/3),
#: which balances the O(h^2) truncation against the gradient's rounding / h.
DIFFERENCE_STEP = (3 * 2.0**-52) ** (1 / 3)


@exported_jit
def _loglik_derivatives(model, gradient, theta, statistics, differences=False):
    """loglik, its gradient and its Hessian: forward over reverse, or (``differences``)
    central differences of the gradient, symmetrised; columns in batches."""

    def loglik(t):
        return model.loglik(t, statistics, gradient)

    value, grad = jax.value_and_grad(loglik)(theta)
    batch = _hessian_batch(theta, statistics)
    if differences:
        # A rate at 0 (theta = -inf) keeps a finite step: theta +- h stays -inf, its
        # column 0, as forward over reverse gives it.
        finite = jnp.isfinite(theta)
        steps = DIFFERENCE_STEP * jnp.where(finite, jnp.maximum(jnp.abs(theta), 1.0), 1.0)

        def difference(i):
            e = jnp.zeros_like(theta).at[i].set(steps[i])
            return (jax.grad(loglik)(theta + e) - jax.grad(loglik)(theta - e)) / (2 * steps[i])

        columns = jax.lax.map(difference, jnp.arange(theta.shape[0]), batch_size=batch)
        return value, grad, 0.5 * (columns + columns.T)
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


def _method_name(gradient) -> str:
    if gradient is None:
        return "default"
    return repr(gradient)


class _NonFiniteHessian(Exception):
    """The exact Hessian is not finite at a point the trust-region polish asked for."""


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
    intervals: str = "wald",
    level: float = 0.95,
    hessian: str = "auto",
    assess_model_error: bool = True,
    progress=True,
) -> FitResult:
    """Maximum-likelihood fit of ``model`` to ``data``.

    Parameters
    ----------
    model : a linest model (:class:`linest.CTMC`, :class:`linest.AdvectionDiffusion`, ...)
    data : observed data (``read_chains`` / ``read_snapshots`` output) or the model's
        statistics
    gradient : gradient method driving the optimiser (default: the model's own; for a
        CTMC one shared eigendecomposition with an exact derivative). Surrogates
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
        the model chooses the default (a CTMC: ``gradient`` if that is exact, else
        ``Eigen()``, then ``Exact()`` where ``Eigen()`` gives a non-finite result).
        Ignored by models that give their own information matrix.
    intervals : "wald" (default: estimate -/+ 1.96 se on the fitting scale) or
        "profile" (likelihood-ratio intervals for every parameter: the values where the
        maximum over the others falls chi^2_1(level) / 2 below the overall maximum).
        A rate estimated at 0 always gets a one-sided profile interval.
    level : coverage of the intervals (0.95).
    hessian : how the observed information is computed: "exact" (forward-over-reverse
        differentiation, exact to rounding), "differences" (central differences of the
        exact gradient, step (3 eps)^(1/3) max(|theta_i|, 1): relative error about 1e-10,
        two gradients per parameter instead of one forward-over-reverse pass, which costs
        about 5 gradients through a Pade Frechet derivative), or "auto" (default: exact up
        to :data:`DIFFERENCE_HESSIAN_ABOVE` parameters, differences above). The result's
        ``information`` says which was used.
    assess_model_error : estimate what the model's own approximation (a grid model's
        discretisation) does to each estimate, where the model can (``model_error``): it
        is reported beside the standard errors, with a warning naming the parameters it
        moves by more than a third of a standard error. For a grid model it costs one
        gradient on a grid twice as fine.
    progress : the optimiser's iterations with the current -2 log-likelihood and largest
        |gradient|, then the stage (information, boundary, profiles): ``True`` (default;
        a bar on a terminal or in a notebook after a second, occasional lines elsewhere),
        ``False``, ``"bar"``, ``"lines"`` or a callable (:mod:`linest.progress`)

    Returns
    -------
    FitResult, or the model's subclass of it (``model.result_class``)

    Notes
    -----
    Rates whose maximum lies at 0 (models with boundary parameters, e.g. a CTMC): when a
    log-rate drifts far below the others or is weakly identified (se > 2), the fit
    continues over rates >= 0 (L-BFGS-B with the bound, on the natural scale) and checks
    the Karush-Kuhn-Tucker conditions there: ``d loglik / dq <= 0`` for a rate at 0, the
    Newton decrement over the other parameters. "Converged" means both hold. Rates at 0
    are reported as such (theta = -inf), and the standard errors of the others come from
    the information restricted to them.
    """
    with Progress("fit", None, "iterations", progress) as bar:
        return _fit(
            model, data, gradient, theta0, optimizer, max_iterations, tol, gtol,
            information_gradient, intervals, level, hessian, assess_model_error, bar,
        )  # fmt: skip


def _fit(
    model, data, gradient, theta0, optimizer, max_iterations, tol, gtol,
    information_gradient, intervals, level, hessian, assess_model_error, bar,
) -> FitResult:  # fmt: skip
    """:func:`fit`'s work, reporting to ``bar``."""
    release_compiled_programs()
    model.check_gradient(gradient, "fit")
    if intervals not in ("wald", "profile"):
        raise ValueError(f"fit: intervals={intervals!r}; expected 'wald' or 'profile'")
    if hessian not in ("auto", "exact", "differences"):
        raise ValueError(f"fit: hessian={hessian!r}; expected 'auto', 'exact' or 'differences'")
    differences = hessian == "differences" or (
        hessian == "auto" and model.num_params > DIFFERENCE_HESSIAN_ABOVE
    )
    drive_methods, information_methods = model.fit_methods(gradient, information_gradient)
    own_information = getattr(model, "information", None)

    def derivatives(theta):
        theta = jnp.asarray(theta)
        if own_information is not None:
            return _information(model, theta, statistics)
        # A method whose value and gradient are not finite here (Eigen() refusing
        # ill-conditioned eigenvectors) would give a non-finite Hessian too: skip it before
        # paying for p Hessian columns (at 100 states that pass cost as much as the fit).
        methods = tuple(information_methods)
        for k, m in enumerate(methods[:-1]):  # the first whose value + gradient is finite
            out = _value_and_grad(model, m, theta, statistics)
            if all(np.all(np.isfinite(np.asarray(x))) for x in out):
                methods = methods[k:]
                break
        else:
            methods = methods[-1:]
        return _first_finite(
            methods, lambda m: _loglik_derivatives(model, m, theta, statistics, differences)
        )

    reported = model.statistics(data)
    statistics = for_compute(reported)
    given = theta0 is not None
    # What the start-up search finds worth a warning (a multimodal likelihood whose best
    # start was reached once) belongs with the result's other warnings, which the command
    # line prints in the summary instead of as Python warnings.
    with np.errstate(all="ignore"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FitWarning)
        theta0 = model.initial_theta(statistics) if theta0 is None else np.asarray(theta0, float)
    start_notes = [str(w.message) for w in caught if issubclass(w.category, FitWarning)]
    for w in caught:
        if not issubclass(w.category, FitWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if theta0.shape != (model.num_params,):
        raise ValueError(
            f"fit: theta0 has shape {theta0.shape}, the model has {model.num_params} parameters "
            f"({', '.join(model.param_names)})"
        )

    last = {"|gradient|": math.nan}  # the latest gradient, for the progress display

    def scipy_objective(theta):
        theta = jnp.asarray(theta)
        value, grad = _first_finite(
            drive_methods, lambda m: _value_and_grad(model, m, theta, statistics)
        )
        value, grad = float(value), np.asarray(grad, dtype=float)
        last["|gradient|"] = float(np.max(np.abs(grad), initial=0.0))
        if not np.isfinite(value) or not np.all(np.isfinite(grad)):
            # Let the line search back off rather than crash; reported below if final.
            return np.inf, np.zeros_like(grad)
        return value, grad

    if not np.all(np.isfinite(theta0)):
        bad = [n for n, t in zip(model.param_names, theta0, strict=True) if not np.isfinite(t)]
        raise FloatingPointError(
            f"fit: the starting value of {', '.join(bad)} is not finite"
            + ("" if given else " (computed from the data: check them for extreme values)")
            + "; give theta0"
        )
    model.preflight(theta0, statistics, gradient)
    notes: list[str] = list(start_notes)
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

    def iteration(intermediate_result):
        fields = {"-2LL": float(f"{2 * float(intermediate_result.fun):.10g}")} | last
        bar.update(1, **fields)

    result = scipy.optimize.minimize(
        scipy_objective, theta0, jac=True, method=optimizer, options=options, callback=iteration
    )
    theta = np.asarray(result.x, float)
    iterations, evaluations, message = int(result.nit), int(result.nfev), str(result.message)

    def assess(theta, drive_grad, free=None):
        """Exact loglik, gradient, information, and the predicted remaining gain over the
        ``free`` parameters (all by default; those not at the boundary after it). Without
        ``drive_grad`` the exact gradient is used."""
        loglik, exact_grad, hessian = derivatives(theta)
        H = -np.asarray(hessian)
        exact_grad = np.asarray(exact_grad, float)
        free = np.ones(theta.shape, bool) if free is None else free
        keep = np.flatnonzero(free)
        sub, condition, problems = _invert_information(
            H[np.ix_(keep, keep)], [model.param_names[i] for i in keep]
        )
        covariance = np.full(H.shape, np.nan)
        covariance[np.ix_(keep, keep)] = sub
        exact_grad = np.where(free, exact_grad, 0.0)
        g = (exact_grad if drive_grad is None else np.asarray(drive_grad, float))[keep]
        if np.all(np.isfinite(sub)) and sub.size:
            # Newton decrement: the log-likelihood a Newton step would still gain.
            gain = 0.5 * float(g @ sub @ g)
        else:
            gain = np.inf
        scale = _tolerance_scale(loglik)
        # A maximum: the gradient (or the Newton step's gain) small, and the information
        # positive definite (a strict maximum: else the data leave a direction flat, and the
        # point is one of many).
        ok = (
            bool(np.isfinite(loglik))
            and bool(np.all(np.isfinite(sub)))
            and (gain <= tol * scale or float(np.max(np.abs(g), initial=0.0)) <= gtol * scale)
        )
        return float(loglik), exact_grad, covariance, condition, problems, gain, ok

    bar.update(0, stage="information")
    loglik, exact_grad, covariance, condition, problems, gain, converged = assess(theta, result.jac)
    mask = np.asarray(model.boundary_mask(), bool)

    def drifting(theta):
        """Boundary parameters 10^6 below the largest: heading for 0."""
        if not mask.any():
            return np.zeros(theta.shape, bool)
        return mask & (theta < np.max(theta[mask]) - math.log(1e6))

    if not converged and not drifting(theta).any():
        # Quasi-Newton methods stall near the optimum when curvature is uneven; finish
        # with scipy's trust-region Newton method on the exact Hessian (same gradient).
        # (Not when rates drift to 0: the fit continues over rates >= 0 below.)
        def hessian_of_minus_loglik(t):
            H = -np.asarray(derivatives(t)[2], float)
            if not np.all(np.isfinite(H)):
                raise _NonFiniteHessian
            return H

        bar.update(0, stage="trust-region polish")
        try:
            polish = scipy.optimize.minimize(
                scipy_objective,
                theta,
                jac=True,
                hess=hessian_of_minus_loglik,
                method="trust-exact",
                options={"gtol": 1e-10, "maxiter": 100},
                callback=iteration,
            )
        except _NonFiniteHessian:  # keep the quasi-Newton point; reported as not converged
            polish = None
            notes.append("the trust-region polish stopped: the Hessian is not finite on its path")
        if (
            polish is not None
            and np.isfinite(polish.fun)
            and polish.fun <= result.fun + 1e-9 * abs(result.fun)
        ):
            theta = np.asarray(polish.x, float)
            message = f"{message}; then trust-exact: {polish.message}"
            iterations += int(polish.nit)
            evaluations += int(polish.nfev)
            loglik, exact_grad, covariance, condition, problems, gain, converged = assess(
                theta, polish.jac
            )
    at_boundary = np.zeros(theta.shape, bool)
    boundary_note = None
    if mask.any():
        suspect = drifting(theta)
        # A weakly identified rate (se > WEAK_SE, or no se) may be drifting to 0, unless
        # another parameter is weak too (an unbounded covariate effect makes the rate it
        # acts on weak as well: not a boundary matter).
        loose = ~(np.sqrt(np.diag(covariance)) <= WEAK_SE)
        weak = mask & loose
        if suspect.any() or (weak.any() and not (loose & ~mask).any()):
            from linest.gradients import Exact
            from linest.profile import optimise_on_boundary, to_theta

            bar.update(0, stage="rates >= 0")
            on_boundary = optimise_on_boundary(
                model, statistics, theta, (*drive_methods, Exact()), max_iterations
            )
            if on_boundary.loglik >= loglik - tol * _tolerance_scale(loglik):
                theta = to_theta(model, on_boundary.values)
                at_boundary = on_boundary.active
                iterations += on_boundary.iterations
                evaluations += on_boundary.evaluations
                message = f"{message}; then L-BFGS-B over rates >= 0: {on_boundary.message}"
                loglik, exact_grad, covariance, condition, problems, gain, converged = assess(
                    theta, None, free=~at_boundary
                )
                kkt_ok, bad = on_boundary.kkt(gtol * _tolerance_scale(loglik))
                if not kkt_ok:
                    converged = False
                    names = ", ".join(model.param_names[i] for i in bad)
                    boundary_note = (
                        f"at the boundary (rate 0) the log-likelihood still increases along "
                        f"{names}: the Karush-Kuhn-Tucker conditions fail, not a maximum"
                    )
    seconds = time.perf_counter() - start
    gradient_norm = float(np.max(np.abs(exact_grad), initial=0.0))
    if not converged and not np.isfinite(gain) and np.isfinite(loglik):
        notes.append(
            f"not converged: the optimiser stopped ({message}) with max |gradient| "
            f"{gradient_norm:.3g}, but the observed information is not positive definite: the "
            "data do not identify the model (a flat direction, below), so this point is one "
            "of many as good; more data, fewer parameters or a constraint are needed"
        )
    elif not converged:
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
    if boundary_note:
        notes.append(boundary_note)
    if iterations >= max_iterations:
        notes.append(f"the iteration limit {max_iterations} was reached")
    notes += problems
    notes += model.check_estimate(theta)
    model_error = None
    if assess_model_error and np.all(np.isfinite(covariance)) and np.all(np.isfinite(theta)):
        model_error = model.model_error(theta, statistics, covariance)
        if model_error is not None:
            note = model_error.warning(model.param_names, np.sqrt(np.diag(covariance)))
            if note is not None:
                notes.append(note)
    if not converged and np.isfinite(condition) and condition > 1e8:
        k = int(np.argmax(np.diag(covariance)))
        notes.append(
            f"{model.param_names[k]} = {theta[k]:.3g} is drifting without bound: the "
            "likelihood has no maximum in that direction (too few events to estimate it); "
            "drop or constrain that parameter"
        )
    for note in notes:
        warnings.warn(note, FitWarning, stacklevel=3)
    profile = None
    se = np.sqrt(np.diag(covariance))
    # Wald intervals mean little for a weakly identified rate (se > 2 on the log scale: a
    # factor of 2500 between the ends of its interval): those get profile intervals too,
    # up to WEAK_PROFILES of them. (Other parameters keep Wald unless intervals="profile":
    # an unbounded covariate effect would only send the search to its limits.)
    weak = mask & ~at_boundary & ~(se <= WEAK_SE)
    if intervals == "profile":
        which = np.arange(theta.size)
    else:
        which = np.flatnonzero(at_boundary)
        if 0 < weak.sum() <= WEAK_PROFILES and converged and condition <= 1e8:
            which = np.union1d(which, np.flatnonzero(weak))
        elif weak.sum() > WEAK_PROFILES:
            notes.append(
                f"{int(weak.sum())} parameters have se > {WEAK_SE} (weakly identified): their "
                "Wald intervals mean little; intervals='profile' (--intervals profile) gives "
                "likelihood-ratio ones"
            )
            warnings.warn(notes[-1], FitWarning, stacklevel=3)
    if which.size:
        from linest.gradients import Exact
        from linest.profile import Profiler

        profiler = Profiler(model, statistics, theta, loglik, (*drive_methods, Exact()), se)
        bar.update(0, stage="profile intervals")
        profile = profiler.table(which, level, progress=bar.setting)
    return model.result_class(
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
        information=(
            "expected"
            if own_information is not None
            else "observed (differences of the gradient)"
            if differences
            else "observed"
        ),
        at_boundary=at_boundary,
        profile=profile,
        level=level,
        model_error=model_error,
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
