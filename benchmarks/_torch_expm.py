"""torch.linalg.matrix_exp peer for gpu.py: forward and forward+backward, median ms.

Runs under any interpreter with torch (gpu.py uses its own when torch imports, else
.venv-torch). Reads the matrices from an .npz file; prints JSON {key: {forward, grad}}.

    python benchmarks/_torch_expm.py MATRICES.npz REPEATS
"""

import json
import sys
import time

import numpy as np
import torch


def median_ms(fn, repeats, sync):
    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def main():
    data = np.load(sys.argv[1])
    repeats = int(sys.argv[2])
    device = "cuda" if torch.cuda.is_available() else "cpu"
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    out = {"device": device, "torch": torch.__version__}
    for key in data.files:
        if not key.startswith("A_"):
            continue
        dtype = getattr(torch, key.split("_")[1])
        A = torch.tensor(data[key], dtype=dtype, device=device)
        W = torch.tensor(data["W_" + key[2:]], dtype=dtype, device=device)

        def grad(A=A, W=W):
            M = A.clone().requires_grad_(True)
            (W * torch.linalg.matrix_exp(M)).sum().backward()
            return M.grad

        with torch.no_grad():
            forward = median_ms(lambda A=A: torch.linalg.matrix_exp(A), repeats, sync)
        out[key[2:]] = {"forward": forward, "grad": median_ms(grad, repeats, sync)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
