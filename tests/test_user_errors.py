"""Every mistake a user can make ends in one named message and a distinct exit code
(docs/reference/cli.md, "Exit codes and errors"), never a Python, numpy or JAX exception;
a defect of linest's own shows its traceback and asks to be reported. Each case here failed on the main of
2026-12-06 (issue 24's list): a raw traceback, a library message naming no file, or a
result for data that cannot give one."""

import re
from pathlib import Path

import pytest

import linest
from linest import cli
from linest.data import DataError, read_count_matrix
from linest.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]


def _copy(tmp_path, spec_name, data=None, edit=None) -> Path:
    """A shipped spec and its data file in ``tmp_path``; ``data(bytes) -> bytes`` changes
    the data file, ``edit(text) -> text`` the spec."""
    text = (ROOT / "models" / spec_name).read_text()
    match = re.search(r'file = "([^"]+)"', text)
    assert match
    source = (ROOT / "models" / match[1]).resolve()
    target = tmp_path / source.name
    raw = source.read_bytes()
    target.write_bytes(raw if data is None else data(raw))
    text = text.replace(match[0], f'file = "{target.name}"')
    spec = tmp_path / spec_name
    spec.write_text(text if edit is None else edit(text))
    return spec


def _cell(line: int, column: int, value: str):
    def change(raw: bytes) -> bytes:
        lines = raw.decode().splitlines()
        cells = lines[line].split(",")
        cells[column] = value
        lines[line] = ",".join(cells)
        return ("\n".join(lines) + "\n").encode()

    return change


def _run(argv, capsys, output=None) -> tuple[int, str]:
    """The exit code and stderr; stdout goes into ``output`` (a list) when given."""
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    if output is not None:
        output.append(captured.out)
    return code, captured.err


def _user_error(code, err, *patterns):
    assert code == cli.EXIT_INPUT, err
    assert err.startswith("linest: error: "), err
    assert "Traceback" not in err, err
    for pattern in patterns:
        assert re.search(pattern, err), (pattern, err)


UTF16 = lambda raw: raw.decode().encode("utf-16")  # noqa: E731
LATIN1 = lambda raw: raw.replace(b"e", b"\xe9")  # noqa: E731
BOM = lambda raw: b"\xef\xbb\xbf" + raw  # noqa: E731
READERS = ["quantum_ring.toml", "theophylline.toml", "ssm.toml", "cav.toml"]


@pytest.mark.parametrize("spec_name", READERS)
@pytest.mark.parametrize(
    "encoding, message",
    [(UTF16, r"is UTF-16 text; save it as UTF-8"), (LATIN1, r"line 1: not UTF-8 \(byte 0xe9")],
)
def test_every_reader_names_a_file_not_in_utf8(tmp_path, capsys, spec_name, encoding, message):
    spec = _copy(tmp_path, spec_name, data=encoding)
    before = spec.with_name(Path(spec.read_text().split('file = "')[1].split('"')[0]).name)
    content = before.read_bytes()
    code, err = _run(["fit", spec], capsys)
    _user_error(code, err, re.escape(str(before)), message)
    assert before.read_bytes() == content  # inputs never change


@pytest.mark.parametrize("spec_name", ["quantum_ring.toml", "theophylline.toml", "ssm.toml"])
def test_every_reader_takes_a_utf8_byte_order_mark(tmp_path, spec_name):
    import jax
    import numpy as np

    (tmp_path / "bom").mkdir()
    plain = load_spec(_copy(tmp_path, spec_name))
    marked = load_spec(_copy(tmp_path / "bom", spec_name, data=BOM))
    a, b = (spec.model.statistics(spec.read_data()) for spec in (plain, marked))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda tmp: ROOT / "models", r"models: is a directory; give a model specification"),
        (
            lambda tmp: _copy(tmp, "cav.toml", edit=lambda t: t.replace('"cav.csv"', '"."')),
            r"data.file = '.': .* is a directory, not a file",
        ),
        (
            lambda tmp: _copy(tmp, "cav.toml", edit=lambda t: t.replace('"cav.csv"', '""')),
            r"data.file is empty",
        ),
        (
            lambda tmp: (
                (tmp / "u16.toml").write_bytes(
                    (ROOT / "models" / "cav.toml").read_text().encode("utf-16")
                )
                and tmp / "u16.toml"
            ),
            r"u16.toml: not UTF-8 text",
        ),
    ],
    ids=["spec is a directory", "data.file a directory", "data.file empty", "spec in UTF-16"],
)
def test_spec_paths_and_encodings_are_named(tmp_path, capsys, make, message):
    code, err = _run(["fit", make(tmp_path)], capsys)
    _user_error(code, err, message)


@pytest.mark.parametrize(
    "spec_name, line, column, message",
    [
        ("quantum_ring.toml", 1, 2, r"quantum_ring.csv, line 2: count = '1e308' is too large"),
        ("theophylline.toml", 2, 4, r"theophylline.csv, line 3: conc = '1e308' is too large"),
        ("ssm.toml", 2, 2, r"ssm.csv, line 3: y1 = '1e308' is too large"),
        ("cav.toml", 3, 2, r"cav.csv line 4: column 'years' holds 1e\+308, too large"),
    ],
)
def test_finite_but_overflowing_values_are_refused_with_the_row(
    tmp_path, capsys, spec_name, line, column, message
):
    spec = _copy(tmp_path, spec_name, data=_cell(line, column, "1e308"))
    code, err = _run(["fit", spec], capsys)
    _user_error(code, err, message, "rescale")


