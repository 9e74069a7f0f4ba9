"""A reference solution of the continuous advection-diffusion equation, independent of linest.

    d theta / dt = kappa Laplacian(theta) - div(u theta)   on the periodic unit square

for a smooth velocity ``u(y, x)`` given as a function. Used to make data "from the real
equation" (data/advection_diffusion/simulate_continuous.py) and by the tests that check
linest's schemes against it. It shares no code with linest: numpy and scipy only.

Method: Fourier-Galerkin. The solution is expanded in the modes ``|k_y|, |k_x| < N/2``;
in these coefficients the equation is the linear system ``d c/dt = G c`` with

    G[k, k'] = -kappa |k|^2 delta(k, k') - i k . u_hat(k - k')

(``u_hat`` the velocity's Fourier coefficients), exact for a band-limited velocity: no
quadrature, no aliasing, no time steps. ``c(t) = expm(t G) c(0)`` by scipy's
``expm_multiply`` (Al-Mohy and Higham 2011, to double precision) on the sparse ``G``.
The truncation to ``N`` modes is the only approximation; for a smooth velocity and
initial field it falls faster than any power of ``1/N`` (``N = 48`` agrees with ``N = 64``
to about 1e-13 on the test problems). Outputs are the expansion evaluated at the centres
of the requested grid.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse
import scipy.sparse.linalg


def _modes(n: int) -> np.ndarray:
    """The wavenumbers ``-n/2 < k < n/2`` (integers), for an even or odd ``n``."""
    half = (n - 1) // 2
    return np.arange(-half, half + 1)


def _coefficients(function, n: int, sample: int = 64) -> dict[tuple[int, int], complex]:
    """Fourier coefficients ``f_hat(k)`` (of exp(2 pi i k . x)) of a smooth periodic
    function, from its values on a ``sample x sample`` grid at ``i / sample``; those below
    1e-14 of the largest are dropped (a band-limited field keeps its few modes)."""
    x = np.arange(sample) / sample
    y, x = np.meshgrid(x, x, indexing="ij")
    spectrum = np.fft.fft2(np.asarray(function(y, x), float)) / sample**2
    k = np.fft.fftfreq(sample, 1.0 / sample).astype(int)
    out = {}
    big = np.abs(spectrum).max()
    for i, j in zip(*np.nonzero(np.abs(spectrum) > 1e-14 * big)):
        if abs(k[i]) < sample // 2 and abs(k[j]) < sample // 2:
            out[int(k[i]), int(k[j])] = complex(spectrum[i, j])
    return out


def solve(velocity, kappa: float, initial, times, points: int, resolution: int = 48):
    """The continuous solution at ``times`` at the centres of a ``points x points`` grid.

    Parameters
    ----------
    velocity : callable ``(y, x) -> (u_y, u_x)`` on arrays of coordinates in [0, 1)
    kappa : diffusivity
    initial : callable ``(y, x) -> theta(0)``
    times : increasing output times > 0
    points : cells per axis of the output grid
    resolution : Fourier modes per axis of the expansion
    """
    k = _modes(resolution)
    size = len(k)
    index = {(int(a), int(b)): i * size + j for i, a in enumerate(k) for j, b in enumerate(k)}
    u_y = _coefficients(lambda y, x: velocity(y, x)[0], resolution)
    u_x = _coefficients(lambda y, x: velocity(y, x)[1], resolution)
    rows, cols, values = [], [], []
    for (a, b), row in index.items():
        wave = 2 * np.pi * np.array([a, b])
        rows.append(row)
        cols.append(row)
        values.append(-kappa * float(wave @ wave))
        for q in set(u_y) | set(u_x):
            col = index.get((a - q[0], b - q[1]))
            if col is None:
                continue
            rows.append(row)
            cols.append(col)
            values.append(-1j * (wave[0] * u_y.get(q, 0.0) + wave[1] * u_x.get(q, 0.0)))
    G = scipy.sparse.csr_matrix((values, (rows, cols)), shape=(size**2, size**2))
    start = _coefficients(initial, resolution, sample=max(64, 2 * resolution))
    c0 = np.zeros(size**2, complex)
    for mode, value in start.items():
        if mode in index:
            c0[index[mode]] = value
    x = (np.arange(points) + 0.5) / points
    E = np.exp(2j * np.pi * np.outer(x, k))  # (points, modes)
    out = []
    for t in np.asarray(times, float):
        c = scipy.sparse.linalg.expm_multiply(t * G, c0).reshape(size, size)
        out.append(np.real(E @ c @ E.T))
    return np.stack(out)
