"""Compare gradient methods on the user's own loss: error against a reference, and time."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from linest.engine import Gradient
from linest.gradients import Adjoint, Eigen, Exact, SeriesSurrogate, Surrogate
from linest.gradients.coarse import CoarseGrid

DEFAULT_METHODS: tuple[Gradient, ...] = (
    Exact(),
    Eigen(fallback=True),
    Surrogate("left"),
    Surrogate("midpoint"),
    Surrogate("gauss", nodes=2),
    Surrogate("gauss", nodes=4),
    Surrogate("gauss", nodes=2, max_norm=0.5),
    SeriesSurrogate(),
)


def compare_gradients(
    loss: Callable[[jax.Array, Gradient], jax.Array],
    theta,
    methods: Sequence[Gradient] = DEFAULT_METHODS,
    reference: Gradient = Exact(),
    repeats: int = 7,
) -> list[dict]:
    """Gradient of ``loss(theta, gradient)`` with each method, against ``reference``.

    Returns one dict per method: ``method``, ``value`` (identical across methods: only
    derivatives are approximated), ``relative_error`` (||g - g_ref|| / ||g_ref||),
    ``cosine`` (of the angle to g_ref: what matters for an optimiser or a leapfrog
    step), ``milliseconds`` (median of ``repeats`` jitted value-and-gradient calls,
    compilation excluded) and ``finite``.
    """
    theta = jnp.asarray(theta)
    compiled = {}  # a method listed again (the reference among the methods) compiles once

    def run(gradient):
        try:
            fn = compiled[gradient]
        except (KeyError, TypeError):  # TypeError: a method that is not hashable
            fn = jax.jit(jax.value_and_grad(lambda th: loss(th, gradient)))
            try:
                compiled[gradient] = fn
            except TypeError:
                pass
        value, grad = jax.block_until_ready(fn(theta))
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            jax.block_until_ready(fn(theta))
            times.append(time.perf_counter() - start)
        return float(value), np.asarray(grad), float(np.median(times)) * 1e3

    _, g_ref, _ = run(reference)
    denom = float(np.linalg.norm(g_ref)) or 1.0
    rows = []
    for method in methods:
        value, g, ms = run(method)
        finite = bool(np.all(np.isfinite(g)))
        rows.append(
            dict(
                method=describe(method),
                value=value,
                relative_error=float(np.linalg.norm(g - g_ref)) / denom if finite else float("nan"),
                cosine=float(np.vdot(g, g_ref).real / (np.linalg.norm(g) * denom))
                if finite
                else float("nan"),
                milliseconds=ms,
                finite=finite,
            )
        )
    return rows


def describe(method: Gradient) -> str:
    if isinstance(method, Surrogate):
        nodes = f", nodes={method.nodes}" if method.rule == "gauss" else ""
        scaled = f", max_norm={method.max_norm:g}" if method.max_norm is not None else ""
        return f"Surrogate({method.rule}{nodes}{scaled})"
    if isinstance(method, Eigen) and method.fallback:
        return "Eigen(fallback)"
    if isinstance(method, Eigen) and method.structure != "general":
        return f"Eigen({method.structure})"
    if isinstance(method, CoarseGrid):
        return f"CoarseGrid({method.factor})"
    if isinstance(method, Adjoint):
        adjoint = (
            "RecursiveCheckpointAdjoint"
            if method.adjoint is None
            else type(method.adjoint).__name__
        )
        return f"Adjoint({adjoint})"
    return type(method).__name__


def format_table(rows: list[dict]) -> str:
    lines = [
        f"{'method':<40} {'value':>14} {'rel. error':>11} {'cosine':>10} {'ms/grad':>8}",
        "-" * 87,
    ]
    for r in rows:
        lines.append(
            f"{r['method']:<40} {r['value']:>14.6f} {r['relative_error']:>11.2e} "
            f"{r['cosine']:>10.6f} {r['milliseconds']:>8.2f}"
            + ("" if r["finite"] else "  NON-FINITE")
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- a whole model

#: Methods ``linest compare`` tries on a model (the model refuses those that do not apply).
CANDIDATES: tuple[str, ...] = (
    "default",
    "exact",
    "eigen",
    "autodiff",
    "adjoint",
    "surrogate-left",
    "surrogate-gauss-2",
    "surrogate-gauss-4",
    "surrogate-gauss-8",
)


def _usable(model, names: Sequence[str]) -> list[tuple[str, object]]:
    """(name, method) for each name the model accepts; "default" is the model's own."""
    from linest.engine import gradient_from_string

    out = []
    for name in names:
        method = None if name == "default" else gradient_from_string(name)
        try:
            model.check_gradient(method, "compare")
        except (ValueError, TypeError):
            continue
        out.append((name, method))
    return out


