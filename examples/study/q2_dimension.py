"""Question 2: the notes' section 3, high-dimensional asymptotics of random rate matrices.

    python examples/study/q2_dimension.py [--out docs/study] [--quick]

Three ensembles of d x d rate matrices, d = 4 ... 2048: off-diagonal entries i.i.d.
Exp(1), i.i.d. Uniform(0, 1), and sparse Erdos-Renyi (Exp(1) on each edge with probability
min(1, 4 log(d) / d), plus a random directed cycle so that the chain is irreducible). For
each matrix: e_m (smallest non-zero |eigenvalue|), the spectral gap g, sigma_m and sigma_M
(smallest non-zero and largest singular values), the norms of the correction terms
||Q# J Pi||_F (the corrected theorem's, Pi = I - Q Q#) and ||Q+ J (I - Q Q+)||_F (the notes'),
and, at t = 1, the error of the first-order surrogate t exp(tQ) J (relative and absolute,
and its cosine with the exact derivative) and of Didier et al.'s refined approximation
t exp(tQ) J - t (I - Q# Q) J Q Q# (PNAS 2024, eq. "better"), for three directions J:
E_12 (the notes'), E_12 - E_11 (the derivative of Q in its rate q_12) and a Gaussian J.
Growth or decay rates are log-log slopes fitted over d >= 64. Writes q2_spectrum.png,
q2_surrogate.png and q2.json.
"""

from __future__ import annotations

from pathlib import Path

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from _common import command, loglog_slope, run, save_figure, write_numbers

import linest

#: One compiled program per (method, shape): the study calls it many times.
frechet = eqx.filter_jit(linest.expm_frechet)

ENSEMBLES = ("exponential", "uniform", "sparse")
MEANS = {"exponential": 1.0, "uniform": 0.5}  # mean off-diagonal entry mu (sparse: p(d))
DIRECTIONS = ("E12", "E12-E11", "gaussian")
#: Samples per size: fewer at the largest sizes (an exact Frechet derivative at d = 2048
#: costs about a minute on a 2-core CPU).
SAMPLES = {4: 10, 8: 10, 16: 10, 32: 10, 64: 10, 128: 10, 256: 5, 512: 3, 1024: 2, 2048: 1}
QUICK = {4: 4, 8: 4, 16: 4, 32: 4, 64: 3, 128: 3, 256: 2}
#: The corrected large-t formula replaces the exact derivative when g t >= this: its error
#: is then below kappa(V) ||J|| t e^{-g t} (question 1), e^{-60} ~ 1e-26, far under rounding.
ASYMPTOTIC_GT = 60.0
SLOPE_FROM = 64


def edge_probability(d: int) -> float:
    return min(1.0, 4 * np.log(d) / d)


def random_rate_matrix(d: int, ensemble: str, rng: np.random.Generator) -> np.ndarray:
    if ensemble == "exponential":
        Q = rng.exponential(size=(d, d))
    elif ensemble == "uniform":
        Q = rng.uniform(size=(d, d))
    elif ensemble == "sparse":
        Q = rng.exponential(size=(d, d)) * (rng.random((d, d)) < edge_probability(d))
        cycle = rng.permutation(d)
        Q[cycle, np.roll(cycle, -1)] += rng.exponential(size=d)
    else:
        raise ValueError(f"unknown ensemble {ensemble!r}; expected one of {ENSEMBLES}")
    np.fill_diagonal(Q, 0.0)
    return Q - np.diag(Q.sum(axis=1))


def directions(d: int, rng: np.random.Generator) -> np.ndarray:
    J = np.zeros((3, d, d))
    J[0, 0, 1] = 1.0
    J[1, 0, 1], J[1, 0, 0] = 1.0, -1.0
    J[2] = rng.normal(size=(d, d))
    J[2] /= np.linalg.norm(J[2])
    return J