def test_count_tables_and_lags_are_checked(tmp_path, capsys):
    def zeros(raw):
        lines = raw.decode().splitlines()
        rows = [lines[0]] + [",".join([r.split(",")[0]] + ["0"] * 8) for r in lines[1:]]
        return ("\n".join(rows) + "\n").encode()

    code, err = _run(["fit", _copy(tmp_path, "ratings.toml", data=zeros)], capsys)
    _user_error(code, err, r"ratings.csv: every count is 0")
    for lag, message in [
        ('"one"', r"data.lag must be a number, got 'one'"),
        ("1e308", r"the lag \(data.lag\) must be a positive number, at most"),
    ]:
        text = (ROOT / "models" / "ratings.toml").read_text().replace("lag = 1.0", f"lag = {lag}")
        spec = _copy(
            tmp_path,
            "ratings.toml",
            edit=lambda t, text=text: text.replace('"../data/ratings.csv"', '"ratings.csv"'),
        )
        code, err = _run(["fit", spec], capsys)
        _user_error(code, err, message)
    with pytest.raises(DataError, match="must be a positive number"):
        read_count_matrix(ROOT / "data" / "ratings.csv", lag="one")  # type: ignore[arg-type]


def test_model_fields_are_checked(tmp_path, capsys):
    ragged = _copy(
        tmp_path,
        "ssm.toml",
        edit=lambda t: t.replace("[[1.0, 0.0], [0.0, 1.0]]", "[[1.0, 0.0], [0.0]]"),
    )
    code, err = _run(["fit", ragged], capsys)
    _user_error(code, err, r"model.observe must be a matrix, every row of the same length")
    wrong = _copy(tmp_path, "cav.toml", edit=lambda t: t.replace("labels = [", "labels = -1 #["))
    code, err = _run(["fit", wrong], capsys)  # found by the fuzz test: a TypeError before
    _user_error(code, err, r"\[model\]: a field has the wrong type")
    with pytest.raises(ValueError, match=r"initial must hold 3 probabilities"):
        linest.HiddenCTMC(
            [1, 2, 3], ["1-2", "2-3"], misclassification={"1-2": 0.1}, initial=[float("nan"), 1, 0]
        )


def test_data_that_cannot_identify_the_model_is_not_called_converged(tmp_path, capsys):
    def first_subject(raw):
        return b"\n".join(raw.splitlines()[:6]) + b"\n"

    printed = []
    code, _ = _run(["fit", _copy(tmp_path, "cav.toml", data=first_subject)], capsys, printed)
    out = printed[0]
    assert code == cli.EXIT_NOT_CONVERGED
    assert "NOT CONVERGED" in out and "the data do not identify the model" in out

    def no_values(raw):
        lines = raw.decode().splitlines()
        rows = [lines[0]] + [",".join(r.split(",")[:4] + [""]) for r in lines[1:]]
        return ("\n".join(rows) + "\n").encode()

    code, err = _run(["fit", _copy(tmp_path, "theophylline.toml", data=no_values)], capsys)
    _user_error(code, err, r"every value of conc is missing: there is nothing to fit")


def test_command_line_values_are_named(tmp_path, capsys):
    spec = ROOT / "models" / "cav.toml"
    code, err = _run(["fit", spec, "--gradient", "nonsense"], capsys)
    _user_error(code, err, r"--gradient nonsense: unknown gradient method")
    code, err = _run(["compare", spec, "--methods", "exact,nonsense"], capsys)
    _user_error(code, err, r"--methods: nonsense: unknown gradient method")
    truth = tmp_path / "truth.json"
    truth.write_text("{not json")
    code, err = _run(["compare", spec, "--truth", truth], capsys)
    _user_error(code, err, r"--truth .*truth.json: Expecting property name")


def test_a_defect_shows_its_traceback_and_asks_to_be_reported(capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("a defect")

    monkeypatch.setattr(linest, "fit", broken)
    code, err = _run(["fit", ROOT / "models" / "cav.toml"], capsys)
    assert code == cli.EXIT_INTERNAL == 70
    assert "Traceback" in err and "RuntimeError: a defect" in err
    assert "linest: internal error" in err and "please report it" in err


def test_exit_codes_are_distinct_and_documented():
    codes = [cli.EXIT_OK, cli.EXIT_INPUT, cli.EXIT_NOT_CONVERGED, cli.EXIT_OUTPUT]
    codes += [cli.EXIT_INTERNAL, cli.EXIT_SIGINT, cli.EXIT_SIGTERM]
    assert len(set(codes)) == len(codes)
    page = (ROOT / "docs" / "reference" / "cli.md").read_text()
    table = page[page.index("## Exit codes") :]
    for code in codes:
        assert re.search(rf"^\| {code} \|", table, re.M), code


def test_a_subjects_rows_need_not_be_contiguous_in_any_reader(tmp_path):
    """One policy with the chain readers: rows regrouped by subject, not split (an SSM
    sequence split in two gave -2LL 578.31 instead of 572.66)."""
    import jax
    import numpy as np

    def moved(raw):  # the first sequence's last two rows moved to the end of the file
        lines = raw.decode().splitlines()
        first = [i for i, line in enumerate(lines[1:], 1) if line.split(",")[0] == "1"]
        tail = [lines[i] for i in first[-2:]]
        kept = [line for i, line in enumerate(lines) if i not in first[-2:]]
        return ("\n".join(kept + tail) + "\n").encode()

    (tmp_path / "moved").mkdir()
    a, b = (
        load_spec(_copy(folder, "ssm.toml", data=change))
        for folder, change in ((tmp_path, None), (tmp_path / "moved", moved))
    )
    sa, sb = (spec.model.statistics(spec.read_data()) for spec in (a, b))
    for x, y in zip(jax.tree.leaves(sa), jax.tree.leaves(sb), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
