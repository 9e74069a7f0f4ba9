"""Question 1: the notes' Theorem 2.1 (large-t derivative of exp(tQ)), as stated and corrected.

    python examples/study/q1_theorem.py [--out docs/study] [--quick]

For random irreducible rate matrices Q (reversible, non-reversible with i.i.d. exponential
rates, and sparse Erdos-Renyi) and random directions J, compares the exact derivative
D_J exp(tQ) (linest's ``Exact``, checked against scipy in the tests) with

* the notes' statement (2.10): t e^{tQ} J - e^{tQ} J Q^+ (I + tQ) + Q^+ J (I - Q Q^+),
  Q^+ the Moore-Penrose pseudo-inverse;
* the corrected statement (design/gradients.md, section 3), linest's ``Asymptotic``:
  t Pi J Pi - Pi J Q# - Q# J Pi, Pi = 1 pi^T, Q# the group inverse;

and with the bound this study proves for diagonalizable Q = V diag(lambda) V^-1:

    || D_J e^{tQ} - (t Pi J Pi - Pi J Q# - Q# J Pi) ||_F
        <= kappa_2(V) ||V^-1 J V||_F max(t, 1/e_m) e^{-g t},

g the spectral gap (min -Re lambda over the non-zero eigenvalues), e_m = min |lambda| over
the same. Writes q1_error_vs_t.png, q1_rates.png and q1.json.
"""

from __future__ import annotations

from pathlib import Path

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from _common import command, run, save_figure, write_numbers

import linest

#: One compiled program per (method, shape): the study calls it many times.
frechet = eqx.filter_jit(linest.expm_frechet)

CLASSES = ("reversible", "non-reversible", "sparse")
CHECK_TIMES = (5.0, 10.0, 20.0)
#: Rounding allowance on top of the bound: the exact derivative is computed in float64
#: with a relative error of a few 1e-15 of its own size (which grows like t).
FLOOR = 1e-11


def random_generator(d: int, kind: str, rng: np.random.Generator, gap: float | None = None):
    """An irreducible rate matrix of one of the three classes, rescaled to spectral gap ``gap``.

    * ``reversible``: Q_ij = S_ij pi_j, S symmetric with Exp(1) entries, pi ~ Dirichlet(1)
      (detailed balance pi_i Q_ij = pi_j Q_ji holds by construction);
    * ``non-reversible``: Q_ij ~ Exp(1) i.i.d.;
    * ``sparse``: Q_ij ~ Exp(1) on the edges of an Erdos-Renyi graph with edge
      probability min(1, 3 log(d) / d), plus a directed cycle so that it is irreducible.
    """
    if kind == "reversible":
        S = rng.exponential(size=(d, d))
        S = np.triu(S, 1) + np.triu(S, 1).T
        pi = rng.dirichlet(np.ones(d))
        Q = S * pi[None, :]
    elif kind == "non-reversible":
        Q = rng.exponential(size=(d, d))
    elif kind == "sparse":
        p = min(1.0, 3 * np.log(d) / d)
        Q = rng.exponential(size=(d, d)) * (rng.random((d, d)) < p)
        cycle = rng.permutation(d)
        Q[cycle, np.roll(cycle, -1)] += rng.exponential(size=d)
    else:
        raise ValueError(f"unknown class {kind!r}; expected one of {CLASSES}")
    np.fill_diagonal(Q, 0.0)
    Q -= np.diag(Q.sum(axis=1))
    if gap is not None:
        Q *= gap / spectrum(Q)["gap"]
    return Q


def spectrum(Q: np.ndarray) -> dict:
    """Eigen-facts of a generator: gap g, e_m, kappa_2(V), V and its inverse, the zero's index."""
    lam, V = np.linalg.eig(Q)
    zero = int(np.argmin(np.abs(lam)))
    rest = np.delete(lam, zero)
    return {
        "lam": lam,
        "V": V,
        "Vinv": np.linalg.inv(V),
        "zero": zero,
        "gap": float(np.min(-rest.real)),
        "e_m": float(np.min(np.abs(rest))),
        "kappa": float(np.linalg.cond(V)),
    }


def notes_form(Q: np.ndarray, J: np.ndarray, t: float) -> np.ndarray:
    """The notes' (2.10) solved for the derivative: t e^{tQ}J - e^{tQ}JQ^+(I+tQ) + Q^+J(I-QQ^+)."""
    from scipy.linalg import expm

    E = expm(t * Q)
    P = np.linalg.pinv(Q, rcond=1e-10)  # cut the rounded zero singular value
    identity = np.eye(len(Q))
    return t * E @ J - E @ J @ P @ (identity + t * Q) + P @ J @ (identity - Q @ P)


