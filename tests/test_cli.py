"""The command line: `linest fit SPEC` on the shipped cav data, JSON output, clear errors."""

import json
from pathlib import Path

import pytest

from linest.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_fit_cav_prints_msm_table_and_writes_json(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LINEST_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "cav.json"
    assert main(["fit", str(ROOT / "models" / "cav.toml"), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "q(    1-2)     0.12787  (0.11136, 0.14684)" in text
    assert "-2 log-likelihood: 3968.79" in text
    result = json.loads(out.read_text())
    assert abs(result["minus2loglik"] - 3968.798) < 0.01
    assert result["converged"] is True
    assert [row["transition"] for row in result["intensities"]][:2] == ["1-2", "1-4"]


def test_bad_gradient_name_is_a_clear_error(capsys):
    code = main(["fit", str(ROOT / "models" / "cav.toml"), "--gradient", "nonsense"])
    assert code == 1
    assert "nonsense" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[model]\nstates=[1,2]\n[data]\nfile='x.csv'\n", r"model.transitions is required"),
        (
            "[model]\nstates=[1,2]\ntransitions=['1-2']\ncolour='red'\n[data]\nfile='x.csv'\n",
            r"unknown field\(s\) model.colour",
        ),
        (
            "[model]\nstates=[1,2]\ntransitions=['1-3']\n[data]\nfile='x.csv'\n",
            r"\[model\]: CTMC: transition '1-3'",
        ),
        (
            "[model]\nstates=[1,2]\ntransitions=['1-2']\n[data]\nfile='missing.csv'\n",
            r"missing.csv: no such file",
        ),
        ("[model\n", r"not valid TOML"),
    ],
)
def test_bad_spec_files(tmp_path, capsys, text, message):
    import re

    spec = tmp_path / "bad.toml"
    spec.write_text(text)
    assert main(["fit", str(spec)]) == 1
    err = capsys.readouterr().err
    assert re.search(message, err), err