def truth_theta(model, truth: dict, source: str = "truth") -> np.ndarray:
    """theta from a known truth: ``{"theta": [...]}`` (the fitting scale), or a value per
    parameter by its name (``"log ka"``) or its natural name (``"ka"``, exponentiated
    parameters given on their natural scale)."""
    names = model.param_names
    if "theta" in truth:
        theta = np.asarray(truth["theta"], float)
        if theta.shape != (len(names),):
            raise ValueError(
                f"{source}: theta has {theta.size} values; the model has {len(names)} parameters"
            )
        return theta
    out, missing = [], []
    for name in names:
        if name in truth:
            out.append(float(truth[name]))
        elif name.startswith("log ") and name[4:] in truth:
            out.append(math.log(float(truth[name[4:]])))
        else:
            missing.append(name)
    if missing:
        raise ValueError(
            f"{source}: no value for {missing}; give 'theta' (a list) or a value per parameter"
        )
    return np.asarray(out)


def compare_model(
    model,
    data,
    methods: Sequence[str] = CANDIDATES,
    prior=None,
    truth=None,
    num_prior_draws: int = 2,
    repeats: int = 5,
    seed: int = 0,
    optimise: bool = True,
    progress=True,
) -> dict:
    """Every gradient method the model accepts, at several parameter points.

    Points: the maximum-likelihood estimate (fitted with the model's default method),
    ``num_prior_draws`` draws from ``prior`` (a :class:`linest.Prior` or a table) when
    given, the ``truth`` (theta) of simulated data when given, and the estimate moved by
    two standard errors in a random direction. At each
    point and for each method: the relative error and cosine of the gradient against the
    model's default (exact) method, and the median time of value + gradient and its
    ratio to the value alone. With ``optimise``, the fit each method drives from the
    model's starting point: converged or not, iterations, and its -2 log-likelihood
    gap to the default fit (positive: worse). ``progress``: the points and methods done,
    then the fits (:mod:`linest.progress`).

    Returns ``{"points": [...], "gradients": [rows], "fits": [rows]}``.
    """
    import warnings

    import equinox as eqx

    from linest._setup import release_compiled_programs

    release_compiled_programs()

    from linest.fit import fit
    from linest.models.base import for_compute
    from linest.priors import Prior
    from linest.progress import Progress

    statistics = for_compute(model.statistics(data))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference_fit = fit(model, statistics, progress=progress)
    points = [("MLE", np.asarray(reference_fit.theta))]
    rng = np.random.default_rng(seed)
    if prior is not None:
        prior = prior if isinstance(prior, Prior) else Prior.from_table(model, prior)
        for k, draw in enumerate(prior.sample(rng, num_prior_draws)):
            points.append((f"prior draw {k + 1}", draw))
    if truth is not None:
        points.append(("truth", np.asarray(truth, float)))
    se = np.where(np.isfinite(reference_fit.se), reference_fit.se, 0.1)
    direction = rng.normal(size=se.shape)
    direction /= np.linalg.norm(direction) or 1.0
    points.append(("MLE + 2 se", reference_fit.theta + 2 * se * direction * np.sqrt(se.size)))

    usable = _usable(model, methods)

    @eqx.filter_jit
    def value(theta, statistics):
        return model.loglik(theta, statistics)

    def compiled(method):
        @eqx.filter_jit
        def value_and_grad(theta, statistics):
            return jax.value_and_grad(lambda t: model.loglik(t, statistics, method))(theta)

        return value_and_grad

    functions = {name: compiled(method) for name, method in usable}
    rows = []
    bar = Progress("compare", len(points) * len(usable), "gradients", progress)
    for label, theta in points:
        theta = jnp.asarray(theta)
        forward_ms = _median_ms(value, (theta, statistics), repeats)
        reference = None
        for name, _ in usable:
            bar.update(0, point=label, method=name)
            value_and_grad = functions[name]
            out = value_and_grad(theta, statistics)
            ms = _median_ms(value_and_grad, (theta, statistics), repeats)
            g = np.asarray(out[1])
            if reference is None:
                reference = g  # the default method comes first
            finite = bool(np.all(np.isfinite(g)))
            norm = float(np.linalg.norm(reference)) or 1.0
            rows.append(
                {
                    "point": label,
                    "method": name,
                    "loglik": float(out[0]),
                    "relative_error": float(np.linalg.norm(g - reference)) / norm
                    if finite
                    else float("nan"),
                    "cosine": float(g @ reference / (np.linalg.norm(g) * norm))
                    if finite and np.linalg.norm(g) > 0
                    else float("nan"),
                    "milliseconds": ms,
                    "ratio_to_forward": ms / forward_ms if forward_ms > 0 else float("nan"),
                }
            )
            bar.update(1)
    bar.close()
    fits = []
    if optimise:
        fitting = Progress("compare fits", len(usable), "fits", progress)
        for name, method in usable:
            fitting.update(0, method=name)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                start = time.perf_counter()
                try:
                    result = fit(model, statistics, gradient=method, progress=False)
                except (ValueError, FloatingPointError) as error:
                    fits.append({"method": name, "error": str(error)})
                    fitting.update(1)
                    continue
            fitting.update(1)
            fits.append(
                {
                    "method": name,
                    "converged": bool(result.converged),
                    "iterations": int(result.iterations),
                    "evaluations": int(result.evaluations),
                    "seconds": time.perf_counter() - start,
                    "minus2loglik_gap": result.minus2loglik - reference_fit.minus2loglik,
                }
            )
        fitting.close()
    scales, data_scales = [], None
    A = model.system_matrix(jnp.asarray(reference_fit.theta))
    if A is not None:
        default = model.fit_methods(None)[0][0] or Exact()  # the model's own method
        scales = scale_errors(
            A, [(name, default if m is None else m) for name, m in usable], seed=seed
        )
        times = model.exponent_times(statistics)
        if times is not None and np.size(times):
            norm = float(np.max(np.sum(np.abs(np.asarray(A)), axis=0)))
            positive = np.asarray(times, float)[np.asarray(times) > 0]
            if positive.size:
                data_scales = [float(positive.min() * norm), float(positive.max() * norm)]
    return {
        "points": [(label, [float(v) for v in np.asarray(t)]) for label, t in points],
        "gradients": rows,
        "fits": fits,
        "scales": scales,
        "data_scales": data_scales,
    }