def group_inverse(Q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Q#, Pi): Pi = 1 pi^T and Q# = (Q - Pi)^-1 + Pi (Meyer 1975)."""
    d = len(Q)
    pi = np.linalg.solve((Q + 1.0).T, np.ones(d))
    Pi = np.outer(np.ones(d), pi / pi.sum())
    return np.linalg.inv(Q - Pi) + Pi, Pi


def didier_form(Q: np.ndarray, J: np.ndarray, t: float, sign: float = -1.0) -> np.ndarray:
    """Theorem 1 of Didier et al. (PNAS 2024) solved for the derivative, with Q+ = Q#:
    t e^{tQ} J - [Q+ J (I - Q Q+) + sign (I - Q+ Q) J Q+ + t (I - Q+ Q) J Q Q+].

    ``sign = -1`` is the statement as printed (eq. ass:error of the authors' revision
    source); ``+1`` is the sign this study's derivation gives.
    """
    from scipy.linalg import expm

    P, Pi = group_inverse(Q)
    identity = np.eye(len(Q))
    X = P @ J @ Pi + sign * Pi @ J @ P + t * Pi @ J @ (identity - Pi)
    return t * expm(t * Q) @ J - X


def derivatives(Q: np.ndarray, J: np.ndarray, times) -> tuple[np.ndarray, np.ndarray]:
    """(exact, corrected asymptotic) D_J exp(tQ) for every t, from linest's engine (batched)."""
    times = np.asarray(times, float)
    M = jnp.asarray(times[:, None, None] * Q)
    E = jnp.asarray(times[:, None, None] * J)
    _, exact = frechet(M, E, linest.Exact())
    _, asymptotic = frechet(M, E, linest.Asymptotic())
    return np.asarray(exact), np.asarray(asymptotic)


def bound(facts: dict, J: np.ndarray, times) -> np.ndarray:
    """kappa_2(V) ||V^-1 J V||_F max(t, 1/e_m) exp(-g t) (proof in study.md, section 1)."""
    times = np.asarray(times, float)
    Jbar = facts["Vinv"] @ J @ facts["V"]
    C = facts["kappa"] * np.linalg.norm(Jbar)
    return C * np.maximum(times, 1 / facts["e_m"]) * np.exp(-facts["gap"] * times)


def ensemble(num: int, kind: str, seed: int, times=CHECK_TIMES) -> dict:
    """``num`` random generators (d in 3..8, gap in [0.3, 1.5]) and Gaussian J, ||J||_F = 1.

    Per generator: errors of the corrected and of the notes' form at each t, the bound,
    and the decay rate fitted to log(error / max(t, 1/e_m)) against the gap.
    """
    rng = np.random.default_rng(seed)
    rows = []
    sweep = np.linspace(0.5, 25.0, 50)
    for _ in range(num):
        d = int(rng.integers(3, 9))
        Q = random_generator(d, kind, rng, gap=float(rng.uniform(0.3, 1.5)))
        J = rng.normal(size=(d, d))
        J /= np.linalg.norm(J)
        facts = spectrum(Q)
        grid = np.concatenate([np.asarray(times, float), sweep])
        exact, corrected = derivatives(Q, J, grid)
        err = np.linalg.norm(exact - corrected, axis=(-1, -2))
        size = np.linalg.norm(exact, axis=(-1, -2))
        notes = np.array(
            [np.linalg.norm(exact[k] - notes_form(Q, J, t)) for k, t in enumerate(times)]
        )
        didier = np.array(
            [
                [np.linalg.norm(exact[k] - didier_form(Q, J, t, sign)) for sign in (-1.0, 1.0)]
                for k, t in enumerate(times)
            ]
        )
        b = bound(facts, J, grid)
        k = len(times)
        s_err, s_b = err[k:], b[k:]
        keep = s_err > 1e3 * FLOOR * (1 + size[k:])  # above rounding
        rate = (
            float(
                -np.polyfit(
                    sweep[keep], np.log(s_err[keep] / np.maximum(sweep[keep], 1 / facts["e_m"])), 1
                )[0]
            )
            if keep.sum() >= 4
            else float("nan")
        )
        rows.append(
            {
                "d": d,
                "gap": facts["gap"],
                "e_m": facts["e_m"],
                "kappa": facts["kappa"],
                "error": err[:k],
                "bound": b[:k],
                "size": size[:k],
                "notes_error": notes,
                "didier_printed_error": didier[:, 0],
                "didier_fixed_error": didier[:, 1],
                "within": bool(np.all(err[:k] <= b[:k] + FLOOR * (1 + size[:k]))),
                "within_sweep": bool(np.all(s_err <= s_b + FLOOR * (1 + size[k:]))),
                "rate": rate,
                "ratio": float(np.max(s_err[keep] / s_b[keep])) if keep.any() else float("nan"),
            }
        )
    return {"class": kind, "times": list(times), "rows": rows}


def summarise(result: dict) -> dict:
    rows = result["rows"]
    notes = np.array([r["notes_error"] for r in rows])
    rates = np.array([r["rate"] / r["gap"] for r in rows])
    rates = rates[np.isfinite(rates)]
    ratio = np.array([r["ratio"] for r in rows])
    ratio = ratio[np.isfinite(ratio)]
    return {
        "class": result["class"],
        "generators": len(rows),
        "within_bound": int(sum(r["within"] for r in rows)),
        "within_bound_sweep": int(sum(r["within_sweep"] for r in rows)),
        "max_corrected_error": [
            float(max(r["error"][i] for r in rows)) for i in range(len(result["times"]))
        ],
        "notes_error_median": [float(v) for v in np.median(notes, axis=0)],
        "notes_error_min": [float(v) for v in np.min(notes, axis=0)],
        "notes_fail_at_20": int(np.sum(notes[:, -1] > 1e-3)),
        "didier_printed_median": [
            float(v) for v in np.median([r["didier_printed_error"] for r in rows], axis=0)
        ],
        "didier_fixed_max": [
            float(v) for v in np.max([r["didier_fixed_error"] for r in rows], axis=0)
        ],
        "rate_over_gap_median": float(np.median(rates)) if rates.size else float("nan"),
        "rate_over_gap_range": [float(rates.min()), float(rates.max())] if rates.size else [],
        "error_over_bound_max": float(ratio.max()) if ratio.size else float("nan"),
        "error_over_bound_median": float(np.median(ratio)) if ratio.size else float("nan"),
    }


def figure_error_vs_t(out: Path, seed: int) -> tuple[str, list]:
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(seed)
    times = np.geomspace(0.1, 40.0, 60)
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2), sharey=True)
    examples = []
    for ax, kind in zip(axes, CLASSES):
        Q = random_generator(5, kind, rng, gap=0.8)
        J = np.zeros((5, 5))
        J[0, 1] = 1.0  # E_12, as in the notes' section 3
        facts = spectrum(Q)
        exact, corrected = derivatives(Q, J, times)
        err = np.linalg.norm(exact - corrected, axis=(-1, -2))
        notes = [np.linalg.norm(exact[k] - notes_form(Q, J, t)) for k, t in enumerate(times)]
        b = bound(facts, J, times)
        ax.loglog(times, err, "C0-", label="corrected (group inverse Q#)")
        ax.loglog(times, notes, "C3--", label="notes' (2.10) (pseudo-inverse Q+)")
        printed = [np.linalg.norm(exact[k] - didier_form(Q, J, t)) for k, t in enumerate(times)]
        ax.loglog(times, printed, "C1-.", label="Didier et al. Thm 1 as printed (Q+ = Q#)")
        ax.loglog(times, b, "k:", label=r"bound $\kappa\,\|\bar J\|\,\max(t, 1/e_m)\,e^{-gt}$")
        ax.set_ylim(1e-16, 1e2)
        ax.set_title(f"{kind}, d = 5, g = {facts['gap']:.2f}, kappa(V) = {facts['kappa']:.1f}")
        ax.set_xlabel("t")
        examples.append(
            {
                "class": kind,
                "gap": facts["gap"],
                "notes_error_at_1": float(notes[np.searchsorted(times, 1.0)]),
                "notes_error_at_40": float(notes[-1]),
                "corrected_error_at_10": float(err[np.searchsorted(times, 10.0)]),
            }
        )
    axes[0].set_ylabel(r"$\|D_J e^{tQ} - \mathrm{formula}\|_F$, $J = E_{12}$")
    axes[0].legend(fontsize=8, loc="lower left")
    fig.suptitle(
        "Theorem 2.1: the notes' statement does not converge; the corrected one decays like t e^{-gt}"
    )
    return save_figure(fig, out, "q1_error_vs_t.png"), examples


