"""What the progress display costs (issue 29): cav posterior sampling with progress off
against on, side by side in one process.

The cav posterior of ``models/cav.toml`` (R msm's cav data, 7 log-rates), NUTS with
``--chains`` chains x (``--warmup`` + ``--draws``), the same seed for every call, so every
call makes the same draws (checked). Candidates:

* off: ``progress=False``: the samplers compile without their host callbacks;
* callback: ``progress=<a function that does nothing>``: a ``jax.debug.callback`` per
  chain and 5 warm-up steps or ``block // 25`` draws, and the host side's counting;
* lines: ``progress="lines"`` (what a pipe or a log file gets: counting, and a line every
  30 s).

(A tqdm bar costs what "lines" costs plus a redraw at most every 0.5 s.) Each candidate
runs once untimed (compilation), then ``--rounds`` interleaved timed rounds; the table
gives the median warm-up and sampling seconds (the driver's own timers) and the median
(quartiles) over rounds of each round's ratio to off's (paired within a round, so less
sensitive to other work on the machine).

    python benchmarks/progress_overhead.py
    python benchmarks/progress_overhead.py --chains 4 --warmup 300 --draws 300 --rounds 5
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import warnings
from pathlib import Path

import jax
import numpy as np

import linest
from linest.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--draws", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", True)
    spec = load_spec(ROOT / "models" / "cav.toml")
    data = spec.read_data()
    candidates = {"off": False, "callback": lambda update: None, "lines": "lines"}
    times: dict[str, dict[str, list[float]]] = {k: {"warm-up": [], "draws": []} for k in candidates}
    reference = None

    def call(progress):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return linest.sample(
                spec.model,
                data,
                spec.priors,
                num_chains=args.chains,
                num_warmup=args.warmup,
                num_samples=args.draws,
                rng_key=1,
                progress=progress,
            )

    stderr = sys.stderr
    with open(os.devnull, "w") as null:
        sys.stderr = null  # the milestone lines; the table goes to stdout
        try:
            for progress in candidates.values():
                call(progress)  # compilation
            for _ in range(args.rounds):
                for name, progress in candidates.items():
                    tree = call(progress)
                    theta = np.asarray(tree["posterior"]["theta"].values)
                    if reference is None:
                        reference = theta
                    assert np.array_equal(theta, reference), f"{name}: other draws"
                    times[name]["warm-up"].append(float(tree.attrs["linest_warmup_seconds"]))
                    times[name]["draws"].append(float(tree.attrs["linest_sampling_seconds"]))
        finally:
            sys.stderr = stderr
    print(
        f"## progress_overhead.py: cav, NUTS, {args.chains} chains x ({args.warmup} warm-up + "
        f"{args.draws} draws), {args.rounds} interleaved rounds\n"
    )
    print(
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, jax {jax.__version__} ({jax.default_backend()})\n"
    )
    print(
        "| progress | warm-up s (median) | ratio to off (median of rounds) | draws s (median) "
        "| ratio to off (median of rounds) |"
    )
    print("|---|---|---|---|---|")
    for name, columns in times.items():
        cells = []
        for phase in ("warm-up", "draws"):
            ratios = [t / o for t, o in zip(columns[phase], times["off"][phase], strict=True)]
            low, high = np.quantile(ratios, [0.25, 0.75])
            cells += [
                f"{statistics.median(columns[phase]):.2f}",
                f"{statistics.median(ratios):.3f} ({low:.3f} to {high:.3f})",
            ]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("\nRatios: each round's time over the same round's off, median and quartiles.")
    print("\nEvery call made the same draws (checked).")


if __name__ == "__main__":
    main()