#: t ||A||_1 values of the scale analysis.
SCALES = tuple(float(v) for v in np.geomspace(0.01, 100.0, 13))


def scale_errors(
    A, methods: Sequence[tuple[str, object]], scales: Sequence[float] = SCALES, seed: int = 0
) -> list[dict]:
    """How each method's derivative of ``exp(tA)`` degrades as ``t ||A||_1`` grows.

    For the model's own ``A`` (at the MLE) and random unit vectors ``w``, ``x0``, the
    gradient of ``Re w^H exp(tA) x0`` with respect to A, by each method, against
    :class:`Exact`'s, at ``t = scale / ||A||_1`` for each scale. Rows: method, scale,
    relative error (NaN where the method failed or is not defined for a dense A).
    """
    from linest.engine import propagate

    A = jnp.asarray(A)
    norm = float(jnp.max(jnp.sum(jnp.abs(A), axis=0))) or 1.0
    rng = np.random.default_rng(seed)
    d = A.shape[-1]
    dtype = A.dtype
    w = rng.normal(size=d) + (1j * rng.normal(size=d) if jnp.iscomplexobj(A) else 0)
    x0 = rng.normal(size=d) + (1j * rng.normal(size=d) if jnp.iscomplexobj(A) else 0)
    w = jnp.asarray(w / np.linalg.norm(w), dtype)
    x0 = jnp.asarray(x0 / np.linalg.norm(x0), dtype)

    def gradient_of(method):
        @jax.jit
        def g(A, t):
            def f(A):
                x = propagate(A, x0, jnp.reshape(t, (1,)), method)[0]
                return jnp.real(jnp.vdot(w, x))

            return jax.grad(f)(A)

        return g

    exact = gradient_of(Exact())
    references = [np.asarray(exact(A, s / norm)) for s in scales]
    rows = []
    for name, method in methods:
        g = gradient_of(method if method is not None else Exact())
        for s, reference in zip(scales, references, strict=True):
            try:
                value = np.asarray(g(A, s / norm))
                error = float(np.linalg.norm(value - reference) / np.linalg.norm(reference))
            except (ValueError, TypeError, NotImplementedError):
                error = float("nan")
            rows.append({"method": name, "scale": s, "relative_error": error})
    return rows


