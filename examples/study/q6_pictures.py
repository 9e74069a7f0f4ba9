"""Seed 003's pictures: trajectories exp(tA) x0 and the eigenvalues of each fitted A.

    python examples/study/q6_pictures.py --out docs/study [--quick]

The source chapter (``shared/seeds/003``) writes ``dx/dt = A x`` with the solution
``x(t) = exp(tA) x(0)`` and says the eigenvalues of A decide whether the system decays,
oscillates or spirals. This script draws those pictures for the shipped data sets, each fitted
with ``linest.fit`` (default options):

* cav and ratings (CTMCs with an absorbing state): the state occupancy probabilities from
  state 1, ``p(t)^T = e_1^T exp(tQ)``, i.e. ``dx/dt = A x`` with ``A = Q^T`` (linest's
  generators have rows summing to 0; ``Q`` and ``Q^T`` have the same eigenvalues);
* the quantum ring (``A = -iH``, skew-Hermitian): the site probabilities ``|x_k(t)|^2`` from
  the initial site;
* the state-space model (a damped oscillator): both states from ``x0 = (1, 0)``, and the
  phase plane;
* theophylline (a two-compartment absorption/elimination ODE): the amounts in depot and
  central from a unit dose in the depot.

Writes ``q6_trajectories.png`` (one panel per data set, plus the SSM's phase plane),
``q6_eigenvalues.png`` (eigenvalues in the complex plane with the imaginary axis, the
spectral abscissa, the zero eigenvalues and the spectral gap annotated, plus a table),
``q6_transient.png`` (``||exp(tA)||_2 / exp(t alpha)``: how far the eigenvalues alone
under-predict the size of ``exp(tA)``) and ``q6.json``. Per model: the eigenvalues, the
spectral abscissa ``alpha = max Re lambda``, the numerical abscissa (the initial growth
rate of ``||exp(tA)||_2``), the spectral gap and the slowest time scale ``1/gap``, the
condition number of the eigenvector matrix, the departure from normality
``||A A* - A* A||_F / ||A||_F^2``, and a stability verdict.
"""

from __future__ import annotations

import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, command, plt, run, save_figure, write_numbers

QUESTION = "q6"
MODELS = ROOT / "models"

#: (name, spec file, kind, time unit). ``kind`` decides the picture and the start x0.
DATA_SETS = (
    ("cav", "cav.toml", "ctmc", "years"),
    ("ratings", "ratings.toml", "ctmc", "years"),
    ("quantum", "quantum_ring.toml", "quantum", "time"),
    ("ssm", "ssm.toml", "oscillator", "time"),
    ("theophylline", "theophylline.toml", "compartment", "hours"),
)
#: Left out by ``--quick`` (the slowest fits: 12-26 s each on 2 idle cores; the rest 15 s).
SLOW = ("ratings", "ssm", "theophylline")

#: Eigenvalues with |lambda| <= ZERO_TOL * ||A||_2 count as 0; real parts within it as 0.
ZERO_TOL = 1e-9
#: Trajectories run to TIME_SCALES slowest time scales (1/gap) where the system decays.
TIME_SCALES = 3.0
#: A neutral system (no decay) runs for NEUTRAL_BEATS periods of its fastest beat.
NEUTRAL_BEATS = 8.0


# ---------------------------------------------------------------------------- compute


def column_system(kind: str, matrix) -> np.ndarray:
    """The ``A`` of ``dx/dt = A x`` (column vectors) from a model's ``system_matrix``.

    linest's CTMC generator ``Q`` has rows summing to 0 and moves row vectors,
    ``dp/dt = p Q``: as a column system that is ``A = Q^T``. Other models already give A.
    """
    matrix = np.asarray(matrix)
    return matrix.T.copy() if kind == "ctmc" else matrix


def closed_classes(Q) -> list[list[int]]:
    """The closed communicating classes of a rate matrix ``Q`` (rows = from, row sums 0):
    sets of states that reach each other and nothing else. A single state is absorbing.
    ``Q`` has one zero eigenvalue per closed class."""
    from scipy.sparse.csgraph import connected_components

    Q = np.asarray(Q, float)
    edges = (Q > 0) & ~np.eye(len(Q), dtype=bool)
    count, label = connected_components(edges.astype(int), directed=True, connection="strong")
    out = []
    for c in range(count):
        members = np.flatnonzero(label == c)
        outside = np.setdiff1d(np.arange(len(Q)), members)
        if not edges[np.ix_(members, outside)].any():
            out.append([int(k) for k in members])
    return out