def figure_rates(out: Path, results: list[dict]) -> str:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for k, result in enumerate(results):
        # left: decay rate against the gap; right: error over bound against kappa(V)
        for ax, x, y in ((axes[0], "gap", "rate"), (axes[1], "kappa", "ratio")):
            rows = [r for r in result["rows"] if np.isfinite(r[y])]
            ax.scatter(
                [r[x] for r in rows],
                [r[y] for r in rows],
                s=12,
                color=f"C{k}",
                label=result["class"],
            )
    lim = [0.2, 1.6]
    axes[0].plot(lim, lim, "k:", label="rate = g")
    axes[0].set_xlabel("spectral gap g")
    axes[0].set_ylabel("fitted decay rate of the error")
    axes[0].legend(fontsize=8)
    from matplotlib.ticker import NullFormatter

    axes[1].set_xscale("log")
    axes[1].set_yscale("log")
    axes[1].xaxis.set_minor_formatter(NullFormatter())
    axes[1].axhline(1.0, color="k", ls=":")
    axes[1].set_xlabel(r"$\kappa_2(V)$")
    axes[1].set_ylabel("max over t of error / bound")
    axes[1].set_title("the bound holds (all points below 1)")
    return save_figure(fig, out, "q1_rates.png")


def main(out: Path, quick: bool = False) -> dict:
    num = 10 if quick else 50
    results = [ensemble(num, kind, seed=k) for k, kind in enumerate(CLASSES)]
    figure, examples = figure_error_vs_t(out, seed=11)
    numbers = {
        "times": list(CHECK_TIMES),
        "classes": [summarise(r) for r in results],
        "examples": examples,
        "figures": [figure, figure_rates(out, results)],
    }
    write_numbers(out, "q1", numbers)
    return numbers


