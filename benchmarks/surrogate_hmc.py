"""Posteriors of large models: exact-gradient NUTS against surrogate kernels, side by side
in one run.

    python benchmarks/surrogate_hmc.py [--problems advection,cav,ctmc20] [--chains 4]
                                       [--draws 500] [--warmup 200] [--exact-draws 100]
                                       [--surrogates gaussian,hmc:gaussian,...]

Every candidate samples the same posterior from ``init="mle"`` (the fit's whitened
coordinates): delayed-acceptance NUTS on each surrogate (``NAME``), jittered HMC
trajectories on a surrogate's force accepted with the exact energy (``hmc:NAME``), and
NUTS with the exact gradient. The table lists for each the wall time (fit, surrogate
construction, warm-up and draws), the min ESS_bulk over parameters, ESS/s (min ESS_bulk /
wall), max r_hat, divergences, the exact accept step's acceptance (the second stage of
delayed acceptance, the only stage of the trajectories), the leapfrog steps per draw and
the cost per draw (sampling seconds per chain-draw).

* advection: models/advection_diffusion_2d.toml (64 x 64 finite volumes, velocity on 8 x 8
  nodes, 130 parameters). Exact NUTS uses the model's default force (the exact gradient,
  ETDRK4's adjoint) on ``--exact-chains`` chains, ``--exact-draws`` draws after
  ``--exact-warmup`` warm-up steps: a 4 x 500 run of it would take hours (4 x 100 after
  100 warm-up steps had not finished after 25 min), so it reports its cost per draw and
  the ESS/s it could reach at most (2 ESS a draw, warm-up free).
* cav: models/cav.toml (msm's example, 7 rates, 2846 visits).
* ctmc20: a simulated 20-state chain with 200 rates, observed as a count table (5000
  subjects from each state over one time unit).
* warmup (not in the default set): NUTS on cav after 25 ... 400 warm-up steps from the
  default starts and from the fit.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
import warnings
from pathlib import Path

import jax
import numpy as np

import linest
from linest.sampling import SamplingWarning
from linest.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]


def _summary(tree):
    import arviz as az

    table = az.summary(tree, var_names=["theta"])
    return float(table["ess_bulk"].min()), float(table["r_hat"].max())


def run(name, model, data, prior, fit, fit_seconds, rows, **kwargs):
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamplingWarning)
        tree = linest.sample(model, data, prior, init=fit, progress=False, **kwargs)
    wall = time.perf_counter() - start + fit_seconds
    ess, rhat = _summary(tree)
    stats = tree["sample_stats"]
    draws = stats.sizes["chain"] * stats.sizes["draw"]
    if "second_stage_acceptance" in stats:
        second = float(stats["second_stage_acceptance"].mean())
    elif "surrogate_acceptance" in stats:  # one accept step, with the exact energy
        second = float(stats["acceptance_rate"].mean())
    else:
        second = float("nan")
    row = {
        "kernel": name,
        "chains x draws": f"{stats.sizes['chain']} x {stats.sizes['draw']}",
        "wall s": wall,
        "warm-up s": float(tree.attrs["linest_warmup_seconds"]),
        "min ESS": ess,
        "ESS/s": ess / wall,
        "max r_hat": f"{rhat:.4f}",
        "divergences": int(stats["diverging"].sum()),
        "exact acc.": second,
        "steps/draw": float(stats["n_steps"].mean()),
        "ms/draw": 1e3 * float(tree.attrs["linest_sampling_seconds"]) / draws,
    }
    rows.append(row)
    if tree.attrs.get("linest_surrogate_report"):
        print("  " + str(tree.attrs["linest_surrogate_report"]), flush=True)
    print(
        "  ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in row.values()),
        flush=True,
    )
    return tree


def table(problem, rows):
    print(f"\n{problem}")
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    best_exact = max((r["ESS/s"] for r in rows if r["kernel"].startswith("NUTS")), default=np.nan)
    for r in rows:
        cells = [f"{v:.3g}" if isinstance(v, float) else str(v) for v in r.values()]
        print("| " + " | ".join(cells) + " |")
    print(f"ESS/s against the best exact-gradient NUTS ({best_exact:.3g}):")
    for r in rows:
        print(f"  {r['kernel']:32s} {r['ESS/s'] / best_exact:8.2f}x")


def fit_first(model, data):
    from linest.fit import FitWarning

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)
        fit = linest.fit(model, data, assess_model_error=False)
    return fit, time.perf_counter() - start


def candidates(args, rows, model, data, prior, fit, seconds, exact_label="NUTS exact"):
    """Every surrogate of ``args.surrogates`` (delayed-acceptance NUTS; ``hmc:NAME``:
    jittered HMC trajectories on NAME's force, exact energy at the ends), then exact NUTS."""
    common = dict(num_chains=args.chains, num_warmup=args.warmup, num_samples=args.draws)
    for surrogate in filter(None, args.surrogates.split(",")):
        if surrogate.startswith("hmc:"):
            name = surrogate.removeprefix("hmc:")
            run(f"HMC trajectories on {name}", model, data, prior, fit, seconds, rows,
                surrogate=name, kernel="hmc", **common)  # fmt: skip
        else:
            run(f"delayed NUTS on {surrogate}", model, data, prior, fit, seconds, rows,
                surrogate=surrogate, **common)  # fmt: skip
    tree = run(exact_label, model, data, prior, fit, seconds, rows,
               num_chains=args.exact_chains or args.chains, num_warmup=args.exact_warmup,
               num_samples=args.exact_draws)  # fmt: skip
    return tree


def exact_bound(rows, tree):
    """A short exact-NUTS run's cost per draw, and the ESS/s it could reach at most (2 ESS
    per draw: NUTS on a near-Gaussian posterior is at best antithetic; warm-up free)."""
    stats = tree["sample_stats"]
    per_draw = float(tree.attrs["linest_sampling_seconds"]) / stats.sizes["draw"]
    bound = 2 / per_draw  # the chains run one after another here (one device)
    best = max((r["ESS/s"] for r in rows if not r["kernel"].startswith("NUTS")), default=np.nan)
    print(
        f"exact NUTS: {per_draw:.2f} s a draw per chain ({stats.sizes['chain']} chain(s), "
        f"{float(stats['n_steps'].mean()):.1f} leapfrog steps a draw, step size "
        f"{float(stats['step_size'].mean()):.3g}); at 2 ESS a draw and no warm-up its ESS/s "
        f"would be at most {bound:.3g}: the best surrogate kernel's {best:.3g} is "
        f">= {best / bound:.1f}x"
    )


def advection(args):
    spec = load_spec(ROOT / "models" / "advection_diffusion_2d.toml")
    data, prior = spec.read_data(), spec.priors
    fit, seconds = fit_first(spec.model, data)
    print(f"advection: fit {seconds:.1f} s, converged {fit.converged}")
    rows = []
    exact = "NUTS exact (ETDRK4 adjoint)"
    tree = candidates(args, rows, spec.model, data, prior, fit, seconds, exact)
    table("advection (130 parameters, 64 x 64)", rows)
    exact_bound(rows, tree)


def cav(args):
    spec = load_spec(ROOT / "models" / "cav.toml")
    data, prior = spec.read_data(), spec.priors
    fit, seconds = fit_first(spec.model, data)
    rows = []
    small = argparse.Namespace(**(vars(args) | {
        "surrogates": args.small_surrogates, "exact_warmup": args.warmup,
        "exact_draws": args.draws, "exact_chains": args.chains,
    }))  # fmt: skip
    candidates(small, rows, spec.model, data, prior, fit, seconds)
    table("cav (7 rates)", rows)


def ctmc20(args):
    import pandas as pd
    import scipy.linalg

    rng = np.random.default_rng(20261206)
    states = [f"s{i:02d}" for i in range(20)]
    transitions = [
        f"{states[i]}-{states[(i + k) % 20]}" for i in range(20) for k in range(1, 11)
    ]  # every state to the next ten: 200 rates
    model = linest.CTMC(states, transitions)
    rates = np.exp(rng.normal(np.log(0.05), 0.7, len(transitions)))
    Q = np.zeros((20, 20))
    for (i, j), q in zip(model.transitions, rates):
        Q[i, j] = q
    np.fill_diagonal(Q, -Q.sum(axis=1))
    P = scipy.linalg.expm(Q)
    rows_ = []
    for i in range(20):
        counts = rng.multinomial(5000, P[i] / P[i].sum())
        for j in range(20):
            rows_.append({"from": states[i], "to": states[j], "count": int(counts[j]), "lag": 1.0})
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "counts.csv"
        pd.DataFrame(rows_).to_csv(path, index=False)
        data = linest.read_chains(
            path, kind="counts", state_from="from", state_to="to", count="count", lag="lag"
        )
    prior = {"log_rate": {"normal": [-3.0, 1.5]}}
    fit, seconds = fit_first(model, data)
    print(f"ctmc20: fit {seconds:.1f} s, converged {fit.converged}")
    rows = []
    small = argparse.Namespace(**(vars(args) | {
        "surrogates": args.small_surrogates, "exact_warmup": args.warmup,
        "exact_draws": args.draws, "exact_chains": args.chains,
    }))  # fmt: skip
    candidates(small, rows, model, data, prior, fit, seconds)
    table("CTMC, 20 states, 200 rates, count table", rows)


def warmup(args):
    """How many warm-up steps NUTS needs from the fit (init="mle", whitened) against the
    default starts, on cav: max r_hat, min ESS_bulk, divergences and step size after each
    warm-up length (4 x 500 draws, three seeds each)."""
    spec = load_spec(ROOT / "models" / "cav.toml")
    data, prior = spec.read_data(), spec.priors
    fit, _ = fit_first(spec.model, data)
    print("\nwarm-up on cav (NUTS, exact gradient, 4 x 500 draws; three seeds: worst of them)")
    print("| start | warm-up steps | max r_hat | min ESS_bulk | divergences | warm-up s |")
    print("|---|---|---|---|---|---|")
    for init in (None, fit):
        for steps in (25, 50, 100, 200, 400):
            rhats, esss, divs, secs = [], [], [], []
            for seed in range(3):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", SamplingWarning)
                    tree = linest.sample(
                        spec.model, data, prior, num_chains=4, num_warmup=steps,
                        num_samples=500, init=init, rng_key=seed, progress=False,
                    )  # fmt: skip
                ess, rhat = _summary(tree)
                rhats.append(rhat)
                esss.append(ess)
                divs.append(int(tree["sample_stats"]["diverging"].sum()))
                secs.append(float(tree.attrs["linest_warmup_seconds"]))
            start = "the fit (init='mle')" if init is not None else "default"
            print(f"| {start} | {steps} | {max(rhats):.3f} | {min(esss):.0f} | {max(divs)} "
                  f"| {np.median(secs):.1f} |", flush=True)  # fmt: skip


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", default="advection,cav,ctmc20")
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--exact-chains", type=int, default=1, help="advection's exact NUTS")
    parser.add_argument("--exact-warmup", type=int, default=50)
    parser.add_argument("--exact-draws", type=int, default=20)
    parser.add_argument(
        "--surrogates", default="gaussian,hmc:gaussian,learned,laplace,affine:coarse:2"
    )
    parser.add_argument("--small-surrogates", default="laplace,gaussian,hmc:gaussian,learned")
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {jax.devices()[0].platform} x {len(jax.devices())}, "
        f"jax {jax.__version__}; columns: " + "kernel, chains x draws, wall s (fit + warm-up "
        "+ draws), warm-up s, min ESS_bulk, ESS/s, max r_hat, divergences, the exact "
        "accept step's acceptance, leapfrog steps/draw, ms/draw"
    )
    for problem in args.problems.split(","):
        {"advection": advection, "cav": cav, "ctmc20": ctmc20, "warmup": warmup}[problem](args)


if __name__ == "__main__":
    main()
