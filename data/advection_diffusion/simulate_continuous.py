"""Make data/advection_diffusion_continuous.nc: snapshots of the continuous equation.

    python data/advection_diffusion/simulate_continuous.py      (from the repository root)

Unlike advection_diffusion_2d.nc (made by linest's own finite-volume model), these come
from the continuous PDE, solved by data/advection_diffusion/continuous.py (Fourier-Galerkin
with 64 modes per axis and scipy's expm_multiply; it shares no code with linest):

* periodic unit square; snapshots of the 64 x 64 cell centres;
* kappa = 0.004;
* the velocity of advection_diffusion_2d.nc as a smooth field: a cellular flow plus a
  drift, u_x = 0.2 + 0.25 sin(2 pi x) cos(2 pi y), u_y = 0.1 - 0.25 cos(2 pi x) sin(2 pi y)
  (divergence-free; on 8 x 8 nodes with trigonometric interpolation, as
  models/advection_diffusion_spectral.toml reads it, it is represented exactly);
* the initial field of advection_diffusion_2d.nc (five Fourier modes and a Gaussian blob),
  with the blob made periodic (the sum of its images: there it differs by up to 6e-5 near
  the edges, where the non-periodic blob had a jump of that size);
* snapshots at t = 0.25, 0.5, 0.75, 1 with Gaussian noise sigma = 0.02.

The truth is written to data/advection_diffusion/truth_continuous.json.
"""

import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import continuous  # noqa: E402
from simulate import COARSE, KAPPA, SIGMA, TIMES, initial_field, true_velocity  # noqa: E402

from linest.models import Snapshots, write_snapshots  # noqa: E402

N = 64


def velocity(y, x):
    return (
        0.1 - 0.25 * np.cos(2 * np.pi * x) * np.sin(2 * np.pi * y),
        0.2 + 0.25 * np.sin(2 * np.pi * x) * np.cos(2 * np.pi * y),
    )


def initial(y, x):
    """initial_field() of simulate.py as a function of the coordinates."""
    field = 1.0 + 0.4 * np.sin(2 * np.pi * x) * np.cos(4 * np.pi * y)
    field += 0.3 * np.cos(2 * np.pi * (x + 2 * y) + 0.5) + 0.2 * np.sin(2 * np.pi * (3 * x - y))
    field += 0.15 * np.cos(6 * np.pi * y + 1.0) + 0.15 * np.sin(4 * np.pi * x + 2.0)
    # The blob, periodised: the sum of its images (smooth on the torus).
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            field += 0.5 * np.exp(-((x + dx - 0.3) ** 2 + (y + dy - 0.6) ** 2) / 0.01)
    return field


def main():
    c = (np.arange(N) + 0.5) / N
    y, x = np.meshgrid(c, c, indexing="ij")
    start = initial(y, x)
    assert np.abs(start - initial_field((N, N))).max() < 1e-4  # the same field, periodic
    clean = continuous.solve(velocity, KAPPA, initial, TIMES, N, resolution=64)
    noise = SIGMA * np.random.default_rng(20261206).standard_normal(clean.shape)
    data = Snapshots(np.asarray(TIMES), clean + noise, start, (1.0, 1.0), None, "", "concentration")
    attrs = {
        "title": "linest: snapshots of the continuous advection-diffusion equation (known truth)",
        "source": "data/advection_diffusion/simulate_continuous.py",
        "kappa": KAPPA,
        "sigma": SIGMA,
        "velocity": "cellular flow plus drift (see truth_continuous.json)",
    }
    write_snapshots(HERE.parent / "advection_diffusion_continuous.nc", data, attrs)
    truth = {
        "shape": [N, N],
        "coarse": COARSE,
        "kappa": KAPPA,
        "sigma": SIGMA,
        "times": TIMES,
        "velocity_y": true_velocity()[0].tolist(),
        "velocity_x": true_velocity()[1].tolist(),
        "theta": [float(np.log(KAPPA)), *true_velocity().ravel().tolist(), float(np.log(SIGMA))],
        "solver": "Fourier-Galerkin, 64 modes per axis, scipy expm_multiply",
    }
    (HERE / "truth_continuous.json").write_text(json.dumps(truth, indent=1) + "\n")
    print(f"wrote {HERE.parent / 'advection_diffusion_continuous.nc'}")


if __name__ == "__main__":
    main()
