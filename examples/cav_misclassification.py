"""Heart-transplant CAV with misclassified biopsies: maximum likelihood against the posterior.

    python examples/cav_misclassification.py [--out DIR] [--chains 4] [--warmup 500] [--draws 500]

The msm manual's hidden Markov example (models/cav_misc.toml): the true CAV grade
progresses 1 -> 2 -> 3 (or the patient dies, 4); a biopsy may record grade 1 as 2, 2 as 1
or 3, and 3 as 2. msm gives the maximum-likelihood estimates with Wald intervals; the
posterior (NUTS, misclassification probabilities on the logit scale with a normal(-2, 1.5)
prior, log-rates normal(-2, 2)) is what msm cannot give. The script prints both side by
side, the most likely true path of one patient (Viterbi) with the posterior probability of
each grade at each visit, and writes ``cav-misc-intervals.png`` (MLE and posterior
intervals per quantity).
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import arviz as az
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import linest
from linest.sampling import SamplingWarning
from linest.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=".", help="directory for the figure")
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--subject", default="100002", help="patient whose path is shown")
    args = parser.parse_args()

    spec = load_spec(ROOT / "models" / "cav_misc.toml")
    model, data = spec.model, spec.read_data()
    fit = linest.fit(model, data)
    print(fit.summary())

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamplingWarning)
        tree = linest.sample(
            model, data, spec.priors, num_chains=args.chains, num_warmup=args.warmup,
            num_samples=args.draws, rng_key=0,
        )  # fmt: skip
    post = tree["posterior"]
    stats = tree["sample_stats"]
    print(
        f"\nNUTS: {args.chains} chains x {args.draws} draws, divergences "
        f"{int(stats['diverging'].sum())}, max r_hat "
        f"{float(az.rhat(tree, var_names=['theta'])['theta'].max()):.3f}, min ESS_bulk "
        f"{float(az.ess(tree, var_names=['theta'], method='bulk')['theta'].min()):.0f}"
    )

    rows = []
    rates = fit.intensities()
    for name in rates.index:
        draws = post["rate"].sel(transition=name).values.ravel()
        rows.append(("q(" + name + ")", rates.loc[name], draws))
    misc = fit.misclassification()
    for (true, recorded), row in misc.iterrows():
        if true == recorded:
            continue
        name = f"{true}-{recorded}"  # the model names misclassifications true-recorded
        draws = post["misclassification_probability"].sel(misclassification=name).values.ravel()
        rows.append((f"P(recorded {recorded} | true {true})", row, draws))
    table = pd.DataFrame(
        [
            {
                "quantity": label,
                "MLE": mle.estimate,
                "MLE 95% CI": f"({mle.lower:.4f}, {mle.upper:.4f})",
                "posterior mean": draws.mean(),
                "posterior 95% interval": "({:.4f}, {:.4f})".format(
                    *np.quantile(draws, [0.025, 0.975])
                ),
            }
            for label, mle, draws in rows
        ]
    ).set_index("quantity")
    print("\nMaximum likelihood (Wald, delta method on the logit scale for probabilities) "
          "against the posterior (equal-tailed):")  # fmt: skip
    print(table.to_string(float_format=lambda x: f"{x:.4f}"))

    path = fit.viterbi()
    print(f"\nPatient {args.subject}: recorded grade, most likely true grade, P(true grade):")
    print(path[path.subject == args.subject].to_string(index=False, float_format="%.3f"))

    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1))
    for k, (_, mle, draws) in enumerate(rows):
        lo, hi = np.quantile(draws, [0.025, 0.975])
        ax.plot([mle.lower, mle.upper], [k + 0.12] * 2, color="C0", lw=2)
        ax.plot(mle.estimate, k + 0.12, "o", color="C0", label="MLE, 95% CI" if k == 0 else None)
        ax.plot([lo, hi], [k - 0.12] * 2, color="C1", lw=2)
        ax.plot(draws.mean(), k - 0.12, "s", color="C1",
                label="posterior mean, 95% interval" if k == 0 else None)  # fmt: skip
    ax.set_yticks(range(len(rows)), [label for label, _, _ in rows])
    ax.set_xscale("log")
    ax.set_xlabel("rate (per year) or probability")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title("cav with misclassification: msm-style MLE against the posterior")
    fig.tight_layout()
    out = Path(args.out) / "cav-misc-intervals.png"
    fig.savefig(out, dpi=120)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
