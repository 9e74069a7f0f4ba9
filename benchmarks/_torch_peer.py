"""Peer timings for gradient_cost.py: torch.linalg.matrix_exp forward and forward+backward.

Runs under its own interpreter (a Python 3.11 venv with the CPU torch wheel); prints JSON.
"""

import json
import sys
import time

import numpy as np
import torch


def median_time(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main():
    config = json.loads(sys.argv[1])
    rng = np.random.default_rng(0)
    out = {}
    for d in config["sizes"]:
        A = torch.tensor(rng.standard_normal((d, d)) / np.sqrt(d), dtype=torch.float64)
        G = torch.tensor(rng.standard_normal((d, d)), dtype=torch.float64)

        def grad(A=A, G=G):
            M = A.clone().requires_grad_(True)
            (G * torch.linalg.matrix_exp(M)).sum().backward()
            return M.grad

        reps = config["repeats"] if d <= 128 else max(5, config["repeats"] // 2)
        out[str(d)] = {
            "forward": median_time(lambda A=A: torch.linalg.matrix_exp(A), reps),
            "grad": median_time(grad, reps),
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