def departure_from_normality(A) -> float:
    """``||A A* - A* A||_F / ||A||_F^2``: 0 for a normal matrix (orthogonal eigenvectors)."""
    A = np.asarray(A)
    H = A.conj().T
    scale = np.linalg.norm(A, "fro") ** 2
    return float(np.linalg.norm(A @ H - H @ A, "fro") / scale) if scale > 0 else 0.0


def spectrum(A, closed: list[list[int]] | None = None) -> dict:
    """Eigenvalues of ``A`` and what they say about ``x(t) = exp(tA) x0``.

    ``closed``: for a CTMC, its closed classes (:func:`closed_classes`), which name the
    limit (absorbing states or a stationary distribution). Returns the eigenvalues (sorted
    by decreasing real part), the spectral abscissa ``max Re lambda``, the numerical
    abscissa ``max eig((A + A*)/2)`` (the initial slope of ``log ||exp(tA)||_2``), the
    zero eigenvalues and their geometric multiplicity, the gap (``-max Re`` of the nonzero
    eigenvalues: the slowest decay rate towards the limit), the slowest time scale
    ``1/gap``, the eigenvector matrix's condition number, the departure from normality
    and a verdict.
    """
    A = np.asarray(A)
    d = len(A)
    lam, V = np.linalg.eig(A)
    scale = max(float(np.linalg.norm(A, 2)), np.finfo(float).tiny)
    tol = ZERO_TOL * scale
    # Decreasing real part (rounding below tol counts as 0), then decreasing imaginary part.
    order = np.lexsort((-lam.imag, -np.where(np.abs(lam.real) <= tol, 0.0, lam.real)))
    lam, V = lam[order], V[:, order]
    zero = np.abs(lam) <= tol
    nonzero = lam[~zero]
    alpha = float(lam.real.max())
    hermitian_part = (A + A.conj().T) / 2
    numerical = float(np.linalg.eigvalsh(hermitian_part).max())
    zeros = int(zero.sum())
    # The geometric multiplicity of 0 (d - rank A) below the algebraic one: a Jordan block,
    # so exp(tA) grows like a polynomial in t.
    geometric = d - int(np.linalg.matrix_rank(A, tol=tol)) if zeros else 0
    skew = float(np.linalg.norm(hermitian_part, 2)) <= tol
    cond = float(np.linalg.cond(V))
    # The slowest decay towards the limit (0, or the zero eigenvalues' modes); 0 when some
    # nonzero eigenvalue does not decay.
    gap = max(float(-nonzero.real.max()), 0.0) if nonzero.size else 0.0
    gap = gap if gap > tol else 0.0
    frequencies = np.abs(lam.imag)
    oscillatory = bool((frequencies > tol).any())

    if alpha > tol:
        verdict = "unstable (an eigenvalue with Re λ > 0: exponential growth)"
    elif zeros and geometric < zeros:
        verdict = "unstable (a defective zero eigenvalue: polynomial growth)"
    elif (np.abs(lam.real) <= tol).all():
        verdict = "neutrally stable (every eigenvalue on the imaginary axis: no growth, no decay"
        verdict += "; unitary, norm preserved)" if skew else ")"
        if cond > 1e6:
            verdict = "unstable (a defective eigenvalue on the imaginary axis)"
    elif zeros:
        if closed is not None and all(len(c) == 1 for c in closed):
            many = len(closed) > 1
            verdict = (
                f"asymptotically stable to {'one of ' + str(len(closed)) + ' absorbing states' if many else 'an absorbing state'}"
                f" (λ = 0 ×{zeros}, every other Re λ < 0)"
            )
        elif closed is not None:
            verdict = (
                f"asymptotically stable to a stationary distribution (λ = 0 ×{zeros}, "
                "every other Re λ < 0)"
            )
        else:
            verdict = f"stable to a nonzero equilibrium (λ = 0 ×{zeros}, the rest decay)"
    else:
        verdict = "asymptotically stable (x -> 0)"
        if oscillatory:
            verdict += ", an oscillatory decay (a spiral)"
    slowest = 1.0 / gap if gap > 0 else float("inf")

    out = {
        "eigenvalues": {"re": lam.real, "im": lam.imag},
        "spectral_abscissa": alpha,
        "numerical_abscissa": numerical,
        "zero_eigenvalues": zeros,
        "zero_geometric_multiplicity": geometric,
        "gap": gap,
        "slowest_time_scale": slowest,
        "eigvec_condition": cond,
        "departure_from_normality": departure_from_normality(A),
        "max_frequency": float(frequencies.max()),
        "skew_hermitian": skew,
        "verdict": verdict,
    }
    if closed is not None:
        out["closed_classes"] = closed
    levels = np.sort(lam.imag)
    spacing = np.diff(levels)
    spacing = spacing[spacing > tol]
    if out["verdict"].startswith("neutrally") and spacing.size:
        out["level_spacing_min"] = float(spacing.min())
        out["beat_period_max"] = float(2 * np.pi / spacing.min())
        out["spread"] = float(levels[-1] - levels[0])
    return out


