"""Make data/advection_diffusion_2d.nc: noisy snapshots of a known flow (run from the repo root).

    python data/advection_diffusion/simulate.py

The truth (also written to data/advection_diffusion/truth.json):

* periodic unit square, 64 x 64 cells, central finite volumes;
* kappa = 0.004;
* velocity given on an 8 x 8 coarse grid (nodes at the centres of the coarse cells,
  interpolated bilinearly to the faces): a cellular flow plus a mean drift,
  u_x = 0.2 + 0.25 sin(2 pi x) cos(2 pi y), u_y = 0.1 - 0.25 cos(2 pi x) sin(2 pi y)
  sampled at the nodes (max cell Peclet number 1.6, below the central scheme's 2);
* initial field: 1 + a sum of five smooth Fourier modes and a Gaussian blob;
* snapshots at t = 0.25, 0.5, 0.75, 1 of the whole grid with Gaussian noise sigma = 0.02.

The solve uses linest itself (Adjoint, Tsit5, rtol 1e-10); the data are cell values.
"""

import json
from pathlib import Path

import jax
import numpy as np

import linest
from linest.models import write_snapshots

ROOT = Path(__file__).resolve().parents[1]
SHAPE, COARSE, KAPPA, SIGMA = (64, 64), 8, 0.004, 0.02
TIMES = [0.25, 0.5, 0.75, 1.0]


def true_velocity(coarse=COARSE):
    c = (np.arange(coarse) + 0.5) / coarse
    y, x = np.meshgrid(c, c, indexing="ij")
    u_x = 0.2 + 0.25 * np.sin(2 * np.pi * x) * np.cos(2 * np.pi * y)
    u_y = 0.1 - 0.25 * np.cos(2 * np.pi * x) * np.sin(2 * np.pi * y)
    return np.stack([u_y, u_x])  # components ordered as the grid axes (y, x)


def initial_field(shape=SHAPE):
    y, x = np.meshgrid(*[(np.arange(n) + 0.5) / n for n in shape], indexing="ij")
    field = 1.0 + 0.4 * np.sin(2 * np.pi * x) * np.cos(4 * np.pi * y)
    field += 0.3 * np.cos(2 * np.pi * (x + 2 * y) + 0.5) + 0.2 * np.sin(2 * np.pi * (3 * x - y))
    field += 0.15 * np.cos(6 * np.pi * y + 1.0) + 0.15 * np.sin(4 * np.pi * x + 2.0)
    field += 0.5 * np.exp(-((x - 0.3) ** 2 + (y - 0.6) ** 2) / 0.01)
    return field


def main():
    model = linest.AdvectionDiffusion(
        SHAPE, velocity="grid", coarse=COARSE, solver=linest.Adjoint(rtol=1e-10, atol=1e-12)
    )
    theta = model.theta(KAPPA, true_velocity(), sigma=SIGMA)
    data = model.simulate(jax.random.key(20261123), theta, TIMES, initial_field())
    attrs = {
        "title": "linest: simulated advection-diffusion snapshots (known truth)",
        "source": "data/advection_diffusion/simulate.py",
        "kappa": KAPPA,
        "sigma": SIGMA,
        "velocity": "grid 8 x 8 (see truth.json)",
    }
    write_snapshots(ROOT / "advection_diffusion_2d.nc", data, attrs)
    truth = {
        "shape": list(SHAPE),
        "coarse": COARSE,
        "kappa": KAPPA,
        "sigma": SIGMA,
        "times": TIMES,
        "velocity_y": true_velocity()[0].tolist(),
        "velocity_x": true_velocity()[1].tolist(),
        "theta": theta.tolist(),
        "peclet": model.peclet(theta),
    }
    (ROOT / "advection_diffusion" / "truth.json").write_text(json.dumps(truth, indent=1) + "\n")
    print(f"wrote {ROOT / 'advection_diffusion_2d.nc'} (max cell Peclet {truth['peclet']:.3g})")


if __name__ == "__main__":
    main()