def _median_ms(f, args, repeats: int) -> float:
    jax.block_until_ready(f(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(f(*args))
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def format_report(report: dict, title: str) -> str:
    """The tables of :func:`compare_model` as Markdown."""
    lines = [f"# Gradient methods on {title}", ""]
    lines += ["Parameter points: " + ", ".join(label for label, _ in report["points"]), ""]
    lines += [
        "## Gradients (against the model's default exact method)",
        "",
        "At the MLE the gradient is nearly zero: relative errors there measure rounding.",
        "",
        "| point | method | rel. error | cosine | ms / value+grad | x forward |",
        "|---|---|---|---|---|---|",
    ]
    for r in report["gradients"]:
        lines.append(
            f"| {r['point']} | {r['method']} | {r['relative_error']:.2e} | {r['cosine']:.6f} | "
            f"{r['milliseconds']:.3f} | {r['ratio_to_forward']:.1f} |"
        )
    if report["fits"]:
        lines += [
            "",
            "## What an optimiser driven by each gradient reaches",
            "",
            "| method | converged | iterations | evaluations | seconds | -2LL gap |",
            "|---|---|---|---|---|---|",
        ]
        for r in report["fits"]:
            if "error" in r:
                lines.append(f"| {r['method']} | error: {r['error']} | | | | |")
                continue
            lines.append(
                f"| {r['method']} | {r['converged']} | {r['iterations']} | {r['evaluations']} | "
                f"{r['seconds']:.2f} | {r['minus2loglik_gap']:.3g} |"
            )
    if report.get("scales"):
        scales = list(dict.fromkeys(r["scale"] for r in report["scales"]))
        shown = scales[::3]
        lines += [
            "",
            "## Error of d exp(tA) / dA against t ||A||_1 (the model's A at the MLE)",
            "",
        ]
        if report.get("data_scales"):
            low, high = report["data_scales"]
            lines += [f"The data need t ||A||_1 from {low:.3g} to {high:.3g}.", ""]
        lines += [
            "| method | " + " | ".join(f"{s:.3g}" for s in shown) + " |",
            "|---|" + "---|" * len(shown),
        ]
        for method in dict.fromkeys(r["method"] for r in report["scales"]):
            errors = {
                r["scale"]: r["relative_error"] for r in report["scales"] if r["method"] == method
            }
            lines.append(f"| {method} | " + " | ".join(f"{errors[s]:.1e}" for s in shown) + " |")
    return "\n".join(lines) + "\n"


def plot_report(report: dict):
    """Cost against accuracy at each point (one marker per method) and, where the model
    has a dense A, the error against t ||A||."""
    import matplotlib.pyplot as plt

    panels = 2 if report.get("scales") else 1
    figure, axes = plt.subplots(1, panels, figsize=(7 * panels, 4.5), layout="constrained")
    axes = np.atleast_1d(axes)
    ax = axes[0]
    methods = list(dict.fromkeys(r["method"] for r in report["gradients"]))
    points = list(dict.fromkeys(r["point"] for r in report["gradients"]))
    markers = "osD^v<>"
    for m, method in enumerate(methods):
        for p, point in enumerate(points):
            row = next(
                r for r in report["gradients"] if r["method"] == method and r["point"] == point
            )
            ax.loglog(
                row["milliseconds"],
                max(row["relative_error"], 1e-17),
                markers[p % len(markers)],
                color=f"C{m}",
                label=method if p == 0 else None,
            )
    ax.set_xlabel("value + gradient (ms, median)")
    ax.set_ylabel("relative error vs the default method (1e-17: exact)")
    ax.set_title("cost against accuracy (marker: parameter point)")
    ax.legend(fontsize=8)
    if panels == 2:
        ax = axes[1]
        for m, method in enumerate(dict.fromkeys(r["method"] for r in report["scales"])):
            rows = [r for r in report["scales"] if r["method"] == method]
            ax.loglog(
                [r["scale"] for r in rows],
                [max(r["relative_error"], 1e-17) for r in rows],
                "o-",
                ms=3,
                color=f"C{m}",
                label=method,
            )
        if report.get("data_scales"):
            low, high = report["data_scales"]
            ax.axvspan(max(low, 1e-3), high, color="0.85", zorder=0, label="the data's t ||A||")
        ax.set_xlabel("t ||A||_1")
        ax.set_ylabel("relative error of d exp(tA)/dA (1e-17: exact)")
        ax.set_title("accuracy against t ||A|| (the model's A at the MLE)")
        ax.legend(fontsize=8)
    return figure