def measure(Q: np.ndarray, J: np.ndarray, t: float = 1.0) -> dict:
    """Every section-3 quantity of one rate matrix, for each direction in ``J`` (k, d, d)."""
    d = len(Q)
    lam = np.linalg.eigvals(Q)
    zero = int(np.argmin(np.abs(lam)))
    rest = np.delete(lam, zero)
    sv = np.linalg.svd(Q, compute_uv=False)  # descending; the last is 0
    ones = np.ones(d)
    pi = np.linalg.solve((Q + 1.0).T, ones)
    pi /= pi.sum()
    Pi = np.outer(ones, pi)
    Qg = np.linalg.inv(Q - Pi) + Pi  # group inverse
    # Moore-Penrose with the zero singular value cut at 1e-10 sigma_max (numpy's default
    # 1e-15 sometimes keeps the rounded zero, ~1e-14, and returns 1e13-sized junk).
    Qp = np.linalg.pinv(Q, rcond=1e-10)
    gap = float(np.min(-rest.real))
    method = linest.Asymptotic() if gap * t >= ASYMPTOTIC_GT else linest.Exact()
    M = jnp.asarray(t * Q)
    E, L = frechet(M, jnp.asarray(t * J), method)
    E, L = np.asarray(E), np.asarray(L)
    if E.ndim == 3:
        E = E[0]
    out = {
        "d": d,
        "e_m": float(np.min(np.abs(rest))),
        "gap": gap,
        "sigma_m": float(sv[-2]),
        "sigma_M": float(sv[0]),
        "mean_offdiag": float((Q.sum() - np.trace(Q)) / (d * (d - 1))),
        "method": "asymptotic" if isinstance(method, linest.Asymptotic) else "exact",
    }
    identity = np.eye(d)
    for k, name in enumerate(DIRECTIONS):
        Jk = J[k]
        exact = L[k]
        naive = t * E @ Jk
        refined = naive - t * Pi @ Jk @ (identity - Pi)  # (I - Q#Q) J Q Q# = Pi J (I - Pi)
        size = np.linalg.norm(exact)
        diff = naive - exact
        out[name] = {
            "corrected_term": float(np.linalg.norm(Qg @ Jk @ Pi)),
            "notes_term": float(np.linalg.norm(Qp @ Jk @ (identity - Q @ Qp))),
            "exact_norm": float(size),
            "naive_abs": float(np.linalg.norm(diff)),
            "naive_rel": float(np.linalg.norm(diff) / size),
            "naive_cosine": float(np.vdot(naive, exact) / (np.linalg.norm(naive) * size)),
            "refined_abs": float(np.linalg.norm(refined - exact)),
            "J_norm": float(np.linalg.norm(Jk)),
        }
    return out


def ensemble(name: str, sizes: dict, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for d, count in sizes.items():
        for _ in range(count):
            Q = random_rate_matrix(d, name, rng)
            rows.append(measure(Q, directions(d, rng)))
    return rows


def medians(rows: list[dict], key, sizes) -> np.ndarray:
    return np.array([np.median([key(r) for r in rows if r["d"] == d]) for d in sizes])


QUANTITIES = {
    "e_m": lambda r: r["e_m"],
    "gap": lambda r: r["gap"],
    "sigma_m": lambda r: r["sigma_m"],
    "sigma_M": lambda r: r["sigma_M"],
    **{f"corrected_term {j}": (lambda r, j=j: r[j]["corrected_term"]) for j in DIRECTIONS},
    **{f"notes_term {j}": (lambda r, j=j: r[j]["notes_term"]) for j in DIRECTIONS},
    **{f"naive_rel {j}": (lambda r, j=j: r[j]["naive_rel"]) for j in DIRECTIONS},
    **{f"naive_abs {j}": (lambda r, j=j: r[j]["naive_abs"]) for j in DIRECTIONS},
    **{f"naive_cosine {j}": (lambda r, j=j: r[j]["naive_cosine"]) for j in DIRECTIONS},
    **{f"refined_abs {j}": (lambda r, j=j: r[j]["refined_abs"]) for j in DIRECTIONS},
}


def summarise(rows: list[dict], slope_from: int = SLOPE_FROM) -> dict:
    sizes = sorted({r["d"] for r in rows})
    fit = [d for d in sizes if d >= slope_from]
    table = {name: medians(rows, key, sizes) for name, key in QUANTITIES.items()}
    slopes = {
        name: loglog_slope(fit, values[[sizes.index(d) for d in fit]])
        for name, values in table.items()
        if "cosine" not in name
    }
    return {
        "sizes": sizes,
        "counts": [sum(r["d"] == d for r in rows) for d in sizes],
        "medians": {k: v.tolist() for k, v in table.items()},
        "slopes": slopes,
        "sigma_m_over_mu_d": [
            float(np.median([r["sigma_m"] / (r["mean_offdiag"] * d) for r in rows if r["d"] == d]))
            for d in sizes
        ],
        "asymptotic_used": [
            sum(r["method"] == "asymptotic" for r in rows if r["d"] == d) for d in sizes
        ],
    }


def check_asymptotic(seed: int = 5, d: int = 256) -> float:
    """Largest relative difference of the corrected formula and the exact derivative where
    ``measure`` would use the formula (g t >= ASYMPTOTIC_GT): a check of the substitution."""
    rng = np.random.default_rng(seed)
    Q = random_rate_matrix(d, "exponential", rng)
    J = jnp.asarray(directions(d, rng))
    _, a = frechet(jnp.asarray(Q), J, linest.Asymptotic())
    _, e = frechet(jnp.asarray(Q), J, linest.Exact())
    a, e = np.asarray(a), np.asarray(e)
    return float(max(np.linalg.norm(a[k] - e[k]) / np.linalg.norm(e[k]) for k in range(3)))


def figure_spectrum(out: Path, summaries: dict) -> str:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.3))
    for ax, name in zip(axes, ENSEMBLES):
        s = summaries[name]
        for k, q in enumerate(
            ("e_m", "gap", "sigma_m", "sigma_M", "corrected_term E12", "notes_term E12")
        ):
            label = f"{q} (slope {s['slopes'][q]:+.2f})"
            ax.loglog(s["sizes"], s["medians"][q], "o-", color=f"C{k}", ms=3, label=label)
        ax.set_title(name)
        ax.set_xlabel("d")
        ax.legend(fontsize=7)
    axes[0].set_ylabel("median over samples")
    fig.suptitle("Section 3: spectrum and correction terms of random rate matrices (J = E_12)")
    return save_figure(fig, out, "q2_spectrum.png")


