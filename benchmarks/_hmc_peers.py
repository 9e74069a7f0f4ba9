"""Peer side of the HMC benchmark: NUTS on the cav CTMC with numpyro or PyMC.

Runs under its own interpreter, the venv in .venv-peers (requirements-peers.txt):

    .venv-peers/bin/python benchmarks/_hmc_peers.py --peer numpyro|pymc \
        --chains 4 --warmup 1000 --draws 1000 --seed 0 --json OUT.json

Model (as msm(state ~ years, subject = PTNUM, data = cav, deathexact = 4)): 4 states,
transitions 1-2, 1-4, 2-1, 2-3, 2-4, 3-2, 3-4; theta = log-rates in that order, prior
theta_k ~ Normal(-2, 2). Panel intervals (t_i, a) -> (t_{i+1}, b): log P(dt)[a, b], or,
when b is death (4), log sum_j P(dt)[a, j] Q[j, 4] (exact death time). Intervals are
grouped into cells (distinct dt, a, b) with counts; expm is called once per distinct dt,
batched (numpyro: vmap of jax.scipy.linalg.expm; PyMC: pytensor's Blockwise Expm on a
(n_dt, 4, 4) tensor, gradient by its augmented-matrix Frechet pullback).

Each peer: one sampling call timed including compilation, then a second call (new seed)
timed; one log-density+gradient evaluation timed (median); ESS, acceptance, step size,
leapfrog steps, divergences, r_hat, posterior means and sds. JSON to --json; a failed
peer still writes JSON with an "error" field.
"""

import argparse
import itertools
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path

# Before numpy (and PyMC/pytensor) load BLAS: one thread per process.
for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ[_var] = "1"

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TRANSITIONS = [(1, 2), (1, 4), (2, 1), (2, 3), (2, 4), (3, 2), (3, 4)]
NAMES = [f"{r}-{s}" for r, s in TRANSITIONS]
N_STATES, DEATH = 4, 4
MLE_RATES = [0.12788, 0.04249, 0.22511, 0.34260, 0.04026, 0.13062, 0.30646]
MSM_M2LL = 3968.798
PRIOR_MU, PRIOR_SD = -2.0, 2.0
ROWS = np.array([r - 1 for r, _ in TRANSITIONS])
COLS = np.array([s - 1 for _, s in TRANSITIONS])


# ----------------------------------------------------------------------------- data
def load_cells(path=ROOT / "data" / "cav.csv"):
    """Cells (dt index, from state, to state, count, exact-death flag) and distinct dts."""
    import csv

    with open(path, newline="") as fh:
        rows = [(r["PTNUM"], float(r["years"]), int(r["state"])) for r in csv.DictReader(fh)]
    by_subject = {}
    for subj, t, s in rows:
        by_subject.setdefault(subj, []).append((t, s))
    pairs = []
    for obs in by_subject.values():
        obs.sort(key=lambda x: x[0])
        for (t0, a), (t1, b) in itertools.pairwise(obs):
            if a == DEATH and b == DEATH:
                continue
            pairs.append((round(t1 - t0, 10), a, b))
    dts = np.array(sorted({p[0] for p in pairs}))
    dt_index = {dt: i for i, dt in enumerate(dts)}
    counts = {}
    for dt, a, b in pairs:
        key = (dt_index[dt], a - 1, b - 1)
        counts[key] = counts.get(key, 0) + 1
    keys = sorted(counts)
    cells = {
        "dt_idx": np.array([k[0] for k in keys]),
        "a": np.array([k[1] for k in keys]),
        "b": np.array([k[2] for k in keys]),
        "count": np.array([counts[k] for k in keys], dtype=np.float64),
    }
    cells["death"] = (cells["b"] == DEATH - 1) & (cells["a"] != DEATH - 1)
    info = {
        "subjects": len(by_subject),
        "observations": len(rows),
        "intervals": len(pairs),
        "distinct_dt": len(dts),
        "cells": len(keys),
        "exact_death_intervals": int(cells["count"][cells["death"]].sum()),
    }
    return dts, cells, info


def reference_m2ll(theta, dts, cells):
    """-2 log-likelihood with numpy/scipy (independent of either peer)."""
    from scipy.linalg import expm

    Q = np.zeros((N_STATES, N_STATES))
    Q[ROWS, COLS] = np.exp(theta)
    Q[np.diag_indices(N_STATES)] = -Q.sum(1)
    P = expm(dts[:, None, None] * Q)  # scipy >= 1.9 batches over leading axes
    PQ = P @ Q
    d, a, b = cells["dt_idx"], cells["a"], cells["b"]
    prob = np.where(cells["death"], PQ[d, a, DEATH - 1], P[d, a, b])
    return -2.0 * float(np.sum(cells["count"] * np.log(prob)))


