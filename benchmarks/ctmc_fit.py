"""CTMC fits (issue 3): linest against R's msm on cav, and linest's scaling in states.

Measured in one run, side by side with the named peer:

1. cav, one log-likelihood value + gradient after jit warm-up (median): linest's default
   (one eigendecomposition shared by all time steps), Exact(), AutoDiff() (jax.grad
   through jax.scipy.linalg.expm, batched over time steps), Surrogate(gauss, 2); msm's own
   ``lik.msm`` / ``deriv.msm`` (its C likelihood and analytic gradient, called the way
   optim calls them). Target: <= 1 ms.
2. cav, one full fit after warm-up: ``linest.fit`` (median of --fits) against ``msm(...)``
   with ``crudeinits.msm`` inits (median of --fits inside one R process). Target: >= 10x
   faster than msm. -2LL of both printed.
3. whole-process time: ``linest fit models/cav.toml`` with an empty compilation cache
   (cold, a fresh LINEST_CACHE_DIR per run) and again with the cache it filled (warm),
   against ``Rscript benchmarks/ctmc_msm.R cav-fit``; interleaved rounds, medians.
5. rates at 0: the rating-migration table data/ratings.csv (ctmcd::tm_abs, 8 states, 49
   rates, many empty cells): linest.fit (second call; first call's compile time shown) and
   its log-likelihood, rates at 0 and KKT, against ctmcd's EM (its default stop, and run
   to a 1e-12 relative change) and Gibbs sampler (--gibbs iterations) with Rscript
   benchmarks/ctmcd_ratings.R; every log-likelihood recomputed here with scipy's expm.
6. large: the 100-state birth-death chain (--large-subjects simulated subjects, panel
   data) fitted with standard errors, first call (compiling included), with the
   process's peak resident memory.
7. msm's other features on cav: misclassification (models/cav_misc.toml, the msm manual's
   hidden Markov example), piecewise-constant intensities (pci = 5, 10), survivors'
   last state censored (99 = 1, 2 or 3), normal outcomes on fev (models/fev.toml, the msm
   manual's hmodel example), a two-phase state 1 (models/cav_phase.toml) and measurement
   error on msm's aneur (models/aneur.toml): linest.fit after a warm-up fit (median of
   --fits) against msm's fit (median of --fits after a warm-up, one R process), -2LL of
   both. Target (misclassification): >= 10x faster than msm.
4. scaling: simulated panel data from birth-death chains on 10, 30, 100 states (i -> i+1,
   i+1 -> i, last state absorbing; 2n - 3 rates) for --subjects subjects: cells, value +
   gradient time (default, Eigen(), Exact()), full fit time and iterations. msm on the
   10-state chain with --msm-subjects subjects (1e4: about 2 minutes for msm's fit).

    python benchmarks/ctmc_fit.py                      # the full run (about 7 minutes)
    python benchmarks/ctmc_fit.py --quick              # small settings, a smoke test
    python benchmarks/ctmc_fit.py --sizes 10 --subjects 10000 --max-fit-states 10
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import scipy
from gradient_cost import interleaved_medians  # same timing protocol as issue 2

import linest
from linest.simulate import simulate_panel
from linest.spec import load_spec

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
R_SCRIPT = HERE / "ctmc_msm.R"
LINEST_CLI = Path(sys.executable).with_name("linest")

CAV_TRANSITIONS = ["1-2", "1-4", "2-1", "2-3", "2-4", "3-2", "3-4"]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------- machine


def machine_facts() -> dict:
    cpu = platform.processor() or platform.machine()
    memory = ""
    try:
        text = Path("/proc/cpuinfo").read_text()
        found = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
        cpu = found.group(1).strip() if found else cpu
        kb = int(re.search(r"^MemTotal:\s*(\d+)", Path("/proc/meminfo").read_text(), re.M)[1])
        memory = f"{kb / 2**20:.0f} GiB"
    except (OSError, TypeError):
        pass
    try:
        rscript = subprocess.run(
            ["Rscript", "-e", 'cat(R.version.string, as.character(packageVersion("msm")), sep="|")'],
            capture_output=True, text=True, check=True,
        ).stdout.split("|")  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        rscript = ["R not found", "-"]
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": memory,
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jax_backend": jax.devices()[0].platform,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "linest": linest.__version__,
        "R": rscript[0],
        "msm": rscript[1] if len(rscript) > 1 else "-",
        "date": datetime.date.today().isoformat(),
    }


# ------------------------------------------------------------------------- helpers


def run_r(*args, timeout=None) -> dict:
    """Run ctmc_msm.R and return the JSON object on its last line of output."""
    result = subprocess.run(
        ["Rscript", str(R_SCRIPT), *map(str, args)],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"Rscript {args[0]} failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def fit_quietly(model, data, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # reported in the tables (converged column)
        return linest.fit(model, data, **kwargs)


def warm_up_fit(model, stats, theta):
    """Compile the programs linest.fit runs (value+gradient, Hessian) without fitting.

    Uses linest.fit's private jitted functions; if they are gone, falls back to one fit.
    """
    try:
        from linest.fit import _loglik_derivatives, _value_and_grad
    except ImportError:
        fit_quietly(model, stats)
        return
    theta = jnp.asarray(theta)
    jax.block_until_ready(_value_and_grad(model, None, theta, stats))
    jax.block_until_ready(_loglik_derivatives(model, None, theta, stats))


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3g}" if seconds < 10 else f"{seconds * 1e3:.0f}"


def secs(seconds: float) -> str:
    return f"{seconds:.3g}" if seconds < 100 else f"{seconds:.0f}"


# ------------------------------------------------------------------------- cav


def cav_model():
    return linest.CTMC(states=[1, 2, 3, 4], transitions=CAV_TRANSITIONS, exact=[4])


def read_cav():
    return linest.read_chains(
        ROOT / "data" / "cav.csv", subject="PTNUM", time="years", state="state"
    )


def part_cav(args) -> dict:
    """Parts 1 and 2: value+gradient and full fits on cav, linest and msm."""
    model, chains = cav_model(), read_cav()
    stats = model.statistics(chains)
    theta = jnp.asarray(model.initial_theta(stats))  # crude inits, as crudeinits.msm

    methods = {
        "linest default (shared eigen)": None,
        "linest Exact()": linest.Exact(),
        "linest AutoDiff() (jax.scipy expm)": linest.AutoDiff(),
        "linest Surrogate(gauss, 2)": linest.Surrogate(rule="gauss", nodes=2),
        "linest Surrogate(gauss, 2, max_norm=0.5)": linest.Surrogate("gauss", 2, max_norm=0.5),
    }
    compiled, calls, first_call = {}, {}, {}
    for name, method in methods.items():
        f = jax.jit(jax.value_and_grad(lambda t, m=method: model.loglik(t, stats, m)))
        (value, grad), first_call[name] = timed(lambda f=f: jax.block_until_ready(f(theta)))
        compiled[name] = (float(value), np.asarray(grad))
        calls[name] = lambda f=f: jax.block_until_ready(f(theta))
    log(f"cav: timing value+gradient, {args.repeats} interleaved rounds")
    vg = interleaved_medians(calls, args.repeats)

    # linest fits: first (compiles), then --fits timed ones, from the chains as read
    first_fit, first_seconds = timed(lambda: fit_quietly(model, chains))
    fits, fit_times = [], []
    for _ in range(args.fits):
        result, seconds = timed(lambda: fit_quietly(model, chains))
        fits.append(result)
        fit_times.append(seconds)
    from_stats = [timed(lambda: fit_quietly(model, stats))[1] for _ in range(args.fits)]

    log(f"cav: msm, {args.fits} fits and {args.msm_evals} lik/deriv calls in one R process")
    theta_text = ",".join(f"{x:.17g}" for x in np.asarray(theta))
    msm = run_r("cav-bench", args.fits, args.msm_evals, theta_text)

    # agreement at theta: msm reports -2 loglik and its gradient
    value, grad = compiled["linest default (shared eigen)"]
    check = {
        "minus2loglik_linest": -2 * value,
        "minus2loglik_msm": msm["lik_value"],
        "max_abs_gradient_difference": float(
            np.max(np.abs(-2 * grad - np.asarray(msm["lik_gradient"])))
        ),
        "max_abs_gradient": float(np.max(np.abs(2 * grad))),
    }
    last = fits[-1]
    return {
        "value_and_gradient": vg,
        "first_call_seconds": first_call,
        "check_at_crude_inits": check,
        "cells": stats.num_cells,
        "intervals": stats.num_intervals,
        "subjects": stats.num_subjects,
        "linest_fit": {
            "first_seconds": first_seconds,
            "seconds": fit_times,
            "median": statistics.median(fit_times),
            "from_statistics_seconds": from_stats,
            "from_statistics_median": statistics.median(from_stats),
            "minus2loglik": last.minus2loglik,
            "first_minus2loglik": first_fit.minus2loglik,
            "iterations": last.iterations,
            "evaluations": last.evaluations,
            "converged": last.converged,
            "theta": last.theta.tolist(),
        },
        "msm": msm,
    }


def part_hidden(args) -> dict:
    """Part 7: the forward-algorithm fits (misclassification, pci, censoring) against msm."""
    import pandas as pd

    frame = pd.read_csv(ROOT / "data" / "cav.csv")
    transitions = ["1-2", "1-4", "2-1", "2-3", "2-4", "3-2", "3-4"]
    columns = {"subject": "PTNUM", "time": "years", "state": "state"}
    censored = frame.copy()
    last = ~censored.duplicated("PTNUM", keep="last") & (censored.state != 4)
    censored.loc[last, "state"] = 99
    misc = load_spec(ROOT / "models" / "cav_misc.toml")
    cases = {
        "misclassification": (misc.model, misc.read_data()),
        "pci": (
            linest.HiddenCTMC([1, 2, 3, 4], transitions, exact=[4], pci=[5, 10]),
            linest.read_chains(frame, **columns),
        ),
        "censor": (
            linest.HiddenCTMC([1, 2, 3, 4], transitions, exact=[4], censor={99: [1, 2, 3]}),
            linest.read_chains(censored, **columns),
        ),
    }
    for name, spec_file in (
        ("fev outcomes", "fev.toml"),
        ("phase-type", "cav_phase.toml"),
        ("aneurysm", "aneur.toml"),
    ):
        spec = load_spec(ROOT / "models" / spec_file)
        cases[name] = (spec.model, spec.read_data())
    out = {}
    for name, (model, data) in cases.items():
        first, first_seconds = timed(lambda m=model, d=data: fit_quietly(m, d))
        times = [timed(lambda m=model, d=data: fit_quietly(m, d))[1] for _ in range(args.fits)]
        out[name] = {
            "first_seconds": first_seconds,
            "seconds": times,
            "median": statistics.median(times),
            "minus2loglik": first.minus2loglik,
            "converged": first.converged,
            "iterations": first.iterations,
        }
        log(f"hidden: {name} fit {statistics.median(times):.3f} s, -2LL {first.minus2loglik:.6f}")
    log(f"hidden: msm, {args.fits} fits each in one R process")
    out["msm"] = run_r("cav-misc-bench", args.fits, timeout=1800)
    return out


def report_hidden(hidden) -> list[str]:
    if not hidden:
        return []
    msm = hidden["msm"]
    lines = [
        "",
        "## 7. msm's other features on cav: linest.fit (after a warm-up fit) against msm",
        "",
        "| model | linest fit s (first) | msm fit s | msm / linest | -2LL linest | -2LL msm |",
        "|---|---|---|---|---|---|",
    ]
    for name in ("misclassification", "pci", "censor", "fev outcomes", "phase-type", "aneurysm"):
        if name not in hidden or name not in msm:
            continue
        ours, theirs = hidden[name], msm[name]
        peer = statistics.median(theirs["fit_seconds"])
        lines.append(
            f"| {name} | {ours['median']:.3f} ({ours['first_seconds']:.1f}) | {peer:.3f} | "
            f"{peer / ours['median']:.1f}x | {ours['minus2loglik']:.6f} | "
            f"{theirs['minus2loglik']:.6f} |"
        )
    return lines


def part_process(args) -> dict:
    """Part 3: whole commands, cold and warm compilation cache, against Rscript."""
    spec = ROOT / "models" / "cav.toml"
    commands = {
        "linest fit models/cav.toml (cold cache)": None,
        "linest fit models/cav.toml (warm cache)": None,
        "Rscript ctmc_msm.R cav-fit (msm)": ["Rscript", str(R_SCRIPT), "cav-fit"],
        "python -c 'import linest' (floor)": [sys.executable, "-c", "import linest"],
    }
    times = {name: [] for name in commands}
    m2ll = {}
    for round_ in range(args.process_runs):
        cache = tempfile.mkdtemp(prefix="linest-cache-")
        try:
            env = {**os.environ, "LINEST_CACHE_DIR": cache}
            for name, command in commands.items():
                command = command or [str(LINEST_CLI), "fit", str(spec)]
                result, seconds = timed(
                    lambda command=command, env=env: subprocess.run(
                        command, capture_output=True, text=True, env=env, check=False
                    )
                )
                if result.returncode != 0:
                    raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-2000:]}")
                found = re.search(r"-2 log-likelihood:\s*([0-9.]+)", result.stdout)
                m2ll[name] = float(found.group(1)) if found else "-"
                times[name].append(seconds)
        finally:
            shutil.rmtree(cache, ignore_errors=True)
        log(f"process round {round_ + 1}/{args.process_runs} done")
    return {
        "seconds": times,
        "median": {k: statistics.median(v) for k, v in times.items()},
        "minus2loglik": m2ll,
    }


# ------------------------------------------------------------------------- scaling


def birth_death(n: int):
    states = list(range(1, n + 1))
    up = [f"{i}-{i + 1}" for i in range(1, n)]
    down = [f"{i + 1}-{i}" for i in range(1, n - 1)]
    return linest.CTMC(states=states, transitions=up + down)


def simulate(n: int, subjects: int, seed: int | None = None):
    """Rates up ~ exp(0.3 N(0,1)), down ~ 0.5 exp(0.3 N(0,1)) per year; start states
    uniform over the transient states; visits every Uniform(0.5, 1.5) years to 10 years,
    times rounded to days. About 1.5 jumps per year, so subjects pass several states."""
    model = birth_death(n)
    rng = np.random.default_rng(n if seed is None else seed)
    theta = np.concatenate(
        [0.3 * rng.standard_normal(n - 1), np.log(0.5) + 0.3 * rng.standard_normal(n - 2)]
    )
    initial = rng.integers(0, n - 1, subjects)
    frame = simulate_panel(
        model, theta, subjects, 10.0, rng, mean_gap=1.0, resolution=1 / 365, initial=initial
    )
    return model, theta, frame


def scaling_row(args, n: int) -> dict:
    log(f"scaling: {n} states, {args.subjects} subjects: simulate")
    (model, theta, frame), sim_seconds = timed(lambda: simulate(n, args.subjects))
    distinct = float(frame.groupby("subject")["state"].nunique().mean())
    chains, read_seconds = timed(lambda: linest.read_chains(frame))
    frame = None  # free it before the timings
    stats, stats_seconds = timed(lambda: model.statistics(chains))
    stats_seconds += read_seconds
    chains = None
    theta0 = jnp.asarray(model.initial_theta(stats))
    row = {
        "states": n,
        "params": model.num_params,
        "subjects": stats.num_subjects,
        "intervals": stats.num_intervals,
        "cells": stats.num_cells,
        "mean_distinct_states_per_subject": distinct,
        "simulate_seconds": sim_seconds,
        "statistics_seconds": stats_seconds,
    }
    methods = {"default": None, "Eigen()": linest.Eigen(), "Exact()": linest.Exact()}
    calls, row["finite"] = {}, {}
    for name, method in methods.items():
        f = jax.jit(jax.value_and_grad(lambda t, m=method: model.loglik(t, stats, m)))
        value, grad = f(theta0)  # Eigen() gives NaN where cond(V) > max_condition
        row["finite"][name] = bool(np.isfinite(value) and np.all(np.isfinite(grad)))
        calls[name] = lambda f=f: jax.block_until_ready(f(theta0))
    log(f"scaling: {n} states: value+gradient ({stats.num_cells} cells)")
    reps = args.repeats_scaling if n <= 30 else max(3, args.repeats_scaling // 3)
    row["value_and_gradient"] = interleaved_medians(calls, reps)
    del calls
    if n > args.max_fit_states:
        row["fit"] = None
        return row
    log(f"scaling: {n} states: compile the fit's programs")
    _, row["fit_compile_seconds"] = timed(lambda: warm_up_fit(model, stats, theta0))
    fits = 1 if n > 10 else args.scaling_fits
    results, seconds = [], []
    for _ in range(fits):
        log(f"scaling: {n} states: fit")
        result, s = timed(lambda: fit_quietly(model, stats))
        results.append(result)
        seconds.append(s)
    r = results[-1]
    row["fit"] = {
        "seconds": seconds,
        "median": statistics.median(seconds),
        "iterations": r.iterations,
        "evaluations": r.evaluations,
        "converged": r.converged,
        "message": r.message,
        "warnings": r.warnings,
        "minus2loglik": r.minus2loglik,
        "max_abs_error_vs_truth": float(np.max(np.abs(r.theta - theta))),
        "gradient_norm": r.gradient_norm,
    }
    return row


def msm_scaling(args) -> dict:
    """10-state chain, --msm-subjects subjects: msm against linest on the same CSV."""
    n = 10
    model, _, frame = simulate(n, args.msm_subjects, seed=1000 + n)
    with tempfile.TemporaryDirectory(prefix="linest-bench-") as tmp:
        path = Path(tmp) / f"birth_death_{n}.csv"
        frame.to_csv(path, index=False)  # full precision: equal time steps stay equal
        # linest reads the file as msm does; fit from the file (statistics included)
        chains = linest.read_chains(path)
        stats = model.statistics(chains)
        warm_up_fit(model, stats, model.initial_theta(stats))
        seconds, results = [], []
        for _ in range(args.scaling_fits):
            result, s = timed(lambda: fit_quietly(model, linest.read_chains(path)))
            seconds.append(s)
            results.append(result)
        log(f"scaling: msm on {n} states, {args.msm_subjects} subjects (1 fit)")
        try:
            msm = run_r("csv", path, n, 1, timeout=args.msm_timeout)
        except subprocess.TimeoutExpired:
            msm = {"timeout": args.msm_timeout}
    r = results[-1]
    return {
        "states": n,
        "subjects": stats.num_subjects,
        "intervals": stats.num_intervals,
        "cells": stats.num_cells,
        "linest": {
            "seconds": seconds,
            "median": statistics.median(seconds),
            "iterations": r.iterations,
            "evaluations": r.evaluations,
            "converged": r.converged,
            "minus2loglik": r.minus2loglik,
        },
        "msm": msm,
    }


# ------------------------------------------------------------------------- report


# ------------------------------------------------------------------------- rates at 0


def _count_loglik(Q, counts, lag=1.0) -> float:
    P = scipy.linalg.expm(np.asarray(Q) * lag)
    seen = counts > 0
    return float(np.sum(counts[seen] * np.log(np.maximum(P[seen], 1e-300))))


def part_ratings(args) -> dict:
    path = ROOT / "data" / "ratings.csv"
    spec = load_spec(ROOT / "models" / "ratings.toml")
    model, chains = spec.model, spec.read_data()
    table = np.loadtxt(path, delimiter=",", skiprows=1, usecols=range(1, 9))
    log("ratings: linest fit (first call compiles)")
    _first, first_seconds = timed(lambda: fit_quietly(model, chains))
    result, seconds = timed(lambda: fit_quietly(model, chains))
    row = {
        "linest_first_seconds": first_seconds,
        "linest_seconds": seconds,
        "linest_loglik": result.loglik,
        "linest_recomputed": _count_loglik(result.qmatrix().to_numpy(), table),
        "at_boundary": int(result.boundary.sum()),
        "converged": bool(result.converged),
        "iterations": result.iterations,
    }
    if shutil.which("Rscript") is None:
        row["ctmcd"] = "Rscript not found"
        return row
    log("ratings: ctmcd EM and Gibbs sampler (Rscript)")
    out = subprocess.run(
        ["Rscript", str(HERE / "ctmcd_ratings.R"), str(path), str(args.gibbs)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if out.returncode != 0:
        row["ctmcd"] = f"failed: {out.stderr[-500:]}"
        return row
    r = json.loads(out.stdout.strip().splitlines()[-1])
    n = len(r["states"])
    for key in ("em", "em_tight", "gibbs_mean"):
        Q = np.asarray(r[key]).reshape(n, n)
        row[f"{key}_loglik"] = _count_loglik(Q, table)
        row[f"{key}_near_zero"] = int(np.sum((np.abs(Q) < 1e-6) & ~np.eye(n, dtype=bool)))
    row |= {k: r[k] for k in ("em_seconds", "em_tight_seconds", "gibbs_seconds")}
    row["gibbs_iterations"] = r["gibbs_iterations"]
    return row


def part_large(args) -> dict:
    import resource

    n = args.large_states
    log(f"large: {n} states, {args.large_subjects} subjects: simulate")
    model, theta, frame = simulate(n, args.large_subjects)
    chains = linest.read_chains(frame)
    frame = None
    stats = model.statistics(chains)
    chains = None
    log(f"large: {n} states: fit with standard errors (first call, compiling included)")
    result, seconds = timed(lambda: fit_quietly(model, stats))
    se = result.se
    return {
        "states": n,
        "params": model.num_params,
        "subjects": stats.num_subjects,
        "cells": stats.num_cells,
        "seconds": seconds,
        "iterations": result.iterations,
        "evaluations": result.evaluations,
        "converged": bool(result.converged),
        "finite_se": int(np.sum(np.isfinite(se))),
        "max_abs_z_vs_truth": float(np.nanmax(np.abs(result.theta - theta) / se)),
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "warnings": result.warnings,
    }


def report_new(ratings, large) -> list[str]:
    out = []
    p = out.append
    if ratings:
        p("\n## 5. Rates at 0: the rating-migration table (data/ratings.csv, 49 rates)\n")
        p("| method | seconds | log-likelihood (scipy) | rates ~0 |")
        p("|---|---|---|---|")
        p(
            f"| linest.fit (second call; first {ratings['linest_first_seconds']:.1f} s) | "
            f"{ratings['linest_seconds']:.2f} | {ratings['linest_recomputed']:.6f} | "
            f"{ratings['at_boundary']} at 0 (KKT checked; converged {ratings['converged']}) |"
        )
        if "em_seconds" in ratings:
            p(
                f"| ctmcd EM, default stop (1e-6) | {ratings['em_seconds']:.2f} | "
                f"{ratings['em_loglik']:.6f} | {ratings['em_near_zero']} below 1e-6 |"
            )
            p(
                f"| ctmcd EM to 1e-12 | {ratings['em_tight_seconds']:.2f} | "
                f"{ratings['em_tight_loglik']:.6f} | {ratings['em_tight_near_zero']} below 1e-6 |"
            )
            p(
                f"| ctmcd Gibbs sampler ({ratings['gibbs_iterations']} iterations; posterior "
                f"mean) | {ratings['gibbs_seconds']:.2f} | {ratings['gibbs_mean_loglik']:.6f} | "
                f"{ratings['gibbs_mean_near_zero']} |"
            )
        else:
            p(f"| ctmcd | {ratings.get('ctmcd')} | | |")
    if large:
        p(
            f"\n## 6. {large['states']} states, {large['subjects']} subjects ({large['cells']} "
            "cells): fit with standard errors, first call\n"
        )
        p(
            f"{large['seconds']:.0f} s, {large['iterations']} iterations ({large['evaluations']} "
            f"evaluations), converged {large['converged']}, {large['finite_se']} of "
            f"{large['params']} standard errors finite, max |estimate - truth| / se "
            f"{large['max_abs_z_vs_truth']:.2f}; peak resident memory "
            f"{large['peak_rss_gib']:.1f} GiB"
        )
    return out


def report(facts, cav, process, scaling, msm_scale, args) -> str:
    out = []
    p = out.append
    p(
        f"# ctmc_fit: {facts['cpu']}, {facts['cores']} cores, {facts['memory']}; Python "
        f"{facts['python']}, jax {facts['jax']} ({facts['jax_backend']}, float64), numpy "
        f"{facts['numpy']}, scipy {facts['scipy']}; {facts['R']}, msm {facts['msm']}; "
        f"{facts['date']}"
    )
    if cav:
        vg, msm, fit = cav["value_and_gradient"], cav["msm"], cav["linest_fit"]
        base = vg["linest default (shared eigen)"]
        p(
            f"\n## 1. cav: one log-likelihood value + gradient at the crude inits "
            f"({cav['subjects']} subjects, {cav['intervals']} intervals, {cav['cells']} cells; "
            f"median of {args.repeats} interleaved rounds; msm: bench::mark median of "
            f"{args.msm_evals})\n"
        )
        p("| call | ms | ratio to linest default |")
        p("|---|---|---|")
        for name, t in vg.items():
            p(f"| {name} | {ms(t)} | {t / base:.2f} |")
        p(
            f"| msm lik.msm (value only) | {ms(msm['lik_seconds'])} | {msm['lik_seconds'] / base:.1f} |"
        )
        p(
            f"| msm deriv.msm (gradient only) | {ms(msm['deriv_seconds'])} | {msm['deriv_seconds'] / base:.1f} |"
        )
        p(
            f"| msm lik.msm + deriv.msm | {ms(msm['both_seconds'])} | {msm['both_seconds'] / base:.1f} |"
        )
        c = cav["check_at_crude_inits"]
        p(
            f"\nTarget <= 1 ms: linest default {ms(base)} ms: "
            f"**{'met' if base <= 1e-3 else 'MISSED'}**. Agreement at the same theta: -2LL "
            f"linest {c['minus2loglik_linest']:.6f}, msm {c['minus2loglik_msm']:.6f}; "
            f"max |gradient difference| {c['max_abs_gradient_difference']:.2e} "
            f"(max |gradient| {c['max_abs_gradient']:.3g})."
        )
        msm_med = statistics.median(msm["fit_seconds"])
        p(f"\n## 2. cav: one full fit after warm-up (median of {args.fits})\n")
        p(
            "| fit | median s | first s | iterations | evaluations (fn/gr) | -2LL | converged | msm / this |"
        )
        p("|---|---|---|---|---|---|---|---|")
        p(
            f"| linest.fit(model, chains) | {fit['median']:.4f} | {fit['first_seconds']:.2f} "
            f"(compiles) | {fit['iterations']} | {fit['evaluations']} | "
            f"{fit['minus2loglik']:.4f} | {fit['converged']} | {msm_med / fit['median']:.1f} |"
        )
        p(
            f"| linest.fit(model, statistics) | {fit['from_statistics_median']:.4f} | - | "
            f"{fit['iterations']} | {fit['evaluations']} | {fit['minus2loglik']:.4f} | "
            f"{fit['converged']} | {msm_med / fit['from_statistics_median']:.1f} |"
        )
        p(
            f"| msm(state ~ years, deathexact = 4) | {msm_med:.4f} | - | - | "
            f"{msm['fn_evaluations']}/{msm['gr_evaluations']} | {msm['minus2loglik']:.4f} | "
            f"{msm['converged']} | 1.0 |"
        )
        ratio = msm_med / fit["median"]
        p(
            f"\nTarget >= 10x faster than msm: **{ratio:.1f}x, "
            f"{'met' if ratio >= 10 else 'MISSED'}**. -2LL linest "
            f"{fit['minus2loglik']:.6f}, msm {msm['minus2loglik']:.6f} (difference "
            f"{abs(fit['minus2loglik'] - msm['minus2loglik']):.1e})."
        )
    if process:
        med = process["median"]
        ref = med["Rscript ctmc_msm.R cav-fit (msm)"]
        p(
            f"\n## 3. cav: whole command, wall time (median of {args.process_runs} interleaved rounds)\n"
        )
        p("| command | median s | runs s | -2LL printed | ratio to Rscript |")
        p("|---|---|---|---|---|")
        for name, t in med.items():
            runs = ", ".join(f"{x:.2f}" for x in process["seconds"][name])
            p(f"| {name} | {t:.2f} | {runs} | {process['minus2loglik'][name]} | {t / ref:.2f} |")
    if scaling:
        p(
            f"\n## 4. Scaling: birth-death chains, {args.subjects} simulated subjects "
            "(10 years, visits every 0.5-1.5 years, times in days)\n"
        )
        p(
            "| states | rates | intervals | cells | states seen per subject | simulate + statistics s "
            "| value+grad default ms | Eigen() ms | Exact() ms | fit s | iterations (evals) "
            "| converged | max abs error vs truth |"
        )
        p("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for row in scaling:
            v = row["value_and_gradient"]
            f = row["fit"]
            fit_cells = (
                f"{secs(f['median'])} | {f['iterations']} ({f['evaluations']}) | "
                f"{f['converged']} | {f['max_abs_error_vs_truth']:.3f}"
                if f
                else f"not run (> --max-fit-states {args.max_fit_states}) | - | - | -"
            )
            p(
                f"| {row['states']} | {row['params']} | {row['intervals']} | {row['cells']} | "
                f"{row['mean_distinct_states_per_subject']:.1f} | "
                f"{row['simulate_seconds'] + row['statistics_seconds']:.1f} | "
                + " | ".join(
                    ms(v[k]) + ("" if row["finite"][k] else " (NaN: refused)")
                    for k in ("default", "Eigen()", "Exact()")
                )
                + f" | {fit_cells} |"
            )
        for row in scaling:
            f = row["fit"]
            if f and (f["warnings"] or not f["converged"]):
                p(
                    f"\n{row['states']} states: optimiser: {f['message'].rstrip('.')}. Warnings: {'; '.join(f['warnings'])}"
                )
            if f:
                p(
                    f"\n{row['states']} states: fit-program compile (value+gradient and "
                    f"Hessian, before the timed fits) {row['fit_compile_seconds']:.1f} s; "
                    f"-2LL {f['minus2loglik']:.3f}."
                )
    if msm_scale:
        li, ms_ = msm_scale["linest"], msm_scale["msm"]
        p(
            f"\n### 10-state chain, {msm_scale['subjects']} subjects ({msm_scale['intervals']} "
            f"intervals, {msm_scale['cells']} cells): linest against msm, fit from the CSV file\n"
        )
        p("| fit | s | iterations / evaluations | -2LL | converged | msm / this |")
        p("|---|---|---|---|---|---|")
        if "timeout" in ms_:
            p(f"| msm | > {ms_['timeout']} (stopped) | - | - | - | - |")
            p(f"| linest.fit | {li['median']:.3f} | {li['iterations']} / {li['evaluations']} | "
              f"{li['minus2loglik']:.3f} | {li['converged']} | - |")  # fmt: skip
        else:
            t = (
                ms_["fit_seconds"][0]
                if isinstance(ms_["fit_seconds"], list)
                else ms_["fit_seconds"]
            )
            p(
                f"| linest.fit (median of {args.scaling_fits}) | {li['median']:.3f} | "
                f"{li['iterations']} / {li['evaluations']} | {li['minus2loglik']:.3f} | "
                f"{li['converged']} | {t / li['median']:.0f} |"
            )
            p(
                f"| msm (1 fit, BFGS, fnscale = -2LL at inits) | {t:.1f} | - / "
                f"{ms_['fn_evaluations']} fn, {ms_['gr_evaluations']} gr | "
                f"{ms_['minus2loglik']:.3f} | {ms_['converged']} | 1 |"
            )
    return "\n".join(out)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=200, help="cav value+gradient rounds")
    parser.add_argument("--msm-evals", type=int, default=200, help="msm lik/deriv calls")
    parser.add_argument("--fits", type=int, default=7, help="timed cav fits, each side")
    parser.add_argument("--process-runs", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="*", default=[10, 30, 100])
    parser.add_argument("--subjects", type=int, default=100_000)
    parser.add_argument("--repeats-scaling", type=int, default=9)
    parser.add_argument("--scaling-fits", type=int, default=3, help="fits at 10 states")
    parser.add_argument(
        "--max-fit-states", type=int, default=30,
        help="no full fit above this many states (linest.fit's Hessian at 100 states "
        "needs more memory than the 24 GiB machine has)",
    )  # fmt: skip
    parser.add_argument("--msm-subjects", type=int, default=10_000, help="0: skip msm scaling")
    parser.add_argument("--msm-timeout", type=float, default=300)
    parser.add_argument(
        "--skip", nargs="*", default=[],
        choices=["cav", "process", "scaling", "ratings", "large", "hidden"],
    )  # fmt: skip
    parser.add_argument("--gibbs", type=int, default=1000, help="ctmcd Gibbs iterations")
    parser.add_argument("--large-states", type=int, default=100)
    parser.add_argument("--large-subjects", type=int, default=100_000)
    parser.add_argument("--json", help="also write the raw measurements here")
    parser.add_argument("--quick", action="store_true", help="small settings (smoke test)")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.msm_evals, args.fits, args.process_runs = 20, 20, 2, 1
        args.sizes, args.subjects, args.repeats_scaling = [10], 5000, 3
        args.scaling_fits, args.msm_subjects = 1, 300
        args.gibbs, args.large_states, args.large_subjects = 100, 10, 2000

    start = time.perf_counter()
    facts = machine_facts()
    log(f"machine: {facts}")
    cav = part_cav(args) if "cav" not in args.skip else None
    process = part_process(args) if "process" not in args.skip else None
    scaling, msm_scale = [], None
    if "scaling" not in args.skip:
        for n in args.sizes:
            scaling.append(scaling_row(args, n))
            jax.clear_caches()
            gc.collect()
        if args.msm_subjects:
            msm_scale = msm_scaling(args)
    ratings = part_ratings(args) if "ratings" not in args.skip else None
    large = part_large(args) if "large" not in args.skip else None
    hidden = part_hidden(args) if "hidden" not in args.skip else None
    text = report(facts, cav, process, scaling, msm_scale, args)
    text += "\n".join(report_new(ratings, large) + report_hidden(hidden))
    print(text)
    print(f"\n(benchmark wall time {time.perf_counter() - start:.0f} s)")
    if args.json:
        payload = {"facts": facts, "args": vars(args), "cav": cav, "process": process,
                   "scaling": scaling, "msm_scaling": msm_scale, "ratings": ratings,
                   "large": large, "hidden": hidden}  # fmt: skip
        Path(args.json).write_text(json.dumps(payload, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
