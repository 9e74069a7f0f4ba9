"""Make the documentation's figures, into docs/figures/ (not committed: `make docs` runs this).

Each figure comes from the command a reader would type (`linest fit ... --plot`, an example
script), run on the shipped data, so a page never shows a figure the code no longer draws.
The quick ones (a few seconds to a minute on 2 cores) are remade on every build. The slow
ones (examples that compare every gradient method, or sample) are taken from `make demo`'s
outputs in the project root when present and newer than linest's source; otherwise the page
shows a placeholder that says which command makes the figure (`--slow` runs them here).

    python docs/figures.py            # quick figures; slow ones from make demo, or placeholders
    python docs/figures.py --slow     # every figure, here
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "figures"
LINEST = [sys.executable, "-m", "linest.cli"]


@dataclass(frozen=True)
class Job:
    """One command and the figures it writes (names under ``OUT``)."""

    name: str
    command: tuple[str, ...]  # "{out}" is replaced by the output folder
    figures: tuple[str, ...]
    slow: bool = False  # taken from make demo's outputs (the project root) when present


def _fit(spec: str, figure: str, *extra: str) -> tuple[str, ...]:
    return (
        *LINEST,
        "fit",
        f"models/{spec}",
        "--plot",
        f"{{out}}/{figure}",
        "--overwrite",
        "--quiet",
        *extra,
    )


JOBS = (
    Job("cav prevalence", _fit("cav.toml", "cav-prevalence.png"), ("cav-prevalence.png",)),
    Job(
        "cav misclassification",
        _fit("cav_misc.toml", "cav-misc-prevalence.png"),
        ("cav-misc-prevalence.png",),
    ),
    Job("quantum fit", _fit("quantum_ring.toml", "quantum-fit.png"), ("quantum-fit.png",)),
    Job("theophylline", _fit("theophylline.toml", "theophylline.png"), ("theophylline.png",)),
    Job("ssm", _fit("ssm.toml", "ssm.png"), ("ssm.png",)),
    Job(
        "compare on theophylline",
        (
            *LINEST,
            "compare",
            "models/theophylline.toml",
            "--out",
            "{out}/compare-theophylline",
            "--overwrite",
            "--quiet",
            "--no-fits",
        ),  # --no-fits: the fits of every method take 2 minutes more
        ("compare-theophylline/report.png",),
    ),
    Job(
        "cav posterior",
        (
            *LINEST,
            "sample",
            "models/cav.toml",
            "--chains",
            "4",
            "--warmup",
            "300",
            "--draws",
            "300",
            "--plots",
            "{out}/cav",
            "--overwrite",
            "--quiet",
        ),
        ("cav-trace.png", "cav-pair.png"),
        slow=True,
    ),
    Job(
        "advection-diffusion (spectral)",
        _fit("advection_diffusion_spectral.toml", "ad-spectral.png"),
        ("ad-spectral.png",),
        slow=True,
    ),
    Job(
        "advection-diffusion (finite volumes)",
        _fit("advection_diffusion_2d.toml", "ad-fit.png"),
        ("ad-fit.png",),
        slow=True,
    ),
    Job(
        "advection-diffusion example",
        (sys.executable, "examples/advection_diffusion.py", "--out", "{out}"),
        ("ad-snapshots.png", "ad-velocity.png", "ad-gradients.png"),
        slow=True,
    ),
    Job(
        "quantum example",
        (sys.executable, "examples/quantum_potential.py", "--out", "{out}"),
        ("quantum-potential.png", "quantum-evolution.png", "quantum-gradients.png"),
        slow=True,
    ),
    Job(
        "ssm example",
        (sys.executable, "examples/ssm.py", "--out", "{out}"),
        ("ssm-loss.png", "ssm-eigenvalues.png"),
        slow=True,
    ),
)


def _newest_source() -> float:
    """The time of the newest file of linest's source: a demo output older is stale."""
    return max(p.stat().st_mtime for p in (ROOT / "linest").rglob("*.py"))


def _placeholder(path: Path, job: Job) -> None:
    """A figure-sized card naming the command that makes the figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    words = list(job.command)
    words = ["linest", *words[3:]] if words[:3] == LINEST else ["python", *words[1:]]
    command = " ".join(words).replace("{out}/", "").replace("{out}", ".")
    figure, axis = plt.subplots(figsize=(7, 1.6))
    axis.axis("off")
    axis.text(
        0.5,
        0.62,
        f"{job.name}: made by `make demo` (slow on 2 CPU cores)",
        ha="center",
        va="center",
        fontsize=11,
    )
    axis.text(0.5, 0.25, command, ha="center", va="center", fontsize=8, family="monospace")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)


def run(job: Job, log) -> float:
    """Run ``job`` into a scratch folder, then move its figures into place (atomically)."""
    with tempfile.TemporaryDirectory(dir=OUT) as scratch:
        command = [c.replace("{out}", scratch) for c in job.command]
        env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONWARNINGS": "ignore"}
        start = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        missing = [f for f in job.figures if not (Path(scratch) / f).exists()]
        if done.returncode not in (0, 2) or missing:  # 2: ran, but a fit did not converge
            sys.stderr.write(done.stdout[-3000:] + done.stderr[-3000:])
            raise SystemExit(f"docs/figures.py: {job.name} failed ({' '.join(command)})")
        for name in job.figures:
            target = OUT / name
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(Path(scratch) / name, target)
    log(f"{job.name}: {seconds:.1f} s")
    return seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slow", action="store_true", help="also run the slow figures here")
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)

    def log(message):
        print(f"docs/figures.py: {message}", flush=True)

    newest = _newest_source()
    total = 0.0
    for job in JOBS:
        if not job.slow or args.slow:
            total += run(job, log)
            continue
        demo = [ROOT / f for f in job.figures]  # make demo writes into the root
        if all(p.exists() and p.stat().st_mtime >= newest for p in demo):
            for source, name in zip(demo, job.figures):
                shutil.copyfile(source, OUT / name)
            log(f"{job.name}: from make demo's outputs")
        else:
            for name in job.figures:
                _placeholder(OUT / name, job)
            log(f"{job.name}: placeholder (run make demo, or docs/figures.py --slow)")
    log(f"quick figures took {total:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