def figure_surrogate(out: Path, summaries: dict) -> str:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.3))
    styles = {"E12": "-", "E12-E11": "--", "gaussian": ":"}
    for k, name in enumerate(ENSEMBLES):
        s = summaries[name]
        for j in DIRECTIONS:
            axes[0].loglog(
                s["sizes"],
                s["medians"][f"naive_rel {j}"],
                styles[j],
                color=f"C{k}",
                label=f"{name}, {j}",
            )
            axes[1].loglog(s["sizes"], s["medians"][f"refined_abs {j}"], styles[j], color=f"C{k}")
            axes[2].semilogx(
                s["sizes"], s["medians"][f"naive_cosine {j}"], styles[j], color=f"C{k}"
            )
    sizes = np.array(summaries["exponential"]["sizes"], float)
    axes[1].loglog(sizes, 2 / (1.0 * np.sqrt(sizes)), "k:", label=r"$2/(\mu\sqrt{d})$, $\mu = 1$")
    axes[0].set_title("relative error of t e^{tQ} J (t = 1)")
    axes[1].set_title("abs. error of Didier et al.'s refined approximation")
    axes[2].set_title("cosine(t e^{tQ} J, exact)")
    axes[1].legend(fontsize=7)
    axes[0].legend(fontsize=6, ncol=1)
    for ax in axes:
        ax.set_xlabel("d")
    return save_figure(fig, out, "q2_surrogate.png")


def main(out: Path, quick: bool = False) -> dict:
    sizes = QUICK if quick else SAMPLES
    rows = {name: ensemble(name, sizes, seed=k) for k, name in enumerate(ENSEMBLES)}
    summaries = {name: summarise(r) for name, r in rows.items()}
    numbers = {
        "ensembles": summaries,
        "t": 1.0,
        "asymptotic_check": check_asymptotic(),
        "figures": [figure_spectrum(out, summaries), figure_surrogate(out, summaries)],
    }
    write_numbers(out, "q2", numbers)
    return numbers