def section(n: dict) -> str:
    rows = []
    for c in n["classes"]:
        rows.append(
            f"| {c['class']} | {c['generators']} | {c['within_bound']}/{c['generators']} | "
            + " / ".join(f"{v:.1e}" for v in c["max_corrected_error"])
            + " | "
            + " / ".join(f"{v:.2f}" for v in c["notes_error_median"])
            + f" | {c['notes_fail_at_20']}/{c['generators']} | {c['rate_over_gap_median']:.3f} | "
            f"{c['error_over_bound_median']:.2g} (max {c['error_over_bound_max']:.2g}) |"
        )
    times = " / ".join(f"{t:g}" for t in n["times"])
    ex = {e["class"]: e for e in n["examples"]}
    nonrev = ex["non-reversible"]
    return f"""## 1. Theorem 2.1: where the extra term comes from, and the statement that holds

**Claim.** The notes' statement (2.10), with the Moore-Penrose pseudo-inverse Q+ and the
term `+ Q+ J (I - Q Q+)`, does not converge as t grows. The statement that holds replaces
Q+ by the group inverse Q# and reads

    D_J exp(tQ) = t Pi J Pi - Pi J Q# - Q# J Pi + R(t),
    ||R(t)||_F <= kappa_2(V) ||V^-1 J V||_F max(t, 1/e_m) exp(-g t),

for any diagonalizable irreducible generator Q = V diag(lambda) V^-1, with Pi = 1 pi^T the
projector on the stationary distribution, g the spectral gap (min -Re lambda over the
non-zero eigenvalues) and e_m the smallest non-zero |lambda|. This fills in the constants
the notes leave blank in (2.11): kappa = g, C = kappa_2(V) ||V^-1 J V||_F max(t, 1/e_m)
(at most kappa_2(V)^2 ||J||_F max(t, 1/e_m)).

**Derivation.** Write the variation-of-constants integral (notes, 1.4) as
D_J exp(tQ) = int_0^t e^((t-s)Q) J e^(sQ) ds and split J = (Pi + (I - Pi)) J (Pi + (I - Pi)).
Since e^(sQ) Pi = Pi e^(sQ) = Pi and int_0^inf e^(uQ) (I - Pi) du = -Q#:
the Pi J Pi part integrates to t Pi J Pi; the (I - Pi) J Pi part to
int_0^t e^(uQ)(I - Pi) du J Pi -> -Q# J Pi; the Pi J (I - Pi) part to -Pi J Q#; the
(I - Pi) J (I - Pi) part decays. In the eigenbasis this is exact: D_J e^(tQ) =
V (Jbar o Phi(t)) V^-1 with Jbar = V^-1 J V and the divided differences
Phi_ij = (e^(t l_i) - e^(t l_j)) / (l_i - l_j) (notes, proof of 2.1). The three terms
above are Phi's limit: t on the (0, 0) entry, -1/l_j and -1/l_i on the zero row and
column, 0 elsewhere. The remainder has entries e^(t l_j)/l_j (zero row and column,
modulus <= e^(-gt)/e_m) and Phi_ij itself for two non-zero eigenvalues (modulus
<= t e^(-gt): the divided difference of e^(t.) is t times an average of e^(t l) on the
segment between them). Hence ||R||_F <= ||V||_2 ||V^-1||_2 ||Jbar o (Phi - Phi_inf)||_F and
the bound. The notes' heuristic (2.5)-(2.6) used Q = Q Q+ Q = Q+ Q^2, which needs Q+ to
commute with Q; the pseudo-inverse does only when pi is uniform (Q Q+ projects orthogonally
off pi, Q+ Q off the vector of ones), the group inverse always (Q Q# = Q# Q = I - Pi). That
is where the spurious `Q+ J (I - Q Q+)` comes from: it is the leftover of a projector
taken on the wrong side.

**Measurement.** {n["classes"][0]["generators"]} random generators per class (d from 3 to 8, rescaled to a
gap g in [0.3, 1.5]), Gaussian J with ||J||_F = 1, at t = {times}; the exact derivative is
linest's `Exact` (Frechet derivative), the corrected form linest's `Asymptotic`.

| class | generators | corrected form within the bound (t = {times}) | max corrected error (t = {times}) | median error of the notes' form | notes' form error > 1e-3 at t = 20 | fitted decay rate / g (median) | error / bound over t in [0.5, 25], median (max) |
|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

"Within the bound" allows {FLOOR:g} (1 + ||D_J e^(tQ)||_F) for rounding in float64. The
notes' form stays at the size of its spurious term (median over the ensemble above) and
does not decay with t; in the example of the first figure (non-reversible, d = 5,
J = E_12) its error is {nonrev["notes_error_at_1"]:.2f} at t = 1 and
{nonrev["notes_error_at_40"]:.2f} at t = 40, while the corrected form's is
{nonrev["corrected_error_at_10"]:.1e} at t = 10.

![error against t](q1_error_vs_t.png)

The error decays at the rate predicted: the decay rate fitted to
log(error / max(t, 1/e_m)) over t in [0.5, 25] divided by the gap has the median in the
table (1 means exactly g). The right panel shows the error over the bound, never above 1;
the bound is loose by the factor kappa_2(V) and by the norm inequalities.

![decay rates and tightness](q1_rates.png)

**The same term in Didier et al. (PNAS 2024).** Their Theorem 1 (an affine-in-t
asymptotic for the same error, with a generalized inverse Q+ that commutes with Q, which
for a rate matrix is the group inverse Q#) puts -(I - Q+ Q) J Q+ under the norm (eq.
ass:error of the authors' revision source, andrewjholbrook/expmDerivative,
manuscript/pnas_revision.tex; the published PDF was not checked). With Q+ = Q#,
I - Q+ Q = Pi, and that term is -Pi J Q#; the derivation above gives the opposite sign.
Measured: the statement as printed keeps an error of median
{" / ".join(f"{v:.2f}" for v in n["classes"][1]["didier_printed_median"])} at t = {times}
(non-reversible class; the dash-dotted line in the first figure), while with the sign
flipped its largest error is {" / ".join(f"{v:.1e}" for v in n["classes"][1]["didier_fixed_max"])}. Their
high-dimensional results (Theorem 2, the refined approximation) drop this term into the
O(1/d) remainder and do not depend on its sign.

**Caveat.** The bound needs Q diagonalizable; a defective Q (a Jordan block at the gap)
adds a polynomial factor t^(k-1). The corrected form is an asymptotic statement: for
t g below about 5 its error is not small (linest's `Asymptotic` says so in its docstring,
and `linest compare` shows it). Reversible generators are the friendly case
(kappa_2(V) <= sqrt(max pi / min pi)).

Remake: `{command("q1_theorem.py")}`
"""


if __name__ == "__main__":
    run(main, __doc__)
