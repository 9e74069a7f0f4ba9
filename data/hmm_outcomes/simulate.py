"""Simulated panel data for hidden Markov models with count and positive outcomes (the
reference fits of msm's hmmPois, hmmBinom, hmmExp and hmmLNorm in
tests/models/msm/outcomes_msm.R).

A two-state chain 1 <-> 2 (rates 0.3 and 0.2), 150 subjects from state 1, visits at
irregular times (gaps uniform on 0.5..2.5), 8 visits each. At each visit, from the true
state: a Poisson count (means 2 and 7), a binomial count of 10 (p 0.2 and 0.6), an
exponential value (rates 1 and 0.25) and a lognormal value (meanlog 0 and 1.5, sdlog
0.5 and 0.4). Run: python data/hmm_outcomes/simulate.py (writes hmm_outcomes.csv here).
"""

from pathlib import Path

import numpy as np
import scipy.linalg


def main():
    rng = np.random.default_rng(20261207)
    Q = np.array([[-0.3, 0.3], [0.2, -0.2]])
    rows = []
    for subject in range(1, 151):
        state, t = 0, 0.0
        for k in range(8):
            if k:
                gap = rng.uniform(0.5, 2.5)
                P = scipy.linalg.expm(Q * gap)
                state = int(rng.random() > P[state, 0])
                t += gap
            rows.append(
                (
                    subject,
                    round(t, 4),
                    int(rng.poisson([2.0, 7.0][state])),
                    int(rng.binomial(10, [0.2, 0.6][state])),
                    round(float(rng.exponential(1 / [1.0, 0.25][state])), 5),
                    round(float(rng.lognormal([0.0, 1.5][state], [0.5, 0.4][state])), 5),
                )
            )
    out = Path(__file__).with_name("hmm_outcomes.csv")
    with out.open("w") as f:
        f.write("subject,time,count,successes,duration,level\n")
        for r in rows:
            f.write(",".join(map(str, r)) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