def trajectory(A, x0, ts) -> np.ndarray:
    """``x(t) = exp(tA) x0`` at each of ``ts`` (``linest.propagate``), shape ``(len(ts), d)``."""
    import jax.numpy as jnp

    import linest

    A = jnp.asarray(A)
    x0 = jnp.asarray(x0, dtype=jnp.result_type(A.dtype, float))
    return np.asarray(linest.propagate(A, x0, jnp.asarray(ts, float)))


def norm_growth(A, ts) -> np.ndarray:
    """``||exp(tA)||_2`` at each of ``ts`` (``linest.expm_times``)."""
    import jax.numpy as jnp

    import linest

    E = np.asarray(linest.expm_times(jnp.asarray(A), jnp.asarray(ts, float)))
    return np.linalg.svd(E, compute_uv=False)[:, 0]


def time_range(spec: dict) -> float:
    """How far to draw: TIME_SCALES slowest time scales, or for a neutral system
    NEUTRAL_BEATS periods of its fastest beat ``2 pi / (max Im - min Im)``."""
    if np.isfinite(spec["slowest_time_scale"]):
        return TIME_SCALES * spec["slowest_time_scale"]
    spread = spec.get("spread") or spec["max_frequency"] or 1.0
    return NEUTRAL_BEATS * 2 * np.pi / spread


def make_entry(name, kind, A, x0, labels, unit, **extra) -> dict:
    """One data set's system: ``A`` in column form (``dx/dt = A x``), start ``x0``, state
    labels, time unit; ``extra`` (the fit's summary, reference eigenvalues) is kept."""
    A = np.asarray(A)
    return {
        "name": name,
        "kind": kind,
        "A": A,
        "x0": np.asarray(x0),
        "labels": list(labels),
        "unit": unit,
        **extra,
    }


def analyse_entry(entry: dict, points: int = 400) -> tuple[dict, dict]:
    """Spectrum, time range, trajectory and norm growth of one entry: (numbers, arrays)."""
    A, kind = entry["A"], entry["kind"]
    closed = closed_classes(A.T) if kind == "ctmc" else None
    spec = spectrum(A, closed)
    T = time_range(spec)
    ts = np.linspace(0.0, T, points)
    x = trajectory(A, entry["x0"], ts)
    norms = norm_growth(A, ts)
    amplification = norms * np.exp(-spec["spectral_abscissa"] * ts)
    numbers = {
        "kind": kind,
        "labels": entry["labels"],
        "unit": entry["unit"],
        "time_range": T,
        **spec,
        "max_norm_exp_tA": float(norms.max()),
        "max_amplification": float(amplification.max()),
    }
    if kind == "ctmc":
        total = x.real.sum(axis=1)
        numbers["probability_sum_error"] = float(np.abs(total - 1).max())
        ends = [c[0] for c in closed if len(c) == 1]
        if ends:
            end = ends[0]
            numbers["absorbing_state"] = entry["labels"][end]
            numbers["absorbed_at_end"] = float(x[-1, end].real)
            numbers["absorbed_at_slowest"] = float(
                np.interp(spec["slowest_time_scale"], ts, x[:, end].real)
            )
            half = np.flatnonzero(x[:, end].real >= 0.5)
            numbers["median_absorption_time"] = (
                float(np.interp(0.5, x[:, end].real, ts)) if half.size else float("inf")
            )
    elif kind == "quantum":
        probability = np.abs(x) ** 2
        numbers["norm_error"] = float(np.abs(probability.sum(axis=1) - 1).max())
        numbers["max_abs_real_part"] = float(np.abs(spec["eigenvalues"]["re"]).max())
    else:
        numbers["norm_at_end"] = float(np.linalg.norm(x[-1]))
    if kind == "oscillator":
        lam = spec["eigenvalues"]["re"] + 1j * spec["eigenvalues"]["im"]
        top = lam[np.argmax(lam.imag)]
        numbers["damping_rate"] = float(-top.real)
        numbers["frequency"] = float(abs(top.imag))
        numbers["period"] = float(2 * np.pi / abs(top.imag)) if top.imag else float("inf")
        numbers["damping_ratio"] = float(-top.real / abs(top))
    if kind == "compartment":
        central = x[:, 1].real
        numbers["peak_time"] = float(ts[np.argmax(central)])
        numbers["peak_fraction"] = float(central.max())
    for key in ("fit", "reference"):
        if key in entry:
            numbers[key] = entry[key]
    return numbers, {"ts": ts, "x": x, "norms": norms, "amplification": amplification}


