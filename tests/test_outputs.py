"""Nothing the user has is lost: every output path is checked before work starts, an
existing file is replaced only with --overwrite, never an input of the run or anything
but a regular file, and a killed run leaves no temporary file behind."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from linest import cli
from linest._io import OutputError, atomic_write, check_output, remove_stale_temporaries

ROOT = Path(__file__).resolve().parents[1]
SPEC = "[model]\nstates=[1,2]\ntransitions=['1-2','2-1']\n[data]\nfile='chains.csv'\n"


@pytest.fixture
def project(tmp_path):
    """A spec and its data in a folder of their own (copies: the test may try to hurt them)."""
    # Half the subjects start in each state, a quarter of them move: both rates identified.
    rows = [(1 + i % 2, 2 - i % 2 if i % 8 < 2 else 1 + i % 2) for i in range(24)]
    (tmp_path / "chains.csv").write_text(
        "subject,time,state\n" + "".join(f"{i},0,{a}\n{i},1,{b}\n" for i, (a, b) in enumerate(rows))
    )
    (tmp_path / "spec.toml").write_text(SPEC)
    return tmp_path


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if the model is fitted or sampled: the output check comes first."""

    def refuse(*args, **kwargs):
        raise AssertionError("work started before the output paths were checked")

    monkeypatch.setattr("linest.fit", refuse)
    monkeypatch.setattr("linest.sampling.sample", refuse)
    monkeypatch.setattr("linest.compare.compare_model", refuse)


def _contents(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["fit", "{spec}", "--json", "{dir}/chains.csv"], r"is an input of this run"),
        (["fit", "{spec}", "--json", "{dir}/chains.csv", "--overwrite"], r"is an input"),
        (["fit", "{spec}", "--plot", "{spec}", "--overwrite"], r"--plot .*is an input"),
        (["fit", "{spec}", "--json", "{dir}/old.json"], r"old.json: exists; --overwrite"),
        (["fit", "{spec}", "--plot", "{dir}/old.json"], r"--plot .*exists; --overwrite"),
        (["fit", "{spec}", "--json", "{dir}/no/such/out.json"], r"folder .*no/such does not"),
        (["fit", "{spec}", "--json", "{dir}/old.json/out.json"], r"old.json/out.json: "),
        (["fit", "{spec}", "--json", "{dir}"], r"is a directory"),
        (["fit", "{spec}", "--json", "{dir}/a.json", "--plot", "{dir}/a.json"], r"also given"),
        (["sample", "{spec}", "--out", "{dir}/chains.csv", "--overwrite"], r"is an input"),
        (["sample", "{spec}", "--out", "{dir}/no/post.nc"], r"folder .*no does not exist"),
        (["sample", "{spec}", "--out", "{dir}/p.nc", "--plots", "{dir}/old"], r"old-trace.png"),
        (["sample", "{spec}", "--resume"], r"--resume needs --out"),
        (["compare", "{spec}", "--out", "{dir}/old.json"], r"is a file"),
        (["compare", "{spec}", "--out", "{dir}/reports"], r"report.md: exists; --overwrite"),
        (["join", "{dir}/old.json", "--out", "{dir}/old.json", "--overwrite"], r"is an input"),
    ],
)
def test_bad_outputs_are_refused_before_work_and_change_nothing(
    project, no_work, capsys, argv, message
):
    import re

    (project / "old.json").write_text("{}")
    (project / "old-trace.png").write_text("a plot")
    (project / "reports").mkdir()
    (project / "reports" / "report.md").write_text("an old report")
    spec = project / "spec.toml"
    spec.write_text(SPEC + "[priors]\nlog_rate = { normal = [0.0, 1.0] }\n")
    before = _contents(project)
    argv = [a.format(spec=spec, dir=project) for a in argv]
    assert cli.main(argv) == 3
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert err.startswith("linest: error: ")
    assert _contents(project) == before
    assert (project / "reports" / "report.md").read_text() == "an old report"


def test_fit_json_replaces_only_with_overwrite(project, capsys):
    out = project / "fit.json"
    out.write_text("precious")
    assert cli.main(["fit", str(project / "spec.toml"), "--json", str(out)]) == 3
    assert out.read_text() == "precious"
    assert "--overwrite" in capsys.readouterr().err
    assert cli.main(["fit", str(project / "spec.toml"), "--json", str(out), "--overwrite"]) == 0
    assert '"minus2loglik"' in out.read_text()


def test_only_regular_files_are_ever_replaced(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(OutputError, match="is a pipe; linest writes"):
        check_output(fifo, option="--out", overwrite=True)
    with pytest.raises(OutputError, match="is a pipe; linest replaces only regular files"):
        atomic_write(fifo, lambda tmp: tmp.write_text("x"))  # the check at the rename
    assert fifo.is_fifo()
    assert [p.name for p in tmp_path.iterdir()] == ["pipe"]  # no temporary left
    with pytest.raises(OutputError, match="is a device"):
        check_output("/dev/null", option="--out", overwrite=True)


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path):
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    dead = int(child.stdout)
    stale = tmp_path / f".post.tmp{dead}.nc"
    live = tmp_path / f".post.tmp{os.getpid()}.nc"  # a run in progress: kept
    other = tmp_path / f".other.tmp{dead}.nc"  # another output's: kept
    for path in (stale, live, other):
        path.write_text("half a file")
    assert remove_stale_temporaries(tmp_path / "post.nc") == [stale]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other.name])


@pytest.mark.slow  # 10 s; the default run must stay under 10 minutes on 2 cores
def test_sample_removes_a_killed_runs_temporary(tmp_path):
    import numpy as np

    import linest
    from linest.simulate import simulate_paths

    model = linest.CTMC(["a", "b"], ["a-b", "b-a"])
    frame = simulate_paths(model, np.log([0.5, 0.3]), 10, 3.0, np.random.default_rng(1))
    chains = linest.read_chains(frame, kind="paths")
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    stale = tmp_path / f".run.tmp{int(child.stdout)}.nc"
    stale.write_text("left by a SIGKILL during a write")
    linest.sample(
        model,
        chains,
        {"log_rate": {"normal": [-1.0, 1.0]}},
        num_chains=1,
        num_warmup=10,
        num_samples=5,
        progress=False,
        out=tmp_path / "run.nc",
    )
    assert not stale.exists()
    assert (tmp_path / "run.nc").exists()


@pytest.mark.parametrize(
    ("signum", "code", "name"), [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "SIGINT")]
)
def test_a_signal_during_a_write_leaves_no_temporary_and_says_so(tmp_path, signum, code, name):
    """The command line turns SIGTERM into an exception (as Ctrl-C is), so the half-written
    temporary file is removed; the user reads one line, not a traceback."""
    script = textwrap.dedent(
        f"""
        import sys, time
        from linest import cli
        from linest._io import atomic_write

        def slow_write(tmp):
            tmp.write_text("half")
            print("writing", flush=True)
            time.sleep(60)

        cli._fit = lambda args: atomic_write({str(tmp_path / "out.json")!r}, slow_write)
        sys.exit(cli.main(["fit", "unused.toml"]))
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ | {"LINEST_CACHE_DIR": "off"},
        # As from a terminal: a test runner started in the background (`make test &`)
        # passes SIGINT on ignored, and Python then keeps it ignored.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert process.stdout is not None
    assert process.stdout.readline() == "writing\n"
    time.sleep(0.2)
    process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    assert process.returncode == code, err
    assert f"linest: stopped by {name}" in err
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []
