"""Make data/compartment.csv: a two-compartment oral-dose model with a known truth (run from the repo root).

    python data/compartment/simulate.py

Truth (also in data/compartment/truth.json): compartments gut, central, peripheral;
flows ka = 1.2 (gut -> central), k12 = 0.3 (central -> peripheral), k21 = 0.15
(peripheral -> central), ke = 0.2 (central -> out); 8 subjects with bolus doses of
50..120 into gut at t = 0; the central concentration (amount / V, V = 10) measured at
12 times from 0.25 to 36 with proportional noise sigma = 0.1 (sd = 0.1 x mean).
"""

import json
from pathlib import Path

import numpy as np

import linest
from linest.models.linear_ode import Series

ROOT = Path(__file__).resolve().parents[1]
TRUTH = {"ka": 1.2, "k12": 0.3, "k21": 0.15, "ke": 0.2, "V": 10.0, "sigma": 0.1}
TIMES = [0.25, 0.5, 1, 1.5, 2, 3, 4, 6, 8, 12, 24, 36]
DOSES = [50, 60, 70, 80, 90, 100, 110, 120]


def model():
    return linest.LinearODE(
        ["gut", "central", "peripheral"],
        flows=[
            ("ka", "gut", "central"),
            ("k12", "central", "peripheral"),
            ("k21", "peripheral", "central"),
            ("ke", "central", "out"),
        ],
        observe="central",
        volume="V",
        dose="gut",
        noise="proportional",
    )


def main():
    m = model()
    n = len(TIMES)
    subjects = np.repeat([str(i + 1) for i in range(len(DOSES))], n)
    design = Series.from_arrays(
        np.tile(TIMES, len(DOSES)),
        np.zeros(n * len(DOSES)),
        subjects,
        dose={str(i + 1): d for i, d in enumerate(DOSES)},
    )
    data = m.simulate(2026, m.theta(**TRUTH), design)
    rows = ["subject,dose,time,conc"]
    for s, t, v in zip(data.subject, data.time, data.value[:, 0]):
        rows.append(f"{s},{data.dose[s]:g},{t:g},{v:.6g}")
    (ROOT / "compartment.csv").write_text("\n".join(rows) + "\n")
    (ROOT / "compartment" / "truth.json").write_text(json.dumps(TRUTH, indent=2) + "\n")


if __name__ == "__main__":
    main()
