"""Q3: surrogate gradients of exp(tA) against exact and adjoint gradients, per model class.

The question (research notes, section 4): how does the surrogate trajectory method implied
by ``grad_J exp(tQ) ~ t exp(tQ) J`` (linest's ``Surrogate("left")``, the notes' eq. 1.6)
perform relative to a method that computes ``grad_J exp(tQ)`` exactly (the model's exact
default, the Frechet derivative, autodiff, or an adjoint ODE solve)?

What it measures, for the gradient methods each model accepts (``model.check_gradient``;
a selection sized to the run's budget, the accepted methods left out listed per size):

* the relative error ``||g - g_ref|| / ||g_ref||`` of the log-likelihood gradient against
  the model's exact default method, and the median milliseconds of one jitted value +
  gradient call (``linest.compare.compare_gradients``, the measurement ``linest compare``
  makes), at the truth of simulated data (a point in the posterior bulk, where an HMC
  trajectory spends its time; at the MLE the reference gradient is zero and relative
  errors are meaningless);
* on four model classes: a CTMC with d = 4, 16, 64, 256 states (a random irreducible
  generator, counts over two lags drawn from its transition matrices), the quantum walk
  of ``models/quantum_ring.toml`` (its data and known truth), advection-diffusion on
  32^2 to 256^2 cells (snapshots simulated from a known velocity field), and the linear
  state-space model of ``models/ssm.toml`` (its data and known truth);
* the error of the derivative of ``exp(tA)`` against ``t ||A||_1`` from 0.01 to 100
  (``linest.compare.scale_errors``) for the CTMC (d = 16) and the quantum walk, with the
  adjoint ODE solve among the methods.

Compiling a method costs 2-12 s per model and size on a 2-core CPU, far more than its
timed calls: large sizes run a core set of methods, and the section names what was left
out and why.

Run from the project root (about 6 minutes on a 2-core CPU; ``--quick``: about 1.5)::

    python examples/study/q3_surrogate_adjoint.py --out docs/study [--quick]
"""

from __future__ import annotations

import json
import math
import sys
import time
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.ticker
import numpy as np
import pandas as pd
import scipy.linalg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, command, plt, run, save_figure, write_numbers

import linest
from linest.compare import compare_gradients, scale_errors
from linest.models.base import for_compute
from linest.spec import load_spec

QUESTION = "q3"

#: Every distinct method name of ``linest compare`` (``gradient_from_string``); a model
#: runs those its ``check_gradient`` accepts. Left out as duplicates: ``eigen-fallback``
#: (the CTMC's default itself), ``surrogate-gauss-1`` (the one-node Gauss rule is the
#: midpoint rule).
ALL_METHODS = (
    "default",
    "exact",
    "exact-pade",
    "eigen",
    "autodiff",
    "adjoint",
    "adjoint-backsolve",
    "exponential",
    "fourier",
    "asymptotic",
    "series",
    "surrogate-left",
    "surrogate-right",
    "surrogate-midpoint",
    "surrogate-gauss-2",
    "surrogate-gauss-4",
    "surrogate-gauss-8",
    "surrogate-gauss-2-scaled",
    "coarse-2",
    "coarse-4",
)

#: Methods that are the model's default under another name (same program, same numbers).
SAME_AS_DEFAULT = {
    "ssm": ("exact",),  # LinearSSM's default is Exact()
    "ad": ("exact", "exact-pade", "exponential"),  # the grid model resolves all three to
    # its default integrator, Exponential() (ETDRK4 with a checkpointed adjoint)
}

# ----------------------------------------------------------------------------- the plan

#: Per model: {size: methods} (``linest compare`` names; "default" is the model's own
#: method) and the timed calls per method and size (their median is reported; many where a
#: call takes a millisecond, since this machine is shared and one burst of other work
#: would otherwise decide a median of three). Sized to the run's budget: on a 2-core CPU each
#: method costs 2-12 s of XLA compilation per size, far more than its timed calls; the
#: accepted methods left out are listed in the numbers and the section.
FULL = {
    "ctmc": dict(
        sizes={
            4: ("default", "exact", "surrogate-left"),
            16: (
                "default",
                "exact",
                "surrogate-left",
                "surrogate-midpoint",
                "surrogate-gauss-2",
                "surrogate-gauss-4",
            ),
            64: ("default", "exact", "surrogate-left", "surrogate-gauss-4"),
            256: ("default", "exact", "surrogate-left", "surrogate-gauss-4"),
        },
        repeats={4: 15, 16: 15, 64: 9, 256: 5},
    ),
    "quantum": dict(
        sizes={
            8: (
                "default",
                "exact",
                "adjoint",
                "surrogate-left",
                "surrogate-gauss-2",
                "surrogate-gauss-4",
            )
        },
        repeats=15,
    ),
    "ssm": dict(sizes={2: ("default", "surrogate-left", "surrogate-gauss-4")}, repeats=9),
    "ad": dict(
        sizes={
            32: ("default", "adjoint", "surrogate-left", "surrogate-gauss-4"),
            128: ("default", "surrogate-left", "surrogate-gauss-4"),
            256: ("default", "surrogate-left"),
        },
        repeats={32: 5, 128: 2, 256: 1},
    ),
    "scales": dict(
        ctmc_size=16,
        ctmc=("adjoint", "surrogate-left", "surrogate-gauss-4", "series", "asymptotic"),
        quantum=("adjoint", "surrogate-left", "surrogate-gauss-4"),
    ),
}

QUICK = {
    "ctmc": dict(sizes={4: ("default", "surrogate-left")}),
    "quantum": dict(sizes={8: ("default", "surrogate-left")}),
    "ssm": dict(sizes={2: ("default", "surrogate-left")}),
    "ad": dict(sizes={32: ("default", "surrogate-left")}),
    "scales": dict(ctmc_size=16, ctmc=("surrogate-left",), quantum=("surrogate-left",)),
}
for _plan in QUICK.values():
    _plan.setdefault("repeats", 3)

#: What was not run and why, beyond the run's budget (quoted in the section).
NOTES = {
    "ctmc": (
        "adjoint is refused by the CTMC model (its likelihood needs whole transition "
        "matrices P(t), not one propagated state); it is measured on the CTMC's generator "
        "in the t||A|| sweep instead",
        "eigen-fallback is the CTMC's default itself",
    ),
    "quantum": ("eigen-fallback gives eigen's numbers for a normal matrix",),
    "ssm": (
        "exact is the LinearSSM default itself (Exact())",
        "adjoint is refused by the model (the Kalman filter needs F = exp(DA) and Van "
        "Loan's process covariance, not a propagated state)",
    ),
    "ad": (
        "exact, exact-pade and exponential resolve to the grid model's default "
        "(Exponential(): ETDRK4 with a checkpointed adjoint), the same program",
        "the dense methods (eigen, autodiff, series, asymptotic, scaled surrogates) and "
        "fourier are refused by the model (a 65 536-state dense matrix at 256^2; fourier "
        "needs a constant velocity, this one varies)",
        "adjoint (Tsit5) runs at 32^2 only: it is explicit, its steps grow as n^2 with the "
        "diffusive stability limit",
    ),
}


# ----------------------------------------------------------------------------- problems


def ctmc_problem(d: int, seed: int = 0, per_row: int = 200, lags=(0.25, 1.0)):
    """A random irreducible CTMC on ``d`` states and counts simulated from it.

    Allowed transitions: both ring neighbours of every state (irreducible) plus two
    random others per state; log-rates ~ N(0, 0.5^2). Data: for each lag, ``per_row``
    transitions out of every state, multinomial draws from the rows of ``exp(lag Q)``
    (aggregated counts, ``kind="counts"``; scipy's expm, so that making data compiles
    nothing). Returns ``(model, statistics, theta)``,
    statistics ready for jitted code, ``theta`` the truth.
    """
    rng = np.random.default_rng(seed)
    pairs = set()
    for i in range(d):
        pairs.update({(i, (i + 1) % d), (i, (i - 1) % d)})
        pairs.update((i, int(j)) for j in rng.choice(d, size=min(2, d), replace=False) if j != i)
    pairs = sorted(pairs)
    model = linest.CTMC(states=list(range(d)), transitions=[f"{i}-{j}" for i, j in pairs])
    theta = rng.normal(0.0, 0.5, size=len(pairs))
    Q = np.asarray(model.generator(jnp.asarray(theta)))
    frames = []
    for lag in lags:
        P = np.clip(scipy.linalg.expm(lag * Q), 0.0, None)
        P /= P.sum(axis=1, keepdims=True)
        counts = np.stack([rng.multinomial(per_row, p) for p in P])
        a, b = np.nonzero(counts)
        frames.append(pd.DataFrame({"from": a, "to": b, "count": counts[a, b], "lag": lag}))
    data = linest.read_chains(pd.concat(frames, ignore_index=True), kind="counts")
    return model, for_compute(model.statistics(data)), theta


AD_KAPPA, AD_SIGMA, AD_TIMES, AD_COARSE = 0.01, 0.02, (0.1, 0.2), 4


def ad_problem(n: int, seed: int = 0):
    """Advection-diffusion on an ``n x n`` periodic grid, two noisy snapshots simulated.

    Central finite volumes, the velocity on 4 x 4 coarse nodes (32 parameters and log
    kappa; sigma known), kappa = 0.01, snapshots at t = 0.1 and 0.2 of a smooth field with
    a bump (the shipped problem's shape, shorter in time so that 256^2 fits the budget).
    """
    model = linest.AdvectionDiffusion(
        (n, n), velocity="grid", coarse=AD_COARSE, sigma=AD_SIGMA, scheme="central"
    )
    c = (np.arange(AD_COARSE) + 0.5) / AD_COARSE
    y, x = np.meshgrid(c, c, indexing="ij")
    velocity = np.stack(
        [
            0.1 - 0.25 * np.cos(2 * np.pi * x) * np.sin(2 * np.pi * y),
            0.2 + 0.25 * np.sin(2 * np.pi * x) * np.cos(2 * np.pi * y),
        ]
    )
    theta = model.theta(AD_KAPPA, velocity)
    gy, gx = np.meshgrid(*[(np.arange(n) + 0.5) / n] * 2, indexing="ij")
    initial = 1.0 + 0.4 * np.sin(2 * np.pi * gx) * np.cos(4 * np.pi * gy)
    initial += 0.5 * np.exp(-((gx - 0.3) ** 2 + (gy - 0.6) ** 2) / 0.01)
    data = model.simulate(jax.random.key(seed + n), theta, AD_TIMES, initial)
    return model, for_compute(model.statistics(data)), theta


def spec_problem(spec: str, truth: str):
    """A shipped spec, its data and the known truth (``theta`` of its truth.json)."""
    loaded = load_spec(ROOT / "models" / spec)
    model = loaded.model
    statistics = for_compute(model.statistics(loaded.read_data()))
    theta = np.asarray(json.loads((ROOT / "data" / truth).read_text())["theta"], float)
    return model, statistics, theta


def quantum_problem():
    """models/quantum_ring.toml (8 sites, hopping estimated), its data and truth."""
    return spec_problem("quantum_ring.toml", "quantum/truth.json")


def ssm_problem():
    """models/ssm.toml (2 states, 3 sequences), its data and truth."""
    return spec_problem("ssm.toml", "ssm/truth.json")


# ----------------------------------------------------------------------------- measuring


def method_of(name: str):
    """The method object of a ``linest compare`` name; None for "default"."""
    return None if name == "default" else linest.gradient_from_string(name)


def accepted(model, names) -> list[str]:
    """The names among ``names`` whose method the model accepts (``check_gradient``)."""
    out = []
    for name in names:
        try:
            model.check_gradient(method_of(name), "q3")
        except (ValueError, TypeError):
            continue
        out.append(name)
    return out


def measure(model, statistics, theta, names, repeats: int = 3) -> list[dict]:
    """Each named method's log-likelihood gradient against the model's default, at ``theta``.

    ``compare_gradients`` with the default (``None``) as reference; "default" itself should
    be among ``names`` (its row gives the reference's time). Rows: method, relative_error,
    cosine, milliseconds, finite, and ratio_to_default (ms / the default's ms).
    """

    def loss(th, gradient):
        return model.loglik(th, statistics, gradient)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = compare_gradients(
            loss, theta, [method_of(n) for n in names], reference=None, repeats=repeats
        )
    for name, row in zip(names, rows, strict=True):
        row["method"] = name
        row.pop("value", None)
    base = next((r["milliseconds"] for r in rows if r["method"] == "default"), float("nan"))
    for row in rows:
        row["ratio_to_default"] = row["milliseconds"] / base
    return rows


def sweep(A, names, seed: int = 0) -> list[dict]:
    """``scale_errors``: each method's derivative of exp(tA) against Exact's, t||A||_1 in
    0.01 .. 100 (13 values). Adjoint runs through ``linest.propagate``."""
    return scale_errors(jnp.asarray(A), [(n, method_of(n)) for n in names], seed=seed)


def one_norm(A) -> float:
    return float(np.max(np.sum(np.abs(np.asarray(A)), axis=0)))