# ------------------------------------------------------------------------ summaries
def posterior_summary(theta_draws, sample_stats):
    """theta_draws (chains, draws, 7); sample_stats: dict of (chains, draws) arrays."""
    import arviz as az

    ess_bulk = np.asarray(
        [
            float(az.ess(theta_draws[:, :, k], method="bulk", chain_axis=0, draw_axis=1))
            for k in range(len(NAMES))
        ]
    )
    ess_tail = np.asarray(
        [
            float(
                az.ess(
                    theta_draws[:, :, k],
                    method="tail",
                    prob=(0.05, 0.95),
                    chain_axis=0,
                    draw_axis=1,
                )
            )
            for k in range(len(NAMES))
        ]
    )
    r_hat = np.asarray(
        [float(az.rhat(theta_draws[:, :, k], chain_axis=0, draw_axis=1)) for k in range(len(NAMES))]
    )
    flat = theta_draws.reshape(-1, len(NAMES))
    out = {
        "ess_bulk": dict(zip(NAMES, ess_bulk.tolist())),
        "ess_tail": dict(zip(NAMES, ess_tail.tolist())),
        "min_ess_bulk": float(ess_bulk.min()),
        "min_ess_tail": float(ess_tail.min()),
        "r_hat": dict(zip(NAMES, r_hat.tolist())),
        "max_r_hat": float(r_hat.max()),
        "posterior_mean": dict(zip(NAMES, flat.mean(0).tolist())),
        "posterior_sd": dict(zip(NAMES, flat.std(0, ddof=1).tolist())),
        "mean_accept": float(np.mean(sample_stats["accept"])),
        "mean_step_size": float(np.mean(sample_stats["step_size"])),
        "step_size_per_chain": np.mean(sample_stats["step_size"], axis=1).tolist(),
        "mean_leapfrog_steps": float(np.mean(sample_stats["n_steps"])),
        "total_leapfrog_steps": int(np.sum(sample_stats["n_steps"])),
        "divergences": int(np.sum(sample_stats["diverging"])),
        "max_treedepth_hits": (
            None
            if sample_stats.get("max_depth_hit") is None
            else int(np.sum(sample_stats["max_depth_hit"]))
        ),
    }
    return out


def median_ms(fn, repeats=50, warm=5):
    for _ in range(warm):
        fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(ts))


# -------------------------------------------------------------------------- numpyro
def run_numpyro(args, dts, cells, result):
    import numpyro

    numpyro.set_host_device_count(args.chains)
    numpyro.enable_x64()
    import jax
    import jax.numpy as jnp
    import numpyro.distributions as dist
    from jax.scipy.linalg import expm
    from numpyro.infer import MCMC, NUTS
    from numpyro.infer.util import initialize_model

    jax.config.update("jax_enable_x64", True)
    result["versions"].update(
        jax=jax.__version__,
        jaxlib=jax.lib.__version__ if hasattr(jax.lib, "__version__") else None,
        numpyro=numpyro.__version__,
    )
    result["devices"] = [str(d) for d in jax.devices()]
    result["expm"] = (
        "jax.vmap(jax.scipy.linalg.expm) over (n_dt, 4, 4); gradient by JAX "
        "autodiff through it (under vmap every Pade branch and all 16 "
        "scan squarings run for every matrix)"
    )

    dts_j = jnp.asarray(dts)
    d, a, b = (jnp.asarray(cells[k]) for k in ("dt_idx", "a", "b"))
    count, death = jnp.asarray(cells["count"]), jnp.asarray(cells["death"])
    rows, cols = jnp.asarray(ROWS), jnp.asarray(COLS)

    def loglik(theta):
        Q = jnp.zeros((N_STATES, N_STATES)).at[rows, cols].set(jnp.exp(theta))
        Q = Q - jnp.diag(Q.sum(1))
        P = jax.vmap(expm)(dts_j[:, None, None] * Q)
        death_prob = P[d, a, :] @ Q[:, DEATH - 1]  # Q[4, 4] = 0: sum over j = 1..3
        prob = jnp.where(death, death_prob, P[d, a, b])
        return jnp.sum(count * jnp.log(prob))

    result["m2ll_at_mle_peer"] = float(-2 * jax.jit(loglik)(jnp.log(jnp.asarray(MLE_RATES))))

    def model():
        theta = numpyro.sample(
            "theta", dist.Normal(PRIOR_MU, PRIOR_SD).expand([len(NAMES)]).to_event(1)
        )
        numpyro.factor("loglik", loglik(theta))

    kernel = NUTS(model, target_accept_prob=0.8, max_tree_depth=args.max_tree_depth)
    mcmc = MCMC(
        kernel,
        num_warmup=args.warmup,
        num_samples=args.draws,
        num_chains=args.chains,
        chain_method="parallel",
        progress_bar=False,
    )
    extra = ("num_steps", "accept_prob", "diverging", "adapt_state.step_size")
    runs = []
    for i, seed in enumerate((args.seed, args.seed + 1)):
        t0 = time.perf_counter()
        mcmc.run(jax.random.PRNGKey(seed), extra_fields=extra)
        jax.block_until_ready(mcmc.get_samples()["theta"])
        wall = time.perf_counter() - t0
        theta = np.asarray(mcmc.get_samples(group_by_chain=True)["theta"])
        ef = mcmc.get_extra_fields(group_by_chain=True)
        n_steps = np.asarray(ef["num_steps"])
        stats = {
            "accept": np.asarray(ef["accept_prob"]),
            "step_size": np.asarray(ef["adapt_state.step_size"]),
            "n_steps": n_steps,
            "diverging": np.asarray(ef["diverging"]),
            "max_depth_hit": n_steps >= 2**args.max_tree_depth - 1,
        }
        run = {"seed": seed, "wall_s": wall, **posterior_summary(theta, stats)}
        run["ess_per_s"] = run["min_ess_bulk"] / wall
        runs.append(run)
        log(f"numpyro run {i + 1}: {wall:.1f} s, min ESS_bulk {run['min_ess_bulk']:.0f}")

    # one log-density + gradient evaluation (numpyro's own potential function, jitted),
    # after sampling so that the first sampling call pays every compilation itself
    init = initialize_model(jax.random.PRNGKey(args.seed), model)
    vg = jax.jit(jax.value_and_grad(init.potential_fn))
    z = init.param_info.z

    def one():
        _, g = vg(z)
        jax.block_until_ready(g)

    result["logdensity_grad_ms"] = median_ms(one, repeats=50)
    return runs