# ---------------------------------------------------------------------------- fits


def _ssm_truth() -> dict:
    import json

    A = np.asarray(json.loads((ROOT / "data" / "ssm" / "truth.json").read_text())["A"])
    lam = np.linalg.eigvals(A)
    return {"what": "simulation truth (data/ssm/truth.json)", "re": lam.real, "im": lam.imag}


def _theophylline_reference() -> dict | None:
    """R's nls estimates (data/theophylline/nls_reference.txt): eigenvalues -ka, -ke."""
    path = ROOT / "data" / "theophylline" / "nls_reference.txt"
    found = {}
    for line in path.read_text().splitlines():
        match = re.match(r"\s*(lKe|lKa)\s+(-?[0-9.eE+-]+)", line)
        if match and match.group(1) not in found:
            found[match.group(1)] = float(match.group(2))
    if len(found) < 2:
        return None
    lam = -np.exp([found["lKa"], found["lKe"]])
    return {"what": "R nls (data/theophylline/nls_reference.txt)", "re": lam, "im": 0 * lam}


def fit_entry(name: str, spec_file: str, kind: str, unit: str) -> dict:
    """Fit one shipped data set with ``linest.fit`` (default options) and build its entry."""
    import linest
    from linest.spec import load_spec

    spec = load_spec(MODELS / spec_file)
    model = spec.model
    data = spec.read_data()
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = linest.fit(model, data, progress=False)
    seconds = time.perf_counter() - start
    A = column_system(kind, model.system_matrix(result.theta))
    d = len(A)
    if kind == "ctmc":
        labels = list(model.labels)
        x0 = np.eye(d)[0]
    elif kind == "quantum":
        labels = [str(model.site_label(k)) for k in range(d)]
        x0 = np.asarray(model.initial, complex)
    elif kind == "compartment":
        labels = list(model.compartments)
        x0 = np.eye(d)[model.dose]
    else:
        labels = [f"x{k + 1}" for k in range(d)]
        x0 = np.eye(d)[0]
    fit = {
        "spec": f"models/{spec_file}",
        "minus_2_loglik": -2 * float(result.loglik),
        "converged": bool(result.converged),
        "seconds": seconds,
        "parameters": len(result.theta),
        "warnings": [str(w.message) for w in caught],
    }
    if getattr(result, "at_boundary", None) is not None:
        fit["rates_at_zero"] = int(np.sum(result.at_boundary))
    extra = {"fit": fit}
    if name == "ssm":
        extra["reference"] = _ssm_truth()
    elif name == "theophylline":
        reference = _theophylline_reference()
        if reference is not None:
            extra["reference"] = reference
    return make_entry(name, kind, A, x0, labels, unit, **extra)


# ---------------------------------------------------------------------------- figures


def _trajectory_panel(ax, name, numbers, arrays, figure):
    ts, x, kind = arrays["ts"], arrays["x"], numbers["kind"]
    unit = numbers["unit"]
    if kind == "quantum":
        probability = np.abs(x) ** 2
        image = ax.imshow(
            probability.T,
            aspect="auto",
            origin="lower",
            extent=(ts[0], ts[-1], -0.5, probability.shape[1] - 0.5),
            cmap="viridis",
        )
        figure.colorbar(image, ax=ax, label="|x_k(t)|^2", fraction=0.05)
        ax.set_ylabel("site")
        ax.set_title(
            f"{name}: |x(t)|^2 from site {numbers['labels'][0]}\n"
            f"sum of |x|^2 - 1: at most {numbers['norm_error']:.1e}",
            fontsize=9,
        )
    else:
        many = x.shape[1] > 4
        for k, label in enumerate(numbers["labels"]):
            ax.plot(
                ts,
                x[:, k].real,
                lw=1.2,
                label=label,
                color=plt.cm.viridis(k / max(x.shape[1] - 1, 1)) if many else f"C{k}",
            )
        if kind == "ctmc":
            ax.set_ylabel("occupancy probability")
            ax.set_ylim(-0.02, 1.02)
            title = (
                f"{name}: p(t) from {numbers['labels'][0]}; "
                f"P({numbers.get('absorbing_state')}) = {numbers.get('absorbed_at_end', float('nan')):.3f} at t = {ts[-1]:.0f}"
            )
            median = numbers.get("median_absorption_time", float("inf"))
            if np.isfinite(median):
                title += f"\nhalf absorbed at t = {median:.1f} {unit}"
        elif kind == "oscillator":
            alpha = numbers["spectral_abscissa"]
            envelope = np.exp(alpha * ts)
            ax.plot(ts, envelope, "k:", lw=0.8, label="±exp(t max Re λ)")
            ax.plot(ts, -envelope, "k:", lw=0.8)
            ax.set_ylabel("state")
            title = (
                f"{name}: x(t) from x0 = (1, 0)\n"
                f"decay {numbers['damping_rate']:.3f}, frequency {numbers['frequency']:.3f} rad/{unit}"
            )
        else:
            ax.set_ylabel("amount (unit dose)")
            title = (
                f"{name}: unit dose into {numbers['labels'][0]}\n"
                f"central peaks at t = {numbers['peak_time']:.2f} {unit} ({numbers['peak_fraction']:.2f})"
            )
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=6 if many else 7, ncol=2 if many else 1, loc="best")
    slowest = numbers["slowest_time_scale"]
    if np.isfinite(slowest):
        ax.axvline(slowest, color="grey", ls="--", lw=0.8)
        ax.annotate(
            f"1/gap = {slowest:.3g}",
            (slowest, 0.97),
            xycoords=("data", "axes fraction"),
            fontsize=7,
            color="grey",
            ha="left",
            va="top",
        )
    ax.set_xlabel(f"t ({unit})")


def _phase_panel(ax, numbers, arrays):
    x = arrays["x"].real
    ax.plot(x[:, 0], x[:, 1], lw=1.2, color="C0")
    ax.plot(x[0, 0], x[0, 1], "ko", ms=4, label="x0")
    ax.plot(0, 0, "k+", ms=10, label="equilibrium 0")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")
    ax.set_title(
        f"ssm: phase plane ({'a stable spiral' if 'spiral' in numbers['verdict'] else numbers['verdict']})\nperiod {numbers['period']:.2f}, "
        f"damping ratio {numbers['damping_ratio']:.3f}",
        fontsize=9,
    )
    ax.legend(fontsize=7)


def _eigen_panel(ax, name, numbers):
    real = np.asarray(numbers["eigenvalues"]["re"])
    imag = np.asarray(numbers["eigenvalues"]["im"])
    lam = real + 1j * imag
    scale = max(float(np.abs(lam).max()), 1e-12)
    tol = ZERO_TOL * scale
    zero = np.abs(lam) <= tol
    ax.axvline(0, color="k", lw=0.9)
    ax.axhline(0, color="k", lw=0.3)
    if numbers["kind"] == "quantum":
        width = 0.25 * max(numbers.get("spread", scale), 1e-12)
        ax.set_xlim(-width, width)
    else:  # the same scale on both axes up to a factor: a spiral's angle reads true
        left = -1.3 * scale
        ax.set_xlim(left, 0.35 * scale)
        height = 1.3 * scale if (np.abs(imag) > tol).any() else 0.8 * scale
        ax.set_ylim(-height, height)
        ax.axvspan(left, 0, color="C0", alpha=0.06)
    ax.plot(real[~zero], imag[~zero], "o", color="C0", ms=6, label="eigenvalues of fitted A")
    if zero.any():
        ax.plot(
            real[zero], imag[zero], "s", color="C3", ms=8,
            label=f"λ = 0 ×{int(zero.sum())}: " + (f"absorbing ({numbers.get('absorbing_state')})" if numbers["kind"] == "ctmc" else "equilibrium"),
        )  # fmt: skip
    reference = numbers.get("reference")
    if reference:
        ax.plot(
            reference["re"],
            reference["im"],
            "*",
            color="C1",
            ms=11,
            mfc="none",
            label=reference["what"],
        )
    alpha = numbers["spectral_abscissa"]
    ax.axvline(alpha, color="C2", ls=":", lw=1.0, label=f"max Re λ = {alpha:.3g}")
    gap = numbers["gap"]
    if numbers["zero_eigenvalues"] and gap > 0:
        y = -0.12 * scale
        ax.annotate(
            "", xy=(-gap, y), xytext=(0, y), arrowprops={"arrowstyle": "<->", "color": "C3"}
        )
        ax.annotate(
            f"gap {gap:.3g} (slowest mode)", (-gap, y), xytext=(-0.35 * scale, -0.3 * scale),
            color="C3", fontsize=7, ha="center", arrowprops={"arrowstyle": "-", "color": "C3", "lw": 0.6},
        )  # fmt: skip
        ax.plot([-gap], [0], "o", mfc="none", mec="C3", ms=10)
    lines = [
        f"max Re λ = {alpha:.3g}",
        f"numerical abscissa = {numbers['numerical_abscissa']:.3g}",
        f"gap = {gap:.3g}, 1/gap = {_number(numbers['slowest_time_scale'])} {numbers['unit']}",
        f"κ(V) = {numbers['eigvec_condition']:.3g}",
        f"departure from normality = {numbers['departure_from_normality']:.2g}",
    ]
    if numbers["kind"] == "quantum":
        lines[0] = f"max |Re λ| = {numbers['max_abs_real_part']:.1e}"
        lines[2] = (
            f"no decay; longest beat 2π/Δ = {numbers.get('beat_period_max', float('nan')):.3g}"
        )
    if numbers["kind"] == "oscillator":
        lines.insert(1, f"λ = -{numbers['damping_rate']:.3g} ± {numbers['frequency']:.3g}i")
    ax.text(
        0.02, 0.02, "\n".join(lines), transform=ax.transAxes, fontsize=6.5, va="bottom",
        bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "0.7"},
    )  # fmt: skip
    ax.set_title(f"{name}: {re.sub(r' \([^)]*\)', '', numbers['verdict'])}", fontsize=9)
    ax.set_xlabel("Re λ")
    ax.set_ylabel("Im λ")
    ax.legend(fontsize=6, loc="upper left")