def verdict(rows: list[dict]) -> dict:
    """The cheapest method at relative error <= 1e-6 and at <= 1e-2, and where
    surrogate-left stands against the default (and the adjoint, where measured)."""
    out = {}
    for label, bound in (("1e-6", 1e-6), ("1e-2", 1e-2)):
        good = [r for r in rows if r["finite"] and r["relative_error"] <= bound]
        best = min(good, key=lambda r: r["milliseconds"]) if good else None
        out[f"cheapest_at_{label}"] = (
            None
            if best is None
            else {
                "method": best["method"],
                "milliseconds": best["milliseconds"],
                "relative_error": best["relative_error"],
                "ratio_to_default": best["ratio_to_default"],
            }
        )
    by_name = {r["method"]: r for r in rows}
    left = by_name.get("surrogate-left")
    if left is not None:
        out["left_error"] = left["relative_error"]
        out["left_speedup_vs_default"] = 1.0 / left["ratio_to_default"]
        exact = out["cheapest_at_1e-6"]
        if exact is not None:
            out["left_speedup_vs_fastest_exact"] = exact["milliseconds"] / left["milliseconds"]
        for other in ("exact", "adjoint"):
            if other in by_name:
                out[f"left_speedup_vs_{other}"] = (
                    by_name[other]["milliseconds"] / left["milliseconds"]
                )
    return out


def _plan_names(model, key: str, planned) -> tuple[list[str], list[str]]:
    """(the planned methods the model accepts, the accepted ones the plan leaves out)."""
    every = [n for n in ALL_METHODS if n not in SAME_AS_DEFAULT.get(key, ())]
    every = accepted(model, every)
    return [n for n in every if n in planned], [n for n in every if n not in planned]


def run_model(key: str, plan: dict, problem, log) -> dict:
    """Measure every planned method at every planned size of one model class."""
    results = []
    for size, planned in plan["sizes"].items():
        start = time.perf_counter()
        model, statistics, theta = problem(size)
        names, left_out = _plan_names(model, key, planned)
        repeats = plan["repeats"]
        repeats = repeats[size] if isinstance(repeats, dict) else repeats
        rows = measure(model, statistics, theta, names, repeats)
        results.append(
            {
                "size": size,
                "parameters": len(theta),
                "repeats": repeats,
                "not_run": left_out,
                "rows": rows,
                "verdict": verdict(rows),
                **_scale_of(model, statistics, theta),
            }
        )
        log(f"{key} {size}: {len(names)} methods in {time.perf_counter() - start:.0f} s")
    return {"results": results, "notes": list(NOTES.get(key, ()))}


def _scale_of(model, statistics, theta) -> dict:
    """The data's t ||A||_1 range where the model has a dense A (None otherwise)."""
    A = model.system_matrix(jnp.asarray(theta))
    times = model.exponent_times(statistics)
    if A is None or times is None:
        return {"data_scales": None}
    t = np.asarray(times, float)
    t = t[t > 0]
    norm = one_norm(A)
    return {"data_scales": [float(t.min() * norm), float(t.max() * norm)]}


# ----------------------------------------------------------------------------- the study


def main(out: Path, quick: bool = False) -> dict:
    """Measure, draw ``out/q3_*.png``, write ``out/q3.json``; returns the numbers."""
    started = time.perf_counter()
    plan = QUICK if quick else FULL

    def log(message):
        print(f"[{time.perf_counter() - started:5.0f} s] {message}", flush=True)

    numbers: dict = {"quick": quick, "machine": _machine(), "load": [_load()]}
    numbers["ctmc"] = run_model("ctmc", plan["ctmc"], ctmc_problem, log)
    numbers["quantum"] = run_model("quantum", plan["quantum"], lambda _: quantum_problem(), log)
    numbers["ssm"] = run_model("ssm", plan["ssm"], lambda _: ssm_problem(), log)

    scales = plan["scales"]
    model, statistics, theta = ctmc_problem(scales["ctmc_size"])
    A = model.system_matrix(jnp.asarray(theta))
    numbers["scales"] = {
        "ctmc": {
            "size": scales["ctmc_size"],
            "rows": sweep(A, scales["ctmc"]),
            **_scale_of(model, statistics, theta),
        }
    }
    model, statistics, theta = quantum_problem()
    A = model.system_matrix(jnp.asarray(theta))
    numbers["scales"]["quantum"] = {
        "size": model.num_sites,
        "rows": sweep(A, scales["quantum"]),
        **_scale_of(model, statistics, theta),
    }
    log("t||A|| sweeps done")

    numbers["ad"] = run_model("ad", plan["ad"], ad_problem, log)
    numbers["seconds"] = time.perf_counter() - started
    numbers["load"].append(_load())
    numbers["figures"] = figures(numbers, out)
    write_numbers(out, QUESTION, numbers)
    return numbers


