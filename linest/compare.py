"""Compare gradient methods on the user's own loss: error against a reference, and time."""

from __future__ import annotations

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

    def run(gradient):
        fn = jax.jit(jax.value_and_grad(lambda th: loss(th, gradient)))
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
