"""Assemble docs/study/study.md from the numbers the question scripts wrote.

    python examples/study/report.py [--out docs/study]

Each ``qN_*.py`` script writes ``qN.json``; this imports each script's ``section`` and
renders it from those numbers (no recomputation), in question order, after a header that
names the machine and the run times. A question whose numbers are missing is listed as
not run, never silently dropped. ``make study`` runs every script, then this.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DEFAULT_OUT

QUESTIONS = (
    ("q1", "q1_theorem", "Theorem 2.1, corrected"),
    ("q2", "q2_dimension", "high-dimensional asymptotics"),
    ("q3", "q3_surrogate_adjoint", "surrogate against adjoint"),
    ("q4", "q4_orders", "higher-order surrogates"),
    ("q5", "q5_hmc_on_D", "HMC on D"),
    ("q6", "q6_pictures", "trajectories and spectra of the fitted models"),
)

HEADER = """# What the gradient notes asked, measured

The research notes "Some Remarks on Computing Gradients of a Matrix Exponential" leave
questions open. Each section below takes one: the claim, the figure, the numbers behind it,
the caveat, and the command that remakes it. Every number is computed by the scripts in
`examples/study/` with linest's own engine; every claim is also asserted by a test in
`tests/study/` (at smaller sizes), so this page cannot drift from the code.

Remake everything (from a fresh clone): `make study` (writes this folder).

{machine}

| question | script | run time (s) |
|---|---|---|
{times}

"""


def machine() -> str:
    import jax

    cpu = platform.processor() or platform.machine()
    return (
        f"Numbers from {platform.system()} {platform.machine()} ({os.cpu_count()} CPU cores, "
        f"{cpu}), Python {platform.python_version()}, JAX {jax.__version__} on "
        f"{jax.default_backend()}, {date.today().isoformat()}."
    )


def build(out: Path) -> str:
    sections, times = [], []
    for key, module, title in QUESTIONS:
        path = out / f"{key}.json"
        if not path.exists():
            sections.append(
                f"## {key[1:]}. {title}\n\nNot run: `{path}` is missing; run `make study`.\n"
            )
            times.append(f"| {key[1:]}. {title} | `{module}.py` | not run |")
            continue
        numbers = json.loads(path.read_text())
        section = importlib.import_module(module).section(numbers)
        if numbers.get("quick"):
            section += "\n*(quick run: reduced sizes; `make study` runs the full ones.)*\n"
        sections.append(section)
        seconds = numbers.get("seconds")
        times.append(
            f"| {key[1:]}. {title} | `{module}.py` | {seconds:.0f} |"
            if seconds
            else f"| {key[1:]}. {title} | `{module}.py` | ? |"
        )
    return HEADER.format(machine=machine(), times="\n".join(times)) + "\n".join(sections)


def main() -> None:
    parser = argparse.ArgumentParser(description="Assemble study.md from the questions' numbers.")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    text = build(args.out)
    tmp = args.out / ".study.md.tmp"
    tmp.write_text(text)
    os.replace(tmp, args.out / "study.md")
    missing = [k for k, _, _ in QUESTIONS if not (args.out / f"{k}.json").exists()]
    print(
        f"wrote {args.out / 'study.md'}" + (f" (not run: {', '.join(missing)})" if missing else "")
    )


if __name__ == "__main__":
    main()