def _load() -> float:
    """The 1-minute load average (other work on this machine slows every timing)."""
    import os

    return float(os.getloadavg()[0]) if hasattr(os, "getloadavg") else float("nan")


def _machine() -> str:
    import os
    import platform

    return (
        f"{platform.machine()}, {os.cpu_count()} cores, jax {jax.__version__} on "
        f"{jax.devices()[0].platform}, float64"
    )


# ----------------------------------------------------------------------------- figures

FLOOR = 1e-16  # an error of exactly 0 (the reference itself) is drawn here
TITLES = {
    "ctmc": "CTMC, d = 4 .. 256 states (counts at two lags)",
    "quantum": "quantum walk, ring of 8 sites (models/quantum_ring.toml)",
    "ad": "advection-diffusion, 32^2 .. 256^2 cells (velocity on 4 x 4 nodes)",
    "ssm": "linear SSM, 2 states (models/ssm.toml)",
}
SIZE_LABEL = {"ctmc": "d = {}", "ad": "{}^2", "quantum": "{} sites", "ssm": "{} states"}
MARKERS = "osD^v<>phX*P8"


COLOURS = {
    "default": "black",
    "exact": "tab:blue",
    "exact-pade": "lightskyblue",
    "eigen": "tab:cyan",
    "autodiff": "tab:gray",
    "adjoint": "tab:red",
    "adjoint-backsolve": "salmon",
    "exponential": "darkred",
    "fourier": "tab:olive",
    "asymptotic": "tab:pink",
    "series": "tab:brown",
    "surrogate-left": "tab:orange",
    "surrogate-right": "gold",
    "surrogate-midpoint": "tab:purple",
    "surrogate-gauss-2": "tab:green",
    "surrogate-gauss-4": "darkgreen",
    "surrogate-gauss-8": "yellowgreen",
    "surrogate-gauss-2-scaled": "teal",
    "coarse-2": "navy",
    "coarse-4": "slateblue",
}


def _style(names):
    """(colour, marker) per method, the same in every figure."""
    index = {n: i for i, n in enumerate(ALL_METHODS)}
    return {n: (COLOURS.get(n, "0.5"), MARKERS[index.get(n, 0) % len(MARKERS)]) for n in names}


def cost_figure(key: str, block: dict):
    """Relative error against ms per value + gradient, one marker per method (one point per
    size, connected per method)."""
    results = block["results"]
    names = list(dict.fromkeys(r["method"] for res in results for r in res["rows"]))
    style = _style(names)
    fig, ax = plt.subplots(figsize=(7.5, 5.0), layout="constrained")
    for name in names:
        pts = [
            (res["size"], r)
            for res in results
            for r in res["rows"]
            if r["method"] == name and r["finite"]
        ]
        if not pts:
            continue
        color, marker = style[name]
        x = [r["milliseconds"] for _, r in pts]
        y = [max(r["relative_error"], FLOOR) for _, r in pts]
        ax.loglog(x, y, "-" if len(pts) > 1 else "", marker=marker, color=color, label=name)
        ax.annotate(name, (x[-1], y[-1]), xytext=(5, -3), textcoords="offset points", fontsize=7)
        if name == "default" and len(results) > 1:
            for (size, _), xi, yi in zip(pts, x, y):
                label = SIZE_LABEL[key].format(size)
                ax.annotate(label, (xi, yi), xytext=(0, 6), textcoords="offset points", ha="center")
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.axhline(1e-6, color="0.6", lw=0.8, ls=":")
    ax.axhline(1e-2, color="0.6", lw=0.8, ls="--")
    ax.set_xlabel("value + gradient, ms (median, jitted)")
    ax.set_ylabel(f"relative error of the gradient vs the default ({FLOOR:g}: exact)")
    ax.set_title(TITLES[key], fontsize=10)
    ax.legend(fontsize=7, ncol=2, loc="best")
    return fig


