"""Many chains and big matrices (issue 12): runs on whatever JAX's default device is.

1. Sampling, cav posterior (models/cav.toml, prior normal(-2, 2) on every log-rate):
   ESS/s (min ESS_bulk over the 7 log-rates / wall of warm-up + sampling, second call
   in the process) against the number of chains, for linest's NUTS, ChEES and MEADS
   (MEADS, one leapfrog step per draw, runs --meads-factor times the warm-up steps and
   draws; it needs >= 32 chains). numpyro's NUTS (the peer) runs from
   benchmarks/_hmc_peers.py in .venv-peers when it exists.
2. expm on one d x d matrix (random, scaled to norm 1), float64 and float32, median ms
   over interleaved rounds: forward of linest.expm (Taylor kernel, the default) and
   Exact(kernel="pade"), jax.scipy.linalg.expm, (float64, CPU) scipy.linalg.expm and
   torch.linalg.matrix_exp on the same device (torch in this interpreter, else
   .venv-torch); value + gradient of sum(W * expm(A)) by both kernels, by autodiff
   through jax.scipy and by torch. Ratios against the fastest peer forward.

    python benchmarks/gpu.py                                  # CPU-sized defaults
    python benchmarks/gpu.py --chains 64 256 1024 4096 --sizes 256 1024 4096   # a GPU
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from _timing import median_ms  # noqa: E402

import linest  # noqa: E402
from linest.sampling import SamplingWarning  # noqa: E402
from linest.spec import load_spec  # noqa: E402

PEERS_PYTHON = ROOT / ".venv-peers" / "bin" / "python"
TORCH_PYTHON = ROOT / ".venv-torch" / "bin" / "python"


def sampling_row(kernel, chains, args, model, data, prior) -> dict:
    factor = args.meads_factor if kernel == "meads" else 1
    warmup, draws = args.warmup * factor, args.draws * factor
    runs = []
    for seed in (args.seed, args.seed + 1):  # the second call is the one reported
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SamplingWarning)
            tree = linest.sample(
                model, data, prior, num_chains=chains, num_warmup=warmup,
                num_samples=draws, kernel=kernel, rng_key=seed, progress=False,
                log_likelihood=False,
            )  # fmt: skip
        wall = time.perf_counter() - start
        ess = az.ess(tree, var_names=["theta"], method="bulk")["theta"].values
        stats = tree["sample_stats"]
        runs.append(
            {
                "wall": wall,
                "warmup": float(tree.attrs["linest_warmup_seconds"]),
                "sampling": float(tree.attrs["linest_sampling_seconds"]),
                "ess": float(ess.min()),
                "steps": float(stats["n_steps"].mean()),
                "accept": float(stats["acceptance_rate"].mean()),
                "divergences": int(stats["diverging"].sum()),
                "rhat": float(az.rhat(tree, var_names=["theta"])["theta"].values.max()),
                "first_wall": runs[0]["wall"] if runs else wall,
                "per_chain": f"{warmup} + {draws}",
            }
        )
    row = runs[-1] | {"first_wall": runs[0]["wall"]}
    print(
        f"  {kernel} x {chains}: {row['wall']:.1f} s (first call {row['first_wall']:.1f}), "
        f"min ESS {row['ess']:.0f}",
        flush=True,
    )
    return row


def numpyro_row(chains, args) -> dict | None:
    if not PEERS_PYTHON.exists():
        return None
    import json

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "numpyro.json"
        command = [
            str(PEERS_PYTHON), str(HERE / "_hmc_peers.py"), "--peer", "numpyro",
            "--chains", str(chains), "--warmup", str(args.warmup), "--draws", str(args.draws),
            "--seed", str(args.seed), "--json", str(out),
        ]  # fmt: skip
        subprocess.run(command, timeout=args.peer_timeout, check=False)
        if not out.exists():
            return None
        runs = json.loads(out.read_text()).get("runs") or []
        if not runs:
            return None
        run = runs[-1]
        return {
            "wall": run["wall_s"],
            "ess": run["min_ess_bulk"],
            "steps": run.get("mean_leapfrog_steps", float("nan")),
            "accept": run["mean_accept"],
            "divergences": run["divergences"],
            "warmup": float("nan"),
            "sampling": float("nan"),
            "rhat": float("nan"),
            "first_wall": runs[0]["wall_s"],
            "per_chain": f"{args.warmup} + {args.draws}",
        }


def torch_python() -> str | None:
    """An interpreter with torch: this one (the GPU machine has torch), else .venv-torch."""
    try:
        import torch  # noqa: F401

        return sys.executable
    except ImportError:
        return str(TORCH_PYTHON) if TORCH_PYTHON.exists() else None


def torch_times(matrices: dict, repeats: int) -> dict:
    """torch.linalg.matrix_exp on the same matrices, in its own process (see _torch_expm.py)."""
    python = torch_python()
    if python is None:
        return {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "matrices.npz"
        np.savez(path, **matrices)
        result = subprocess.run(
            [python, str(HERE / "_torch_expm.py"), str(path), str(repeats)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
    if result.returncode != 0:
        print(f"torch peer failed: {result.stderr[-500:]}", file=sys.stderr)
        return {}
    return json.loads(result.stdout)


def exact_value_and_grad(kernel, W):
    loss = lambda M: jnp.sum(W * linest.expm(M, linest.Exact(kernel=kernel)))  # noqa: E731
    return jax.jit(jax.value_and_grad(loss))


def expm_rows(args) -> tuple[list[dict], dict]:
    """Forward and value+gradient times of every candidate, measured in interleaved rounds
    (jax candidates here, torch in its own process right after)."""
    rows = []
    rng = np.random.default_rng(0)
    matrices = {}
    for dtype in args.dtypes:
        for d in args.sizes:
            A = rng.standard_normal((d, d))
            A /= np.linalg.norm(A, 1)
            W = rng.standard_normal((d, d))
            matrices[f"A_{dtype}_{d}"], matrices[f"W_{dtype}_{d}"] = A, W
            A_j, W_j = jnp.asarray(A, dtype), jnp.asarray(W, dtype)
            forward = {
                "linest.expm (taylor)": jax.jit(lambda M: linest.expm(M)),
                "linest pade": jax.jit(lambda M: linest.expm(M, linest.Exact(kernel="pade"))),
                "jax.scipy expm": jax.jit(jax.scipy.linalg.expm),
            }
            if dtype == "float64" and jax.default_backend() == "cpu":
                forward["scipy expm"] = scipy.linalg.expm
            gradient = {
                "Exact() value+grad": exact_value_and_grad("taylor", W_j),
                "Exact(pade) value+grad": exact_value_and_grad("pade", W_j),
                "jax.scipy autodiff value+grad": jax.jit(
                    jax.value_and_grad(lambda M, W=W_j: jnp.sum(W * jax.scipy.linalg.expm(M)))
                ),
            }
            candidates = {**forward, **gradient}
            samples = {k: [] for k in candidates}
            for _ in range(args.repeats):  # interleaved rounds
                for k, f in candidates.items():
                    x = A if k == "scipy expm" else A_j
                    samples[k].append(median_ms(f, x, repeat=1))
            times = {k: float(np.median(v)) for k, v in samples.items()}
            value = np.asarray(linest.expm(A_j), float)
            error = float(np.max(np.abs(value - scipy.linalg.expm(A))) / np.max(np.abs(value)))
            rows.append({"dtype": dtype, "d": d, "times": times, "error": error})
            print(f"  expm {dtype} d={d}: " + ", ".join(f"{k} {v:.3g}" for k, v in times.items()))
    peer = torch_times(matrices, args.repeats)
    for r in rows:
        t = peer.get(f"{r['dtype']}_{r['d']}")
        if t:
            r["times"]["torch matrix_exp"] = t["forward"]
            r["times"]["torch value+grad"] = t["grad"]
    return rows, {k: peer[k] for k in ("device", "torch") if k in peer}


PEER_FORWARDS = ("jax.scipy expm", "scipy expm", "torch matrix_exp")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chains", type=int, nargs="*", default=[4, 16, 64])
    parser.add_argument("--kernels", nargs="*", default=["nuts", "chees", "meads"])
    parser.add_argument("--meads-factor", type=int, default=4)
    parser.add_argument(
        "--peer-max-chains", type=int, default=0,
        help="skip numpyro above this many chains",
    )  # fmt: skip
    parser.add_argument(
        "--nuts-max-chains", type=int, default=0,
        help="skip linest NUTS above this many chains (vmapped NUTS is slow on a CPU)",
    )  # fmt: skip
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--draws", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--peer-timeout", type=float, default=1800)
    parser.add_argument("--sizes", type=int, nargs="*", default=[8, 64, 256, 512])
    parser.add_argument("--dtypes", nargs="*", default=["float64", "float32"])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--skip", nargs="*", default=[], choices=["sampling", "expm"])
    args = parser.parse_args()

    device = jax.devices()[0]
    print(
        f"# gpu.py: {platform.node()}, {os.cpu_count()} cores, jax {jax.__version__}, "
        f"{len(jax.devices())} x {device.platform} ({getattr(device, 'device_kind', '')})"
    )
    lines = []
    if "sampling" not in args.skip:
        spec = load_spec(ROOT / "models" / "cav.toml")
        rows = {}
        for chains in args.chains:
            for kernel in args.kernels:
                if kernel == "meads" and (chains < 32 or chains % 4):
                    continue  # MEADS refuses fewer than 32 chains
                if kernel == "nuts" and args.nuts_max_chains and chains > args.nuts_max_chains:
                    continue
                rows[(kernel, chains)] = sampling_row(
                    kernel, chains, args, spec.model, spec.read_data(), spec.priors
                )
            peer = None
            if not args.peer_max_chains or chains <= args.peer_max_chains:
                peer = numpyro_row(chains, args)
            if peer is not None:
                rows[("numpyro nuts", chains)] = peer
        lines += [
            f"## cav posterior, {args.warmup} warm-up + {args.draws} draws per chain "
            "(second call; ESS/s = min ESS_bulk / wall)",
            "",
            "| sampler | chains | warm-up + draws | wall s (first call) | warm-up s | sampling s "
            "| min ESS_bulk | ESS/s | ratio to best linest NUTS | leapfrog/draw | accept | divergences "
            "| max r_hat |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        best_nuts = max(
            (r["ess"] / r["wall"] for (k, _), r in rows.items() if k == "nuts"), default=math.nan
        )
        for (kernel, chains), r in rows.items():
            ratio = (r["ess"] / r["wall"]) / best_nuts
            lines.append(
                f"| {kernel} | {chains} | {r['per_chain']} | {r['wall']:.1f} "
                f"({r['first_wall']:.1f}) | "
                f"{r['warmup']:.1f} | {r['sampling']:.1f} | {r['ess']:.0f} | "
                f"{r['ess'] / r['wall']:.1f} | {ratio:.2f} | {r['steps']:.1f} | "
                f"{r['accept']:.2f} | {r['divergences']} | {r['rhat']:.3f} |"
            )
        if not PEERS_PYTHON.exists():
            lines.append(f"\n(numpyro not run: {PEERS_PYTHON} missing)")
        lines.append("")
    if "expm" not in args.skip:
        rows, torch_info = expm_rows(args)
        names = list(dict.fromkeys(k for r in rows for k in r["times"]))
        lines += [
            "## expm of one d x d matrix (norm 1), median ms"
            + (f"; torch {torch_info['torch']} on {torch_info['device']}" if torch_info else ""),
            "",
            "| dtype | d | " + " | ".join(names) + " | linest fwd / fastest peer fwd | "
            "Exact() grad / fastest peer fwd | rel. error vs scipy |",
            "|---|---|" + "---|" * (len(names) + 3),
        ]
        for r in rows:
            t = r["times"]
            fastest = min(t[k] for k in PEER_FORWARDS if k in t)
            cells = " | ".join(f"{t[k]:.3g}" if k in t else "-" for k in names)
            lines.append(
                f"| {r['dtype']} | {r['d']} | {cells} | "
                f"{t['linest.expm (taylor)'] / fastest:.2f} | "
                f"{t['Exact() value+grad'] / fastest:.2f} | {r['error']:.1e} |"
            )
        if not torch_info:
            lines.append(f"\n(torch not run: not importable here and {TORCH_PYTHON} missing)")
    print("\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