# ----------------------------------------------------------------------------- pymc
def run_pymc(args, dts, cells, result):
    import pymc as pm
    import pytensor
    import pytensor.tensor as pt

    pytensor.config.floatX = "float64"
    try:
        from pytensor.tensor.linalg import expm
    except ImportError:  # older pytensor
        from pytensor.tensor.slinalg import expm
    result["versions"].update(pymc=pm.__version__, pytensor=pytensor.__version__)
    from pytensor.compile.mode import get_default_mode

    linker = type(get_default_mode().linker).__name__
    result["expm"] = (
        f"pytensor.tensor.linalg.expm = {type(expm).__name__}"
        f"({type(getattr(expm, 'core_op', expm)).__name__}) on (n_dt, 4, 4), "
        f"compiled by the default {linker}; gradient: Expm.pullback, one 8x8 "
        "augmented-matrix expm per dt (batched the same way)"
    )
    result["pytensor_linker"] = linker
    result["pytensor_cxx"] = bool(pytensor.config.cxx)
    result["pytensor_compiledir"] = str(pytensor.config.compiledir)

    d, a, b = cells["dt_idx"], cells["a"], cells["b"]
    count, death = cells["count"], cells["death"]

    def loglik(theta):
        Q = pt.zeros((N_STATES, N_STATES), dtype="float64")
        Q = pt.set_subtensor(Q[ROWS, COLS], pt.exp(theta))
        Q = Q - pt.diag(Q.sum(1))
        P = expm(pt.as_tensor_variable(dts)[:, None, None] * Q[None, :, :])
        death_prob = pt.dot(P[d, a, :], Q[:, DEATH - 1])
        prob = pt.switch(death, death_prob, P[d, a, b])
        return pt.sum(count * pt.log(prob))

    with pm.Model() as model:
        theta = pm.Normal("theta", mu=PRIOR_MU, sigma=PRIOR_SD, shape=len(NAMES))
        pm.Potential("loglik", loglik(theta))

    cores = min(args.cores or min(args.chains, os.cpu_count() or 1), args.chains)
    result["pymc_cores"] = cores
    runs = []
    for i, seed in enumerate((args.seed, args.seed + 1)):
        t0 = time.perf_counter()
        with model:
            idata = pm.sample(
                draws=args.draws,
                tune=args.warmup,
                chains=args.chains,
                cores=cores,
                random_seed=seed,
                target_accept=0.8,
                nuts_sampler="pymc",
                progressbar=False,
                compute_convergence_checks=False,
                nuts={"max_treedepth": args.max_tree_depth},
            )
        wall = time.perf_counter() - t0
        theta_draws = np.asarray(idata["posterior"]["theta"].values)
        ss = idata["sample_stats"]
        names = set(ss.data_vars) if hasattr(ss, "data_vars") else set(ss.keys())
        stats = {
            "accept": np.asarray(ss["acceptance_rate"].values),
            "step_size": np.asarray(ss["step_size"].values),
            "n_steps": np.asarray(ss["n_steps"].values),
            "diverging": np.asarray(ss["diverging"].values),
            "max_depth_hit": (
                np.asarray(ss["reached_max_treedepth"].values)
                if "reached_max_treedepth" in names
                else None
            ),
        }
        run = {"seed": seed, "wall_s": wall, **posterior_summary(theta_draws, stats)}
        run["ess_per_s"] = run["min_ess_bulk"] / wall
        runs.append(run)
        log(f"pymc run {i + 1}: {wall:.1f} s, min ESS_bulk {run['min_ess_bulk']:.0f}")

    # after sampling (the first sampling call pays the C compilation itself, unless
    # pytensor's on-disk cache in compiledir already holds the modules)
    th = pt.dvector("th")
    f = pytensor.function([th], -2 * loglik(th))
    result["m2ll_at_mle_peer"] = float(f(np.log(MLE_RATES)))
    # one log-density + gradient evaluation (compiled pytensor function of both)
    lg = model.compile_fn([model.logp(), model.dlogp()], inputs=model.value_vars, point_fn=False)
    x0 = np.full(len(NAMES), PRIOR_MU)
    result["logdensity_grad_ms"] = median_ms(lambda: lg(x0), repeats=50)
    return runs