def scales_figure(scales: dict):
    """Relative error of d exp(tA)/dA against t ||A||_1, per method, CTMC and quantum walk."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), layout="constrained", sharey=True)
    names = list(dict.fromkeys(r["method"] for s in scales.values() for r in s["rows"]))
    style = _style(names)
    for ax, (key, block) in zip(axes, scales.items()):
        for name in dict.fromkeys(r["method"] for r in block["rows"]):
            rows = [r for r in block["rows"] if r["method"] == name]
            color, marker = style[name]
            errors = [max(float(r["relative_error"]), FLOOR) for r in rows]  # NaN stays NaN
            scales = [r["scale"] for r in rows]
            ax.loglog(scales, errors, "-", marker=marker, ms=3, color=color, label=name)
        if block.get("data_scales"):
            low, high = block["data_scales"]
            ax.axvspan(low, high, color="0.88", zorder=0, label="the data's t ||A||_1")
        what = (
            f"CTMC, d = {block['size']}"
            if key == "ctmc"
            else f"quantum ring, {block['size']} sites"
        )
        ax.set_title(f"{what}: A at the truth", fontsize=10)
        ax.set_xlabel("t ||A||_1")
        ax.legend(fontsize=7)
    axes[0].set_ylabel(f"relative error of d exp(tA)/dA vs Exact ({FLOOR:g}: exact)")
    return fig


def figures(numbers: dict, out: Path) -> dict:
    names = {}
    for key in ("ctmc", "quantum", "ad", "ssm"):
        names[key] = save_figure(cost_figure(key, numbers[key]), out, f"q3_{key}.png")
    names["scales"] = save_figure(scales_figure(numbers["scales"]), out, "q3_scales.png")
    return names


# ----------------------------------------------------------------------------- section


def _e(v) -> str:
    v = float(v)
    return "0" if v == 0 else f"{v:.1e}"


def _ms(v) -> str:
    return f"{float(v):.3g}"


def _x(v) -> str:
    """A time ratio, e.g. 0.42x."""
    return f"{float(v):.2g}x"


def _table(key: str, block: dict) -> list[str]:
    results = block["results"]
    sizes = [res["size"] for res in results]
    names = list(dict.fromkeys(r["method"] for res in results for r in res["rows"]))
    head = " | ".join(SIZE_LABEL[key].format(s) for s in sizes)
    lines = [
        "relative error / ms per value + gradient / time relative to the default",
        "",
        f"| method | {head} |",
        "|---|" + "---|" * len(sizes),
    ]
    for name in names:
        cells = []
        for res in results:
            row = next((r for r in res["rows"] if r["method"] == name), None)
            if row is None:
                cells.append("not run")
            elif not row["finite"]:
                cells.append("non-finite")
            else:
                cells.append(
                    f"{_e(row['relative_error'])} / {_ms(row['milliseconds'])} ms / "
                    f"{_x(row['ratio_to_default'])}"
                )
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _verdict_lines(key: str, block: dict) -> list[str]:
    lines = []
    for res in block["results"]:
        v = res["verdict"]
        label = SIZE_LABEL[key].format(res["size"])
        parts = []
        for bound in ("1e-6", "1e-2"):
            best = v.get(f"cheapest_at_{bound}")
            if best is None:
                parts.append(f"no method reaches {bound}")
            else:
                parts.append(
                    f"cheapest at <= {bound}: **{best['method']}** ({_ms(best['milliseconds'])} "
                    f"ms, {_x(best['ratio_to_default'])} the default's time, error "
                    f"{_e(best['relative_error'])})"
                )
        if "left_error" in v:
            left = (
                f"surrogate-left: error {_e(v['left_error'])}, "
                f"{_x(v['left_speedup_vs_default'])} as fast as the default"
            )
            if "left_speedup_vs_exact" in v:
                left += f", {_x(v['left_speedup_vs_exact'])} as fast as exact"
            if "left_speedup_vs_adjoint" in v:
                left += f", {_x(v['left_speedup_vs_adjoint'])} as fast as the adjoint"
            parts.append(left)
        scale = res.get("data_scales")
        where = f" (data at t||A||_1 = {scale[0]:.2g} .. {scale[1]:.2g})" if scale else ""
        lines.append(f"- {label}{where}: " + "; ".join(parts) + ".")
    return lines


def _not_run_lines(key: str, block: dict) -> list[str]:
    out = []
    for res in block["results"]:
        if res.get("not_run"):
            label = SIZE_LABEL[key].format(res["size"])
            out.append(f"{label}: " + ", ".join(res["not_run"]))
    lines = []
    if out:
        lines.append(
            "Accepted but not run (the run's budget: compilation costs seconds per method and "
            "size): " + "; ".join(out) + "."
        )
    if block.get("notes"):
        lines.append("Also: " + "; ".join(block["notes"]) + ".")
    return lines


def _scales_lines(scales: dict) -> list[str]:
    lines = []
    for key, block in scales.items():
        rows = block["rows"]
        shown = [0.1, 1.0, 10.0, 100.0]
        what = f"CTMC (d = {block['size']})" if key == "ctmc" else "quantum ring"
        lines += [
            f"{what}, relative error of d exp(tA)/dA at t||A||_1 =",
            "",
            "| method | " + " | ".join(f"{s:g}" for s in shown) + " |",
            "|---|" + "---|" * len(shown),
        ]
        for name in dict.fromkeys(r["method"] for r in rows):
            cells = []
            for s in shown:
                r = min((r for r in rows if r["method"] == name), key=lambda r: abs(r["scale"] - s))
                e = r["relative_error"]
                cells.append(_e(e) if isinstance(e, (int, float)) and math.isfinite(e) else "n/a")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


HEADINGS = {
    "ctmc": "CTMC",
    "quantum": "Quantum walk",
    "ad": "Advection-diffusion",
    "ssm": "Linear state-space model",
}


def _span(values, fmt) -> str:
    values = [float(v) for v in values]
    low, high = min(values), max(values)
    return fmt(low) if fmt(low) == fmt(high) else f"{fmt(low)} to {fmt(high)}"


def _repeats(n: dict) -> list[int]:
    return [res.get("repeats", 0) for key in HEADINGS for res in n[key]["results"]] or [0]


def _answer_lines(n: dict) -> list[str]:
    """The answer in one line per model: surrogate-left's error and its time against the
    fastest method exact to 1e-6 (and the adjoint where measured), then the sweep."""
    lines = ["**Answer, from the measurements below.**", ""]
    for key, heading in HEADINGS.items():
        results = [res for res in n[key]["results"] if "left_error" in res["verdict"]]
        if not results:
            continue
        sizes = ", ".join(SIZE_LABEL[key].format(res["size"]) for res in results)
        left = [next(r for r in res["rows"] if r["method"] == "surrogate-left") for res in results]
        text = (
            f"- {heading} ({sizes}): surrogate-left's relative error "
            f"{_span([r['relative_error'] for r in left], _e)} (cosine to the exact gradient "
            f"{_span([r['cosine'] for r in left], lambda v: f'{v:.3f}')})"
        )
        speed = [
            (res["verdict"]["left_speedup_vs_fastest_exact"], res["verdict"]["cheapest_at_1e-6"])
            for res in results
            if "left_speedup_vs_fastest_exact" in res["verdict"]
        ]
        if speed:
            fastest = sorted({best["method"] for _, best in speed})
            text += (
                f"; it runs {_span([v for v, _ in speed], _x)} as fast as the fastest method "
                f"within 1e-6 of the exact gradient ({', '.join(fastest)})"
            )
        adjoint = [
            (res, next(r for r in res["rows"] if r["method"] == "adjoint"))
            for res in results
            if any(r["method"] == "adjoint" for r in res["rows"])
        ]
        for res, row in adjoint:
            text += (
                f"; against the adjoint ODE solve ({_e(row['relative_error'])} from the default, "
                f"{_ms(row['milliseconds'])} ms) it is "
                f"{_x(res['verdict']['left_speedup_vs_adjoint'])} as fast"
                + (f" at {SIZE_LABEL[key].format(res['size'])}" if len(results) > 1 else "")
            )
        lines.append(text + ".")
    best = [
        (float(res["verdict"]["left_speedup_vs_fastest_exact"]), heading, key, res["size"])
        for key, heading in HEADINGS.items()
        for res in n[key]["results"]
        if "left_speedup_vs_fastest_exact" in res["verdict"]
    ]
    if best:
        speed, heading, key, size = max(best, key=lambda b: b[0])
        lines.append(
            f"- Over every model and size, surrogate-left is at most {_x(speed)} as fast as the "
            f"fastest method within 1e-6 of the exact gradient ({heading}, "
            f"{SIZE_LABEL[key].format(size)})."
        )
    for key, block in n["scales"].items():
        rows = block["rows"]
        what = f"CTMC (d = {block['size']})" if key == "ctmc" else "quantum ring"

        def error(method, scale, rows=rows):
            r = min(
                (r for r in rows if r["method"] == method),
                key=lambda r: abs(math.log(r["scale"] / scale)),
            )
            return float(r["relative_error"])

        methods = list(dict.fromkeys(r["method"] for r in rows))
        text = f"- t||A|| sweep, {what}:"
        if "surrogate-left" in methods:
            text += " surrogate-left's error is " + ", ".join(
                f"{_e(error('surrogate-left', s))} at {s:g}" for s in (0.1, 1, 10)
            )
        if "adjoint" in methods:
            worst = max(float(r["relative_error"]) for r in rows if r["method"] == "adjoint")
            text += f"; the adjoint's at most {_e(worst)} over 0.01 .. 100"
        if "surrogate-gauss-4" in methods:
            good = [
                r["scale"]
                for r in rows
                if r["method"] == "surrogate-gauss-4" and float(r["relative_error"]) <= 1e-6
            ]
            if good:
                text += f"; surrogate-gauss-4 stays within 1e-6 up to t||A||_1 = {max(good):.2g}"
        lines.append(text + ".")
    return lines


def section(numbers: dict) -> str:
    """The markdown section of study.md, from ``q3.json``'s numbers alone."""
    n = numbers
    fig = n.get("figures", {})
    lines = [
        "## 3. The surrogate t exp(tQ) J against exact and adjoint gradients",
        "",
        "> How does the surrogate trajectory method implied by grad_J exp(tQ) ~ t exp(tQ) J "
        "perform relative to e.g. an adjoint method which exactly computes grad_J exp(tQ)? "
        "(research notes, section 4)",
        "",
        "The surrogate is `surrogate-left` (one quadrature node at s = 0 of the "
        "variation-of-constants integral, gradients.md section 2); `surrogate-midpoint` and "
        "`surrogate-gauss-k` are the same integral with better rules, `series` the notes' "
        "eq. 4.1. For each model class, the methods the model accepts (as many as the run's "
        "budget allows; the others are listed) are measured as "
        "`linest compare` measures them: the relative error of the log-likelihood gradient "
        "against the model's exact default method, and the median milliseconds of one jitted "
        "value + gradient call, at the truth of simulated data (a point inside the posterior, "
        "where the gradient is of the size of its sampling noise; at the MLE it is zero).",
        "",
    ]
    lines += _answer_lines(n) + [""]
    for key, heading in HEADINGS.items():
        block = n[key]
        lines += [f"### {heading}", "", f"![{TITLES[key]}]({fig.get(key, f'q3_{key}.png')})", ""]
        lines += _verdict_lines(key, block) + [""]
        lines += _table(key, block) + [""]
        lines += _not_run_lines(key, block) + [""]
    lines += [
        "### Error against t ||A||",
        "",
        f"![error against t||A||]({fig.get('scales', 'q3_scales.png')})",
        "",
        "The derivative of Re w^H exp(tA) x0 (random unit w, x0) with respect to A, each "
        "method against Exact, for A at the truth (`linest.compare.scale_errors`); the adjoint "
        "is diffrax's Tsit5 at rtol 1e-8 through `linest.propagate`. The shaded band is the "
        "range of t ||A||_1 the data need.",
        "",
    ]
    lines += _scales_lines(n["scales"])
    lines += [
        "### Caveats",
        "",
        f"Timings are medians of {_span(_repeats(n), lambda v: f'{v:.0f}')} calls per method "
        "(after one untimed call) on a shared CPU "
        f"({n.get('machine', '')}) while other work ran (load average "
        f"{_span(n.get('load') or [float('nan')], lambda v: f'{v:.1f}')} at the start and end "
        "of the run): a method's calls run back to back, so a burst of other work lands on "
        "one method; read time ratios below about 2x as ties, and the millisecond timings "
        "of the small models (CTMC d <= 16, quantum walk) as the noisiest. Errors are at one parameter point per model (the truth) and one "
        "simulated data set; a surrogate's relative error grows where the exact gradient is "
        "small (near the MLE it is unbounded) and with t ||A|| (the sweep). On "
        "advection-diffusion no method is exact to rounding: the default (ETDRK4, Courant "
        "0.5) and the adjoint (Tsit5, rtol 1e-8) each carry their own time-discretisation "
        "error, so agreement there is to that error, not to 1e-15. Compilation time (seconds "
        "per method and size, often more than all the timed calls) is not in the timings.",
        "",
        f"Remake: `{command('q3_surrogate_adjoint.py')}` "
        f"({n.get('seconds', float('nan')):.0f} s for this run).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    run(main, __doc__)
