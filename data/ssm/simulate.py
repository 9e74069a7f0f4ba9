"""Make data/ssm.csv: a damped oscillator observed with noise at irregular times (run from the repo root).

    python data/ssm/simulate.py

Truth (also in data/ssm/truth.json): 2 states, A = [[-0.1, 1.0], [-1.0, -0.3]]
(eigenvalues -0.2 +- 0.995i), diffusion standard deviations q = (0.3, 0.5), both states
observed with noise r = (0.2, 0.3); 3 sequences of 150 observations with exponential
gaps of mean 0.2 (the same times for each), h(0) ~ N(0, I).
"""

import json
from pathlib import Path

import numpy as np

import linest

ROOT = Path(__file__).resolve().parents[1]
A = [[-0.1, 1.0], [-1.0, -0.3]]
Q, R = [0.3, 0.5], [0.2, 0.3]


def model():
    return linest.LinearSSM(2, [[1.0, 0.0], [0.0, 1.0]])


def main():
    m = model()
    times = np.round(np.cumsum(np.random.default_rng(7).exponential(0.2, 150)), 4)
    data = m.simulate(2026, m.theta(A, Q, R), times, sequences=3)
    rows = ["sequence,time,y1,y2"]
    for s, t, v in zip(data.subject, data.time, data.value):
        rows.append(f"{s},{t:g},{v[0]:.6g},{v[1]:.6g}")
    (ROOT / "ssm.csv").write_text("\n".join(rows) + "\n")
    truth = {"A": A, "q": Q, "r": R, "theta": [float(v) for v in m.theta(A, Q, R)]}
    (ROOT / "ssm" / "truth.json").write_text(json.dumps(truth, indent=2) + "\n")


if __name__ == "__main__":
    main()