def _grid(count: int):
    """A figure with ``count`` panels, three to a row; returns (figure, list of axes)."""
    cols = min(3, count)
    rows = -(-count // cols)
    figure, axes = plt.subplots(
        rows, cols, figsize=(5 * cols, 4.25 * rows), layout="constrained", squeeze=False
    )
    return figure, list(axes.flat)


def draw(out: Path, numbers: dict, arrays: dict) -> list[str]:
    """The three figures; returns their file names."""
    names = list(numbers["models"])
    written = []

    figure, cells = _grid(len(names) + ("ssm" in names))
    for ax, name in zip(cells, names):
        _trajectory_panel(ax, name, numbers["models"][name], arrays[name], figure)
    spare = cells[len(names) :]
    if "ssm" in names and spare:
        _phase_panel(spare.pop(0), numbers["models"]["ssm"], arrays["ssm"])
    for ax in spare:
        ax.axis("off")
    figure.suptitle("x(t) = exp(tA) x0 at the fitted A of each data set (dashed: 1/gap)")
    written.append(save_figure(figure, out, "q6_trajectories.png"))

    figure, cells = _grid(len(names) + 1)
    for ax, name in zip(cells, names):
        _eigen_panel(ax, name, numbers["models"][name])
    spare = cells[len(names) :]
    if spare:
        ax = spare.pop(0)
        ax.axis("off")
        rows = [
            [
                name,
                f"{m['spectral_abscissa']:.2g}",
                f"{m['gap']:.3g}",
                _number(m["slowest_time_scale"]),
                f"{m['eigvec_condition']:.3g}",
                f"{m['departure_from_normality']:.2g}",
            ]
            for name, m in numbers["models"].items()
        ]
        table = ax.table(
            cellText=rows,
            colLabels=["model", "max Re λ", "gap", "1/gap", "κ(V)", "dep(A)"],
            loc="center",
            colWidths=[0.2, 0.16, 0.14, 0.14, 0.14, 0.22],
        )
        table.auto_set_font_size(False)
        table.set_fontsize(8)
        table.scale(1, 1.5)
    for ax in spare:
        ax.axis("off")
    figure.suptitle(
        "eigenvalues of the fitted A (shaded: Re λ < 0, decay; the vertical axis: no decay)"
    )
    written.append(save_figure(figure, out, "q6_eigenvalues.png"))

    figure, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
    for k, name in enumerate(names):
        m, a = numbers["models"][name], arrays[name]
        ax.plot(
            a["ts"] / a["ts"][-1],
            a["amplification"],
            color=f"C{k}",
            label=f"{name} (κ(V) = {m['eigvec_condition']:.3g})",
        )
        ax.plot([1.0], [m["eigvec_condition"]], "<", color=f"C{k}", ms=6)
    ax.axhline(1.0, color="k", lw=0.6)
    ax.set_yscale("log")
    ax.set_xlabel("t / (time range drawn)")
    ax.set_ylabel("||exp(tA)||_2 / exp(t max Re λ)")
    ax.set_title(
        "how far the eigenvalues under-predict ||exp(tA)||: 1 for normal A, at most κ(V) (markers)",
        fontsize=9,
    )
    ax.legend(fontsize=7)
    written.append(save_figure(figure, out, "q6_transient.png"))
    return written


# ---------------------------------------------------------------------------- main


def analyse(entries: list[dict], out: Path, points: int = 400) -> dict:
    """Numbers and figures for fitted (or given) systems; writes the figures, not the json."""
    numbers = {"models": {}}
    arrays = {}
    for entry in entries:
        numbers["models"][entry["name"]], arrays[entry["name"]] = analyse_entry(entry, points)
    numbers["figures"] = draw(out, numbers, arrays)
    return numbers


def main(out: Path, quick: bool = False) -> dict:
    start = time.perf_counter()
    chosen = [s for s in DATA_SETS if not (quick and s[0] in SLOW)]
    entries = []
    for name, spec_file, kind, unit in chosen:
        entries.append(fit_entry(name, spec_file, kind, unit))
        print(f"q6: fitted {name} in {entries[-1]['fit']['seconds']:.1f} s", flush=True)
    numbers = analyse(entries, Path(out), points=200 if quick else 400)
    numbers["quick"] = quick
    numbers["seconds"] = time.perf_counter() - start
    write_numbers(Path(out), QUESTION, numbers)
    return numbers


# ---------------------------------------------------------------------------- section


def _format_eigenvalues(real, imag, digits: int = 3) -> str:
    """``a ± bi`` for conjugate pairs, ``a`` for real ones."""
    re_, im_ = list(map(float, real)), list(map(float, imag))
    parts, used = [], [False] * len(re_)
    for i in range(len(re_)):
        if used[i]:
            continue
        used[i] = True
        a, b = re_[i], im_[i]
        if abs(b) <= 1e-12 * max(1.0, abs(a)):
            parts.append(f"{a:.{digits}g}" if abs(a) > 1e-14 else "0")
            continue
        pair = next(
            (j for j in range(i + 1, len(re_)) if not used[j] and abs(re_[j] - a) <= 1e-9 * max(1, abs(a)) and abs(im_[j] + b) <= 1e-9 * max(1, abs(b))),
            None,
        )  # fmt: skip
        imaginary = abs(a) <= 1e-12 * max(1.0, abs(b))
        if pair is not None:
            used[pair] = True
            parts.append(
                f"±{abs(b):.{digits}g}i" if imaginary else f"{a:.{digits}g} ± {abs(b):.{digits}g}i"
            )
        elif imaginary:
            parts.append(f"{b:.{digits}g}i")
        else:
            parts.append(f"{a:.{digits}g} {'+' if b > 0 else '-'} {abs(b):.{digits}g}i")
    return ", ".join(parts)


def _number(value, fmt: str = ".3g") -> str:
    """A number of q6.json (where write_numbers stored inf as the string "inf")."""
    value = float(value)
    return ("∞" if value > 0 else "-∞") if np.isinf(value) else format(value, fmt)


def _scale(value, unit: str) -> str:
    return "∞ (no decay)" if np.isinf(float(value)) else f"{_number(value)} {unit}"


def section(numbers: dict) -> str:
    models = numbers["models"]
    lines = ["## 6. Seed 003's pictures: exp(tA) x0 and the eigenvalues of the fitted A", ""]
    claims = []
    for name in ("cav", "ratings"):
        if name in models:
            m = models[name]
            zeros = m["zero_eigenvalues"]
            claims.append(
                f"{name}: the fitted generator has {zeros} zero eigenvalue{'s' if zeros != 1 else ''} "
                f"(absorbing state {m.get('absorbing_state')}) and every other eigenvalue has "
                f"Re λ < 0 (gap {_number(m['gap'])}), so the occupancy from "
                f"{m['labels'][0]} drains into {m.get('absorbing_state')} on the slowest time "
                f"scale 1/gap = {_number(m['slowest_time_scale'])} {m['unit']} (half absorbed at "
                f"{_number(m.get('median_absorption_time', float('inf')))} {m['unit']})"
            )
    if "quantum" in models:
        m = models["quantum"]
        claims.append(
            f"the quantum ring's eigenvalues lie on the imaginary axis (max |Re λ| = "
            f"{m['max_abs_real_part']:.1e}): neutral stability, the total probability stays 1 "
            f"to {m['norm_error']:.1e}"
        )
    if "ssm" in models:
        m = models["ssm"]
        ref = m.get("reference")
        truth = f" (truth {_format_eigenvalues(ref['re'], ref['im'])})" if ref else ""
        claims.append(
            f"the SSM is {'a stable spiral' if 'spiral' in m['verdict'] else m['verdict']}, λ = {_format_eigenvalues(m['eigenvalues']['re'], m['eigenvalues']['im'])}"
            f"{truth}: decay rate {_number(m['damping_rate'])}, period {_number(m['period'])}"
        )
    if "theophylline" in models:
        m = models["theophylline"]
        text = (
            f"theophylline decays to 0 with eigenvalues "
            f"{_format_eigenvalues(m['eigenvalues']['re'], m['eigenvalues']['im'])} (-ke and -ka)"
        )
        if float(m["numerical_abscissa"]) > 0:
            text += (
                f", yet ||exp(tA)||_2 first grows to {_number(m['max_norm_exp_tA'])} (numerical "
                f"abscissa {_number(m['numerical_abscissa'])} > 0, departure from normality "
                f"{_number(m['departure_from_normality'], '.2g')}): eigenvalues alone miss the "
                "transient"
            )
        claims.append(text)
    if claims:
        lines += ["**Claim.** " + "; ".join(claims) + ".", ""]
    for figure in numbers.get("figures", []):
        lines += [f"![{figure.removesuffix('.png').replace('_', ' ')}]({figure})", ""]
    lines += [
        "| model | eigenvalues | max Re λ | gap | 1/gap | κ(V) | departure from normality | max ‖e^{tA}‖₂ | verdict |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, m in models.items():
        lines.append(
            f"| {name} | {_format_eigenvalues(m['eigenvalues']['re'], m['eigenvalues']['im'])} "
            f"| {_number(m['spectral_abscissa'], '.2g')} | {_number(m['gap'])} "
            f"| {_scale(m['slowest_time_scale'], m['unit'])} | {_number(m['eigvec_condition'])} "
            f"| {_number(m['departure_from_normality'], '.2g')} | {_number(m['max_norm_exp_tA'])} "
            f"| {m['verdict']} |"
        )
    lines.append("")
    fits = [
        f"{name} -2 log L = {m['fit']['minus_2_loglik']:.3f} ({m['fit']['seconds']:.0f} s"
        + (f", {m['fit']['rates_at_zero']} rates at 0" if m["fit"].get("rates_at_zero") else "")
        + ")"
        for name, m in models.items()
        if "fit" in m
    ]
    if fits:
        lines += ["Fits (`linest.fit`, default options): " + "; ".join(fits) + ".", ""]
    ctmcs = [m for m in models.values() if "probability_sum_error" in m]
    above = [
        name
        for name, m in models.items()
        if float(m["numerical_abscissa"]) - float(m["spectral_abscissa"])
        > 1e-6 * max(abs(float(m["max_frequency"])), abs(float(m["spectral_abscissa"])), 1e-300)
    ]
    at_zero = [name for name, m in models.items() if m.get("fit", {}).get("rates_at_zero")]
    caveats = [
        "These are the eigenvalues of the point estimate only: no standard errors or "
        "posterior spread are carried into them"
        + (
            f", and a rate estimated at 0 ({', '.join(at_zero)}) sits on the boundary of its "
            "interval."
            if at_zero
            else "."
        ),
        "Non-normal A: the eigenvalues set the long-run rate, not the transient; "
        "‖e^{tA}‖₂ can exceed e^{t max Re λ} by up to κ(V) (q6_transient.png), and does "
        "wherever the numerical abscissa max eig((A + A*)/2) exceeds max Re λ"
        + (f" (here: {', '.join(above)})" if above else "")
        + "; a positive numerical abscissa means initial growth even "
        "when every Re λ < 0.",
    ]
    if ctmcs:
        caveats.insert(
            1,
            "CTMC generators are drawn as the column system A = Q^T (the same eigenvalues as Q); "
            "their zero eigenvalue belongs to the absorbing state and the gap sets the approach "
            "to it. Their eigenvector matrices are not orthogonal (κ(V) > 1), so ‖e^{tA}‖₂ "
            "exceeds e^{t max Re λ} = 1 (up to √n as t grows); total probability, the 1-norm, "
            "is what the chain conserves"
            + f" (to {max(float(m['probability_sum_error']) for m in ctmcs):.0e} here).",
        )
    if "quantum" in models:
        caveats.append(
            "The quantum ring's spectrum is identified only up to a shift along the imaginary "
            "axis (the potential's gauge) and its mirror image (V and 2 J deg - V predict the "
            "same probabilities on a bipartite ring): the level spacings are what the data fix."
        )
    lines += ["**Caveats.**", ""] + [f"- {c}" for c in caveats] + [""]
    seconds = numbers.get("seconds")
    timing = f" ({seconds:.0f} s{', quick' if numbers.get('quick') else ''})" if seconds else ""
    lines += [f"Remake{timing}: `{command('q6_pictures.py')}`", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    run(main, __doc__)
