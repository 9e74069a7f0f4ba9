"""What every study script shares: where figures and numbers go, and how they are written.

Each question is one script ``examples/study/qN_<topic>.py`` with

* ``main(out: Path, quick: bool = False) -> dict``: computes, writes ``out/qN_*.png`` and
  ``out/qN.json`` (the numbers, via :func:`write_numbers`), returns the numbers;
* ``section(numbers: dict) -> str``: the markdown section of ``study.md`` for that question
  (claim, figure, number, caveat, and the command that remakes it), built from the numbers
  alone so that ``report.py`` can rebuild ``study.md`` without recomputing;
* pure compute functions, sized by their arguments, that ``tests/study`` imports to assert
  each claim at a smaller size.

``quick`` shrinks the sizes for a smoke run; ``make study`` runs the full sizes.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "docs" / "study"


def command(script: str) -> str:
    """The command that remakes one question's figures and numbers (from the project root)."""
    return f"python examples/study/{script} --out docs/study"


def save_figure(fig, out: Path, name: str) -> str:
    """Write ``fig`` as ``out/name`` (PNG, atomically) and close it; returns ``name``."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{name}.tmp"
    fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)
    os.replace(tmp, out / name)
    return name


def _plain(value):
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return v if np.isfinite(v) else str(v)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.bool_,)):
        return bool(value)
    return value


def write_numbers(out: Path, question: str, numbers: dict) -> Path:
    """Write ``out/<question>.json`` atomically (non-finite floats as strings)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{question}.json"
    tmp = out / f".{question}.json.tmp"
    tmp.write_text(json.dumps(_plain(numbers), indent=1) + "\n")
    os.replace(tmp, path)
    return path


def read_numbers(out: Path, question: str) -> dict:
    return json.loads((out / f"{question}.json").read_text())


def run(main, doc: str | None = None) -> None:
    """Command line of one study script: ``--out DIR`` (default docs/study), ``--quick``."""
    import argparse

    parser = argparse.ArgumentParser(
        description=(doc or "").strip().splitlines()[0] if doc else None
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="output folder (default docs/study)"
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    args = parser.parse_args()
    start = time.perf_counter()
    numbers = main(args.out, quick=args.quick)
    seconds = time.perf_counter() - start
    question = Path(sys.argv[0]).name.split("_")[0]
    write_numbers(args.out, question, {**numbers, "seconds": seconds, "quick": args.quick})
    print(f"{Path(sys.argv[0]).name}: done in {seconds:.0f} s -> {args.out}")


def loglog_slope(x, y) -> float:
    """Least-squares slope of log y against log x (finite, positive points only)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    return float(np.polyfit(np.log(x[keep]), np.log(y[keep]), 1)[0])