# ----------------------------------------------------------------------------- main
def log(msg):
    print(f"[hmc-peers] {msg}", file=sys.stderr, flush=True)


def print_table(result):
    print(f"peer {result['peer']}  versions {result.get('versions')}")
    print(
        f"-2LL at MLE: numpy {result.get('m2ll_at_mle_numpy')}, "
        f"peer {result.get('m2ll_at_mle_peer')}  (msm {MSM_M2LL})"
    )
    if "logdensity_grad_ms" in result:
        print(f"log-density+gradient: {result['logdensity_grad_ms']:.3f} ms (median)")
    if "error" in result:
        print(f"ERROR: {result['error']}")
    runs = result.get("runs", [])
    if runs:
        print(
            f"{'run':<6}{'wall s':>9}{'minESSb':>9}{'ESS/s':>9}{'accept':>8}{'step':>8}"
            f"{'leapfr':>8}{'div':>5}{'maxTD':>6}{'maxRhat':>8}"
        )
        for i, r in enumerate(runs):
            print(
                f"{i + 1:<6}{r['wall_s']:>9.2f}{r['min_ess_bulk']:>9.0f}{r['ess_per_s']:>9.1f}"
                f"{r['mean_accept']:>8.3f}{r['mean_step_size']:>8.3f}"
                f"{r['mean_leapfrog_steps']:>8.1f}{r['divergences']:>5}"
                f"{r['max_treedepth_hits']!s:>6}{r['max_r_hat']:>8.3f}"
            )
        last = runs[-1]
        print(f"{'theta':<6}{'mean':>9}{'sd':>8}{'MLE':>9}")
        for k, name in enumerate(NAMES):
            print(
                f"{name:<6}{last['posterior_mean'][name]:>9.3f}"
                f"{last['posterior_sd'][name]:>8.3f}{np.log(MLE_RATES[k]):>9.3f}"
            )


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--peer", choices=["numpyro", "pymc"], required=True)
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--warmup", type=int, default=1000)
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--cores",
        type=int,
        default=None,
        help="pymc worker processes (default min(chains, CPU count))",
    )
    p.add_argument("--max-tree-depth", type=int, default=10)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()

    dts, cells, info = load_cells()
    result = {
        "peer": args.peer,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "data": info,
        "prior": f"theta_k ~ Normal({PRIOR_MU}, {PRIOR_SD})",
        "parameters": NAMES,
        "msm_m2ll": MSM_M2LL,
        "versions": {"python": platform.python_version(), "numpy": np.__version__},
        "cpu_count": os.cpu_count(),
    }
    theta_mle = np.log(MLE_RATES)
    result["m2ll_at_mle_numpy"] = reference_m2ll(theta_mle, dts, cells)
    result["m2ll_check_ok"] = abs(result["m2ll_at_mle_numpy"] - MSM_M2LL) < 0.01
    t_start = time.perf_counter()
    try:
        import arviz

        result["versions"]["arviz"] = arviz.__version__
        t0 = time.perf_counter()
        runner = run_numpyro if args.peer == "numpyro" else run_pymc
        result["runs"] = runner(args, dts, cells, result)
        result["peer_total_s"] = time.perf_counter() - t0
        result["m2ll_check_ok"] = (
            result["m2ll_check_ok"] and abs(result["m2ll_at_mle_peer"] - MSM_M2LL) < 0.01
        )
    except Exception as exc:  # still write what we have
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["traceback"] = traceback.format_exc()
        log(result["traceback"])
    result["script_total_s"] = time.perf_counter() - t_start
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    print_table(result)
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main())
