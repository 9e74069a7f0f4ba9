"""Cost of one reverse gradient through exp(M), relative to the forward expm, per method.

Peers measured side by side in the same run: jax.grad through jax.scipy.linalg.expm,
scipy.linalg.expm_frechet (against scipy.linalg.expm), and torch.linalg.matrix_exp
backward (against its own forward; run in a separate Python 3.11 venv with the CPU wheel,
see --torch-python). Candidates are timed in interleaved rounds so that machine noise
hits them alike; medians are reported.

    python benchmarks/gradient_cost.py                       # d = 8, 32, 128, 512
    python benchmarks/gradient_cost.py --sizes 8 32 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg as sl

import linest

HERE = Path(__file__).resolve().parent

METHODS = {
    "Exact": linest.Exact(),
    "Eigen": linest.Eigen(),
    "Surrogate left": linest.Surrogate("left"),
    "Surrogate midpoint": linest.Surrogate("midpoint"),
    "Surrogate gauss-2": linest.Surrogate("gauss", nodes=2),
    "SeriesSurrogate": linest.SeriesSurrogate(),
    "AutoDiff (jax.grad of jax.scipy expm)": linest.AutoDiff(),
}


def interleaved_medians(candidates: dict, repeats: int) -> dict:
    """Median wall time of each zero-argument callable, timed in rotating rounds.

    Each timed call follows an untimed call of the same candidate: BLAS threads left
    spinning by the previous candidate (OpenBLAS under scipy does this) would otherwise
    be charged to whoever comes next.
    """
    for fn in candidates.values():  # warm-up / compile
        fn()
    times = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            fn()
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}


def jax_candidates(A, G):
    def ready(f, *args):
        return lambda: jax.block_until_ready(f(*args))

    out = {
        "forward linest.expm": ready(jax.jit(linest.expm), A),
        "forward jax.scipy expm": ready(jax.jit(jax.scipy.linalg.expm), A),
    }
    for name, method in METHODS.items():
        loss = lambda M, method=method: jnp.sum(G * linest.expm(M, method))  # noqa: E731
        out[f"grad {name}"] = ready(jax.jit(jax.grad(loss)), A)
    for name in ("Exact", "Surrogate left"):  # the backward pass alone, residuals kept
        _, vjp = jax.vjp(lambda M, m=METHODS[name]: linest.expm(M, m), A)
        out[f"backward only {name}"] = ready(jax.jit(lambda G, vjp=vjp: vjp(G)[0]), G)
    return out


def torch_peer(python: str, sizes, repeats) -> dict | None:
    if not python or not Path(python).exists():
        return None
    script = HERE / "_torch_peer.py"
    result = subprocess.run(
        [python, str(script), json.dumps({"sizes": sizes, "repeats": repeats})],
        capture_output=True, text=True, check=False,
        env={**os.environ, "OMP_NUM_THREADS": str(os.cpu_count())},
    )  # fmt: skip
    if result.returncode != 0:
        print(f"torch peer failed: {result.stderr[-500:]}", file=sys.stderr)
        return None
    return json.loads(result.stdout.strip().splitlines()[-1])


def vmap_table(repeats: int):
    """Per-matrix cost of a batch of 64 matrices 64 x 64 with mixed norms."""
    rng = np.random.default_rng(1)
    scales = np.geomspace(0.01, 50, 64)[:, None, None]
    A = jnp.asarray(rng.standard_normal((64, 64, 64)) / 8 * scales)
    G = jnp.asarray(rng.standard_normal((64, 64, 64)))
    cands = {
        "jax.vmap(jax.scipy expm)": jax.jit(jax.vmap(jax.scipy.linalg.expm)),
        "linest.expm (batched)": jax.jit(linest.expm),
        "jax.vmap(linest.expm)": jax.jit(jax.vmap(linest.expm)),
        "grad: jax.vmap(jax.grad(jax.scipy expm))": jax.jit(
            jax.vmap(jax.grad(lambda M, G: jnp.sum(G * jax.scipy.linalg.expm(M))))
        ),
        "grad: jax.vmap(jax.grad(linest.expm))": jax.jit(
            jax.vmap(jax.grad(lambda M, G: jnp.sum(G * linest.expm(M))))
        ),
    }
    calls = {
        k: (lambda f=f, k=k: jax.block_until_ready(f(A, G) if k.startswith("grad") else f(A)))
        for k, f in cands.items()
    }
    return interleaved_medians(calls, repeats)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 32, 128, 512])
    parser.add_argument("--repeats", type=int, default=15)
    default_torch = HERE.parent / ".venv-torch" / "bin" / "python"
    parser.add_argument(
        "--torch-python", default=os.environ.get("LINEST_TORCH_PYTHON", str(default_torch))
    )
    args = parser.parse_args(argv)

    print(f"# gradient_cost: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"jax {jax.__version__} on {jax.devices()[0].platform}, float64")  # fmt: skip
    torch = torch_peer(args.torch_python, args.sizes, args.repeats)
    rng = np.random.default_rng(0)
    rows = {}
    for d in args.sizes:
        A_np = rng.standard_normal((d, d)) / np.sqrt(d)
        G_np = rng.standard_normal((d, d))
        A, G = jnp.asarray(A_np), jnp.asarray(G_np)
        cands = jax_candidates(A, G)
        cands["scipy expm"] = lambda A_np=A_np: sl.expm(A_np)
        cands["scipy expm_frechet"] = lambda A_np=A_np, G_np=G_np: sl.expm_frechet(A_np.T, G_np)
        reps = args.repeats if d <= 128 else max(5, args.repeats // 2)
        rows[d] = interleaved_medians(cands, reps)
        print(f"  d={d} done", file=sys.stderr)

    names = [n for n in rows[args.sizes[0]] if n.startswith(("grad", "backward"))]
    print("\n## Gradient time / forward time (median; forward = linest.expm, jitted)\n")
    print("| method | " + " | ".join(f"d={d}" for d in args.sizes) + " |")
    print("|---|" + "---|" * len(args.sizes))
    print(
        "| forward linest.expm (ms) | "
        + " | ".join(f"{rows[d]['forward linest.expm'] * 1e3:.3g}" for d in args.sizes)
        + " |"
    )
    print(
        "| forward jax.scipy expm / linest | "
        + " | ".join(
            f"{rows[d]['forward jax.scipy expm'] / rows[d]['forward linest.expm']:.2f}"
            for d in args.sizes
        )
        + " |"
    )
    for name in names:
        cells = [f"{rows[d][name] / rows[d]['forward linest.expm']:.2f}" for d in args.sizes]
        print(f"| {name.removeprefix('grad ')} | " + " | ".join(cells) + " |")
    print(
        "| scipy expm_frechet / scipy expm | "
        + " | ".join(
            f"{rows[d]['scipy expm_frechet'] / rows[d]['scipy expm']:.2f}" for d in args.sizes
        )
        + " |"
    )
    if torch:
        print(
            "| torch matrix_exp fwd+backward / torch fwd | "
            + " | ".join(
                f"{torch[str(d)]['grad'] / torch[str(d)]['forward']:.2f}" for d in args.sizes
            )
            + " |"
        )
        print(
            "| torch forward / linest forward | "
            + " | ".join(
                f"{torch[str(d)]['forward'] / rows[d]['forward linest.expm']:.2f}"
                for d in args.sizes
            )
            + " |"
        )
    else:
        print("| torch | not run (no --torch-python venv with torch) |")

    print("\n## Batched: 64 matrices 64 x 64, norms 0.01..50 (median ms per matrix)\n")
    batch = vmap_table(args.repeats)
    base = batch["jax.vmap(jax.scipy expm)"]
    print("| call | ms per matrix | ratio to jax.vmap(jax.scipy expm) |")
    print("|---|---|---|")
    for name, t in batch.items():
        ref = batch["grad: jax.vmap(jax.grad(jax.scipy expm))"] if name.startswith("grad") else base
        print(f"| {name} | {t / 64 * 1e3:.3f} | {t / ref:.2f} |")


if __name__ == "__main__":
    main()