def section(n: dict) -> str:
    e = n["ensembles"]

    def slope(name, q):
        return f"{e[name]['slopes'][q]:+.2f}"

    rows = []
    for q in (
        "e_m",
        "gap",
        "sigma_m",
        "sigma_M",
        "corrected_term E12",
        "notes_term E12",
        "corrected_term gaussian",
        "naive_rel E12",
        "naive_rel E12-E11",
        "naive_rel gaussian",
        "naive_abs E12-E11",
        "refined_abs E12",
        "refined_abs gaussian",
    ):
        rows.append(f"| {q} | " + " | ".join(slope(name, q) for name in ENSEMBLES) + " |")

    cos = {name: e[name]["medians"]["naive_cosine E12-E11"][-1] for name in ENSEMBLES}
    largest = e["exponential"]["sizes"][-1]
    rel = {name: e[name]["medians"]["naive_rel E12-E11"][-1] for name in ENSEMBLES}
    ratio = e["exponential"]["sigma_m_over_mu_d"]
    sizes = e["exponential"]["sizes"]
    counts = ", ".join(f"{c} at d = {d}" for d, c in zip(sizes, e["exponential"]["counts"]))
    return f"""## 2. Section 3: high-dimensional asymptotics

**Setting.** Rate matrices with i.i.d. off-diagonal entries (Exp(1), Uniform(0, 1)) and
sparse Erdos-Renyi ones (Exp(1) on each edge with probability min(1, 4 log d / d), plus a
directed cycle for irreducibility), d = {sizes[0]} ... {sizes[-1]} ({counts}); directions
J = E_12 (the notes'), E_12 - E_11 (the derivative of Q in its rate q_12, what a gradient
needs) and a Gaussian J with ||J||_F = 1; t = 1. The exact derivative is linest's `Exact`,
replaced by the corrected large-t formula of question 1 (`Asymptotic`) where g t >= {ASYMPTOTIC_GT:g},
where question 1's bound puts its error below e^-60; at d = 256 the two agree to
{n["asymptotic_check"]:.1e} (relative).

**Didier, Glatt-Holtz, Holbrook, Magee and Suchard (PNAS 2024).** Their Theorem 3: for
i.i.d. non-negative sub-exponential off-diagonal entries with mean mu (or symmetric Q with
such entries), every non-zero singular value satisfies sigma_j(Q) / d = mu + O(sqrt(log d / d))
almost surely. Their Theorem 2 (symmetric Q, spectrum in [-mu_2 d, -mu_1 d] apart from 0):
the refined approximation t e^(tQ) J - t (I - Q+ Q) J Q Q+ has error at most
(mu_2/mu_1^2)(2/d + mu_1 + mu_2)(1 + t) e^(-t mu_1 d) + 2/(mu_1 d) in the operator norm
(times ||J||_op; 2/(mu_1 sqrt(d)) ||J||_F for the Frobenius norm), uniformly in t: the
"blessing of dimensionality". They prove no bound on the first-order surrogate's error
relative to the derivative, and nothing for sparse matrices whose mean entry tends to 0.

**Measured growth rates** (log-log slopes of the medians over d >= {SLOPE_FROM}):

| quantity | exponential | uniform | sparse |
|---|---|---|---|
{chr(10).join(rows)}

![spectrum and correction terms](q2_spectrum.png)

**Reading.** (i) For the dense ensembles e_m, g and sigma_m grow like d (slopes
{slope("exponential", "e_m")}, {slope("uniform", "e_m")} for e_m), as Theorem 3 says:
sigma_m / (mu d) for the exponential ensemble is {", ".join(f"{v:.2f}" for v in ratio[-4:])} at
d = {", ".join(str(d) for d in sizes[-4:])}, tending to 1. The sparse ensemble's mean entry tends
to 0 (p ~ 4 log d / d) and its spectrum grows far slower than d (e_m slope
{slope("sparse", "e_m")}: its smallest rates are those of its few-edged rows); it is outside
the theorem, and the notes' remark "e_m, sigma_m -> infinity" holds for it at best
logarithmically. (ii) Both correction terms shrink
with d (slopes in the table). For a rate direction (J = E_12 - E_11, J 1 = 0) the
corrected term Q# J Pi is exactly 0, since Pi = 1 pi^T. (iii) The blessing holds for
Didier et al.'s refined approximation, whose error falls faster than their 2/(mu sqrt(d))
bound (slopes about -1.5 against -0.5 for the dense ensembles; the bound is not tight).
It does **not** hold for the first-order surrogate's relative error: for J = E_12 - E_11
that error grows with d ({", ".join(f"{rel[n]:.3g} for {n}" for n in ENSEMBLES)} at the largest d),
because at t g >> 1 the exact derivative tends to -Pi J Q# (size ~ 1/(mu d^1.5)) while
t e^(tQ) J tends to t Pi J (size ~ t / sqrt(d)). The ratio is t mu d: at the largest d
the relative error divided by t mu d is {", ".join(f"{rel[n] / (MEANS[n] * largest):.2f} ({n})" for n in MEANS)}.
The absolute error falls like
1/sqrt(d) (naive_abs) but the derivative falls faster. Its direction stays close: the
cosine with the exact derivative is {", ".join(f"{cos[n]:.4f} ({n})" for n in ENSEMBLES)} at the
largest d. So the first-order surrogate can serve as an HMC force in high dimension (the
step-size adaptation absorbs a common scale, the exact accept step corrects the rest) but
not as a derivative to be trusted in size. A likelihood over several times t scales each
time's term by its own t mu d, so the sum can turn; question 3 measures the resulting
gradient errors on whole models.

![surrogate error against d](q2_surrogate.png)

**Caveat.** One time (t = 1) and unnormalised rates: the expected number of jumps per unit
time grows like d, so every chain here is near stationarity at t = 1. Few samples at the
largest sizes (one at d = 2048), so the slopes there rest on single matrices. The sparse
ensemble needs the added cycle to be irreducible, which changes its smallest rates.
**A sign.** Didier et al.'s general Theorem 1 (the affine-in-t asymptotic; the authors'
revision source, andrewjholbrook/expmDerivative, manuscript/pnas_revision.tex, eq.
ass:error) has the term -(I - Q+ Q) J Q+ under the norm; with Q+ = Q# (the generalized
inverse its assumptions single out for a rate matrix) the statement holds with +(I - Q+ Q) J Q+
instead, as question 1's derivation gives (-Pi J Q# in the limit). Question 1's test
checks this numerically; their Theorem 2 and the d-asymptotics do not depend on it.

Remake: `{command("q2_dimension.py")}`
"""


if __name__ == "__main__":
    run(main, __doc__)
