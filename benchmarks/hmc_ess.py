"""HMC on the cav posterior (issue 4): linest's gradient methods against numpyro and PyMC.

The posterior: R msm's cav data, 4 states, transitions 1-2 1-4 2-1 2-3 2-4 3-2 3-4, death
exact, prior normal(-2, 2) on every log-rate (models/cav.toml). Every sampler runs NUTS
with 4 chains x (--warmup + --draws), target acceptance 0.8, max tree depth 10, float64,
twice in one process (first call with compilation, second call reusing what it can).

Measured for each, side by side in one run on this machine:
wall time of each call (warm-up + sampling; linest also splits them), min ESS_bulk over
the 7 log-rates, ESS/s (min ESS_bulk / wall of the call), acceptance, mean adapted step
size, mean leapfrog steps per draw, draws at the maximum tree depth, divergences, and
the posterior means (which must agree across samplers within Monte Carlo error).

linest methods: the default (one shared eigendecomposition, exact derivative), Exact()
(Pade Frechet derivative), Surrogate("left") (the notes' t exp(tQ) J) and
Surrogate("gauss", 2): surrogate forces, exact accept step. numpyro (4 virtual CPU
devices, chain_method="parallel") and PyMC (nuts_sampler="pymc", OPENBLAS_NUM_THREADS=1)
run from benchmarks/_hmc_peers.py in .venv-peers (benchmarks/requirements-peers.txt),
as subprocesses, one after the other, never beside linest.

    python benchmarks/hmc_ess.py                          # the full run
    python benchmarks/hmc_ess.py --warmup 500 --draws 500 --peers numpyro pymc
    python benchmarks/hmc_ess.py --peers                  # linest only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import arviz as az
import jax

import linest
from linest.sampling import SamplingWarning
from linest.spec import load_spec

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PEERS_PYTHON = ROOT / ".venv-peers" / "bin" / "python"

METHODS = {
    "linest default (shared eigen, exact)": None,
    "linest Exact()": linest.Exact(),
    "linest Surrogate(left)": linest.Surrogate("left"),
    "linest Surrogate(gauss, 2)": linest.Surrogate("gauss", 2),
}


def run_linest(name, gradient, args, model, chains, prior) -> list[dict]:
    short = name in args.short
    warmup, draws = (args.short_warmup, args.short_draws) if short else (args.warmup, args.draws)
    calls = 1 if short or name in args.once else 2
    runs = []
    for call, seed in enumerate((args.seed, args.seed + 1)[:calls]):
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SamplingWarning)
            tree = linest.sample(
                model, chains, prior, num_chains=args.chains, num_warmup=warmup,
                num_samples=draws, gradient=gradient, rng_key=seed, progress=False,
                log_likelihood=False,
            )  # fmt: skip
        wall = time.perf_counter() - start
        stats = tree["sample_stats"]
        ess = az.ess(tree, var_names=["theta"], method="bulk")["theta"].values
        run = {
            "call": call + 1,
            "size": f"{warmup}+{draws}",
            "wall_s": wall,
            "warmup_s": float(tree.attrs["linest_warmup_seconds"]),
            "sampling_s": float(tree.attrs["linest_sampling_seconds"]),
            "min_ess_bulk": float(ess.min()),
            "ess_per_s": float(ess.min()) / wall,
            "mean_accept": float(stats["acceptance_rate"].mean()),
            "mean_step_size": float(stats["step_size"].mean()),
            "mean_leapfrog_steps": float(stats["n_steps"].mean()),
            "max_depth_hits": int((stats["tree_depth"].values >= 10).sum()),
            "divergences": int(stats["diverging"].values.sum()),
            "max_r_hat": float(az.rhat(tree, var_names=["theta"])["theta"].values.max()),
            "posterior_mean": tree["posterior"]["theta"].mean(("chain", "draw")).values.tolist(),
            "posterior_sd": tree["posterior"]["theta"].std(("chain", "draw")).values.tolist(),
        }
        runs.append(run)
        print(
            f"  {name} call {call + 1}: {wall:.1f} s (warm-up {run['warmup_s']:.1f}, sampling "
            f"{run['sampling_s']:.1f}), min ESS_bulk {run['min_ess_bulk']:.0f}",
            flush=True,
        )
    return runs


def run_peer(peer, args) -> dict:
    if not PEERS_PYTHON.exists():
        return {"error": f"{PEERS_PYTHON} missing: see benchmarks/requirements-peers.txt"}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / f"{peer}.json"
        command = [
            str(PEERS_PYTHON), str(HERE / "_hmc_peers.py"), "--peer", peer,
            "--chains", str(args.chains), "--warmup", str(args.peer_warmup or args.warmup),
            "--draws", str(args.peer_draws or args.draws), "--seed", str(args.seed),
            "--json", str(out),
        ]  # fmt: skip
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
        subprocess.run(command, env=env, timeout=args.peer_timeout, check=False)
        if not out.exists():
            return {"error": "the peer wrote no result"}
        return json.loads(out.read_text())


def table(results: dict, reference: str) -> str:
    ref = results[reference][-1]["ess_per_s"]
    lines = [
        "| sampler | call | warm-up+draws per chain | wall s | min ESS_bulk | ESS/s | "
        "ratio to linest Exact() | accept | step size | leapfrog/draw | max-depth draws | "
        "divergences |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, runs in results.items():
        if isinstance(runs, dict):  # a failed peer
            lines.append(f"| {name} | - | - | error: {runs.get('error')} | | | | | | | | |")
            continue
        for run in runs:
            lines.append(
                f"| {name} | {run.get('call', '')} | {run.get('size', '')} | {run['wall_s']:.1f} | "
                f"{run['min_ess_bulk']:.0f} | {run['ess_per_s']:.2f} | "
                f"{run['ess_per_s'] / ref:.2f} | {run['mean_accept']:.2f} | "
                f"{run['mean_step_size']:.3f} | {run['mean_leapfrog_steps']:.1f} | "
                f"{run.get('max_depth_hits', run.get('max_treedepth_hits', '-'))} | "
                f"{run['divergences']} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--peer-warmup", type=int, help="peers' warm-up (default --warmup)")
    parser.add_argument("--peer-draws", type=int, help="peers' draws (default --draws)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--short", nargs="*", default=["linest Surrogate(left)"],
        help="methods run once at --short-warmup/--short-draws (the left-point surrogate "
        "drives NUTS to maximum-depth trees: 4 x (50 + 50) took 340 s)",
    )  # fmt: skip
    parser.add_argument("--short-warmup", type=int, default=100)
    parser.add_argument("--short-draws", type=int, default=100)
    parser.add_argument(
        "--once", nargs="*", default=[], help="methods run once (first call only) to save time"
    )
    parser.add_argument("--methods", nargs="*", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--peers", nargs="*", default=["numpyro", "pymc"])
    parser.add_argument("--peer-timeout", type=float, default=3600)
    parser.add_argument("--json", help="write the raw measurements here")
    args = parser.parse_args()

    spec = load_spec(ROOT / "models" / "cav.toml")
    model, chains = spec.model, spec.read_data()
    prior = spec.priors
    print(
        f"# hmc_ess: cav, {args.chains} chains x ({args.warmup} + {args.draws}); "
        f"{platform.node()}, {os.cpu_count()} cores, jax {jax.__version__}, "
        f"{len(jax.devices())} {jax.devices()[0].platform} devices"
    )
    results: dict = {}
    for name in args.methods:
        results[name] = run_linest(name, METHODS[name], args, model, chains, prior)
    for peer in args.peers:
        print(f"  {peer}: running (subprocess)", flush=True)
        outcome = run_peer(peer, args)
        results[peer] = outcome["runs"] if "runs" in outcome else outcome
        if "runs" in outcome:
            size = f"{args.peer_warmup or args.warmup}+{args.peer_draws or args.draws}"
            for run, call in zip(results[peer], (1, 2)):
                run["call"] = call
                run["size"] = size
                run.setdefault("mean_leapfrog_steps", run.get("mean_leapfrog_steps", 0))
        results[f"_{peer}_details"] = {k: v for k, v in outcome.items() if k != "runs"}
    shown = {k: v for k, v in results.items() if not k.startswith("_")}
    reference = "linest Exact()" if "linest Exact()" in shown else next(iter(shown))
    print()
    print(table(shown, reference))
    means = {k: v[-1]["posterior_mean"] for k, v in shown.items() if isinstance(v, list)}
    print("\nposterior means of theta (second call):")
    for name, mean in means.items():
        values = mean.values() if isinstance(mean, dict) else mean
        print(f"  {name:40s} " + " ".join(f"{m:7.3f}" for m in values))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
