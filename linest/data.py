"""Observed chains from a table: panel visits, fully observed paths, aggregated counts.

:func:`read_chains` reads a CSV file or a pandas DataFrame, checks it, and returns a
:class:`Chains` object. Checks that need a model (states it knows, transitions it allows)
run when a model turns the chains into sufficient statistics (``CTMC.statistics``).

Every mistake in the input raises :class:`DataError` naming the file, the line (the CSV
line number, header = line 1; for a DataFrame, its index label), the column and, where
there is one, the subject.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

__all__ = ["Chains", "DataError", "DataWarning", "read_chains", "read_count_matrix", "state_key"]

Kind = Literal["panel", "paths", "counts"]


class DataError(ValueError):
    """Bad input data; the message names the file, line and column."""


class DataWarning(UserWarning):
    """Data that is usable but partly ignored (e.g. a subject seen once)."""


#: The largest magnitude a data value may have. Beyond it squares and exponentials of the
#: values overflow float64: a count, concentration or observation of 1e308 gave an
#: OverflowError or a log-likelihood of inf with no row named. Rescale such a column.
LARGEST = 1e150

#: Integers above this (2^53) are not all representable in float64: counts must stay below.
LARGEST_COUNT = 2.0**53


def csv_number(
    where: str,
    column: str,
    text,
    *,
    nonnegative: bool = False,
    integer: bool = False,
    rule: str | None = None,
) -> float:
    """A numeric cell of a CSV row: finite, at most :data:`LARGEST` in magnitude, >= 0
    when ``nonnegative``, a whole number >= 0 below 2^53 when ``integer``; else a
    DataError naming the place and the rule. ``rule``, when given, is the one message for
    a value not finite or (``nonnegative``) negative, checked before the size."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise DataError(f"{where}: {column} = {text!r} is not a number") from None
    if rule is not None and (not math.isfinite(value) or (nonnegative and value < 0)):
        raise DataError(f"{where}: {column} = {text!r} {rule}")
    if not math.isfinite(value):
        raise DataError(f"{where}: {column} = {text!r} is not finite")
    if abs(value) > LARGEST:
        raise DataError(
            f"{where}: {column} = {text!r} is too large to compute with (|value| > {LARGEST:g});"
            " rescale the column"
        )
    if integer and (value < 0 or value != int(value) or value > LARGEST_COUNT):
        raise DataError(f"{where}: {column} = {text!r} must be a non-negative integer (below 2^53)")
    if nonnegative and value < 0:
        raise DataError(f"{where}: {column} = {text!r} must be a non-negative number")
    return value


def csv_time(where: str, column: str, text) -> float:
    """A time cell of a CSV row: a finite number >= 0 (at most :data:`LARGEST`), else a
    DataError naming the place."""
    return csv_number(where, column, text, nonnegative=True, rule="must be finite and >= 0")


def input_file(source, what: str = "") -> Path:
    """``source`` as a path to a readable regular file, else a :class:`DataError` naming it
    (missing, a directory, unreadable); ``what`` says which input it is."""
    path = Path(source)
    label = f" ({what})" if what else ""
    if not path.exists():
        raise DataError(f"{path}: no such file{label}")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, not a data file{label}")
    if not os.access(path, os.R_OK):
        raise DataError(f"{path}: cannot be read (permission denied){label}")
    return path


def read_text(path) -> str:
    """A text file's contents, UTF-8 with or without a byte-order mark (the one encoding
    every reader takes); anything else is a :class:`DataError` saying what it looks like."""
    raw = Path(path).read_bytes()
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DataError(f"{path}: is UTF-16 text; save it as UTF-8 (CSV UTF-8 in a spreadsheet)")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        kind = "binary data" if b"\x00" in raw[:4096] else "text in another encoding (Latin-1?)"
        raise DataError(
            f"{path}, line {line}: not UTF-8 (byte {raw[error.start]:#04x} at offset "
            f"{error.start}): it looks like {kind}; save it as UTF-8"
        ) from None


def csv_rows(source, required: Sequence[str], what: str = "", hint: str = ""):
    """The rows of a CSV file as ``(line, where, row)``: the line number (the header is
    line 1), ``where`` naming the file and line for error messages, the row as a dict.
    A missing file, a directory, a file not in UTF-8 or a missing required column is a
    :class:`DataError` (``what`` names the table, ``hint`` says how to fix it).
    """
    path = input_file(source, what)
    reader = csv.DictReader(io.StringIO(read_text(path), newline=""))
    header = reader.fieldnames or []
    missing = [c for c in required if c not in header]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {missing}; the header has {header}"
            + (f" ({hint})" if hint else "")
        )
    try:
        for number, row in enumerate(reader, start=2):
            yield number, f"{path}, line {number}", {k: v for k, v in row.items() if k is not None}
    except csv.Error as error:
        raise DataError(f"{path}, line {reader.line_num}: not valid CSV ({error})") from None


def state_key(value) -> str:
    """The canonical name of a state: ``1``, ``1.0`` and ``"1"`` are all ``"1"``."""
    if isinstance(value, (bool, np.bool_)):
        return str(value)
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value).strip()


@dataclasses.dataclass(frozen=True, eq=False)
class Chains:
    """Checked observations of Markov chains, one row per observation.

    For ``kind="panel"`` and ``"paths"`` the rows are grouped by subject and increasing
    in time within it; ``subject``, ``time``, ``state`` and ``covariates`` are row
    arrays and ``line`` the row's place in the source (for messages). For
    ``kind="counts"`` each row is a cell ``(state_from, state_to, lag, count)`` of an
    aggregated transition-count table.
    """

    kind: Kind
    source: str
    columns: dict  # role -> column name, for messages ("state" -> "state")
    covariate_names: tuple[str, ...]
    line: np.ndarray  # (rows,) labels of the rows in the source, for messages
    covariates: np.ndarray  # (rows, C) float
    # Panel and paths: (rows,) each; empty for counts.
    subject: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, object))
    time: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    state: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, object))
    # Counts: (rows,) each; empty for panel and paths.
    state_from: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, object))
    state_to: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, object))
    lag: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    count: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))

    @property
    def num_rows(self) -> int:
        return len(self.line)

    @property
    def num_subjects(self) -> int:
        return len(pd.unique(self.subject))

    def where(self, i) -> str:
        """'cav.csv line 17 (subject 100002)' for row ``i``."""
        who = f" (subject {self.subject[i]})" if len(self.subject) else ""
        return f"{self.source} {self.line[i]}{who}"

    def __repr__(self) -> str:
        extra = f", {self.num_subjects} subjects" if len(self.subject) else ""
        return f"Chains(kind={self.kind!r}, {self.num_rows} rows{extra}, source={self.source!r})"


def read_chains(
    source,
    subject: str = "subject",
    time: str = "time",
    state: str = "state",
    covariates: Sequence[str] = (),
    kind: Kind = "panel",
    *,
    state_from: str = "from",
    state_to: str = "to",
    count: str = "count",
    lag: str | float = "lag",
    missing: Literal["error", "drop"] = "error",
) -> Chains:
    """Read observed chains from a CSV path or a DataFrame, with the columns named.

    Parameters
    ----------
    source : path or pandas.DataFrame
    subject, time, state : str
        Column names (panel and paths data).
    covariates : sequence of str
        Numeric columns; for panel data the value at the start of an interval applies
        to it (as in msm).
    kind : "panel", "paths" or "counts"
        ``"panel"``: states seen at visit times (the msm case). ``"paths"``: every jump
        is a row (the chain sits in a row's state until the next row's time; the last
        row of a subject ends its follow-up). ``"counts"``: one row per cell of a count
        table, columns ``state_from``, ``state_to``, ``count`` and ``lag`` (a column
        name, or one number for every row).

    Raises
    ------
    missing : "error" or "drop"
        What to do with a row that has a missing value (NaN) in a used column: raise, or
        drop it with a warning (msm's default ``na.omit``).

    Raises
    ------
    DataError
        Missing file or column, an empty table, non-numeric or missing values, negative
        or non-increasing times within a subject, negative counts or lags.

    Warns
    -----
    DataWarning
        For a panel subject with a single observation (it carries no transition and is
        skipped).
    """
    if kind not in ("panel", "paths", "counts"):
        raise ValueError(f"read_chains: kind must be 'panel', 'paths' or 'counts', got {kind!r}")
    if missing not in ("error", "drop"):
        raise ValueError(f"read_chains: missing must be 'error' or 'drop', got {missing!r}")
    frame, name, offset = _load(source)
    covariates = (covariates,) if isinstance(covariates, str) else tuple(covariates)
    if kind == "counts":
        used = [state_from, state_to, count, *covariates] + ([lag] if isinstance(lag, str) else [])
    else:
        used = [subject, time, state, *covariates]
    _require_columns(frame, name, used)
    lines = _line_labels(frame, offset)
    if missing == "drop":
        bad = frame[used].isna().any(axis=1).to_numpy()
        if bad.any():
            warnings.warn(
                f"{name}: dropped {int(bad.sum())} row(s) with missing values "
                f"(first: {lines[np.flatnonzero(bad)[0]]})",
                DataWarning,
                stacklevel=2,
            )
            frame, lines = frame.loc[~bad], lines[~bad]
    _reject_missing(frame, name, lines, used)
    if kind == "counts":
        return _read_counts(frame, name, lines, state_from, state_to, count, lag, covariates)
    times = _numeric(frame, name, lines, time)
    covs = np.column_stack(
        [_numeric(frame, name, lines, c) for c in covariates] or [np.zeros((len(frame), 0))]
    )
    subjects = frame[subject].to_numpy()
    states = np.array([state_key(v) for v in frame[state].to_numpy()], dtype=object)

    bad = np.flatnonzero(times < 0)
    if bad.size:
        i = bad[0]
        raise DataError(
            f"{name} {lines[i]} (subject {subjects[i]}): column '{time}' is negative "
            f"({times[i]:g}); times must be >= 0 (time since a common origin)"
        )
    # Group rows by subject, keeping the file order within a subject.
    order = np.argsort(pd.factorize(subjects)[0], kind="stable")
    subjects, times, states, covs, lines = (
        x[order] for x in (subjects, times, states, covs, lines)
    )
    same = subjects[1:] == subjects[:-1]
    step = np.diff(times)
    for problem, mask in (
        ("repeats the time of the row before it", same & (step == 0)),
        ("is earlier than the row before it", same & (step < 0)),
    ):
        bad = np.flatnonzero(mask)
        if bad.size:
            i = bad[0] + 1
            raise DataError(
                f"{name} {lines[i]} (subject {subjects[i]}): time {times[i]:g} in column "
                f"'{time}' {problem} ({lines[i - 1]}, time {times[i - 1]:g}); each "
                "subject's observations must have strictly increasing times"
            )
    if kind == "panel":
        _, first, sizes = np.unique(
            pd.factorize(subjects)[0], return_index=True, return_counts=True
        )
        single = first[sizes == 1]
        if single.size:
            shown = ", ".join(f"{subjects[i]} ({lines[i]})" for i in single[:5])
            more = f" and {single.size - 5} more" if single.size > 5 else ""
            warnings.warn(
                f"{name}: {single.size} subject(s) with a single observation carry no "
                f"transition and are skipped: {shown}{more}",
                DataWarning,
                stacklevel=2,
            )
            keep = np.ones(len(subjects), bool)
            keep[single] = False
            rows = (subjects, times, states, covs, lines)
            subjects, times, states, covs, lines = (x[keep] for x in rows)
        if len(subjects) == 0:
            raise DataError(f"{name}: no subject has two observations; nothing to fit")
    return Chains(
        kind=kind,
        source=name,
        columns={"subject": subject, "time": time, "state": state},
        covariate_names=covariates,
        line=lines,
        covariates=covs,
        subject=subjects,
        time=times,
        state=states,
    )


def _read_counts(frame, name, lines, state_from, state_to, count, lag, covariates):
    lag_column = isinstance(lag, str)
    counts = _numeric(frame, name, lines, count)
    if lag_column:
        lags = _numeric(frame, name, lines, lag)
    else:
        lags = np.full(len(frame), float(lag))
    for values, what in ((counts, count), (lags, "lag" if not lag_column else lag)):
        bad = np.flatnonzero(values < 0)
        if bad.size:
            i = bad[0]
            raise DataError(f"{name} {lines[i]}: column '{what}' is negative ({values[i]:g})")
    # Whole numbers are not required here: expected counts (n_r P(tau)[r, s]) are weights
    # the likelihood takes as they are. A count matrix (read_count_matrix) requires them.
    bad = np.flatnonzero(lags == 0)
    if bad.size:
        raise DataError(f"{name} {lines[bad[0]]}: the lag is 0; counts need a positive lag")
    covs = np.column_stack(
        [_numeric(frame, name, lines, c) for c in covariates] or [np.zeros((len(frame), 0))]
    )
    key = np.vectorize(state_key, otypes=[object])
    return Chains(
        kind="counts",
        source=name,
        columns={"from": state_from, "to": state_to, "count": count, "lag": lag},
        covariate_names=tuple(covariates),
        line=lines,
        covariates=covs,
        state_from=key(frame[state_from].to_numpy()),
        state_to=key(frame[state_to].to_numpy()),
        lag=lags,
        count=counts,
    )


def read_count_matrix(source, lag: float = 1.0) -> Chains:
    """Read a square transition-count table (a rating-migration matrix): the first
    column names the state a transition starts in, the other columns the states it ends
    in (the same states, in any order), each cell the number of transitions over
    ``lag``. Returns counts :class:`Chains` (one row per cell); the model checks which
    transitions it allows (an absorbing state's row must have no counts out of it).

    Errors name the file, the line (row) and the column: a table that is not square,
    a row named twice, a count that is negative, not a whole number or not a number.
    """
    frame, name, offset = _load(source)
    lines = _line_labels(frame, offset)
    first = frame.columns[0]
    columns = [state_key(c) for c in frame.columns[1:]]
    rows = [state_key(v) for v in frame[first].to_numpy()]
    if len(set(columns)) != len(columns):
        raise DataError(f"{name}: the header names a state twice: {columns}")
    seen: dict[str, str] = {}
    for i, state in enumerate(rows):
        if state in seen:
            raise DataError(f"{name} {lines[i]}: state {state!r} already has a row ({seen[state]})")
        seen[state] = lines[i]
    if sorted(rows) != sorted(columns):
        extra_rows = [s for s in rows if s not in columns]
        extra_columns = [s for s in columns if s not in rows]
        raise DataError(
            f"{name}: the table is not square: {len(rows)} rows and {len(columns)} count "
            f"columns name different states (rows only: {extra_rows}; columns only: "
            f"{extra_columns}); the first column holds the 'from' states, the header the 'to' "
            "states"
        )
    if not (
        isinstance(lag, (int, float))
        and not isinstance(lag, bool)
        and 0 < lag <= LARGEST
        and np.isfinite(lag)
    ):
        raise DataError(
            f"{name}: the lag (data.lag) must be a positive number, at most {LARGEST:g}; "
            f"got {lag!r}"
        )
    counts = np.zeros((len(rows), len(columns)))
    for j, column in enumerate(frame.columns[1:]):
        values = np.asarray(pd.to_numeric(frame[column], errors="coerce"), dtype=float)
        for i, v in enumerate(values):
            where = f"{name} {lines[i]}, column {column!r} (from {rows[i]} to {columns[j]})"
            if not np.isfinite(v):
                raise DataError(f"{where}: {frame[column].iloc[i]!r} is not a count")
            if v < 0 or v != round(v):
                raise DataError(f"{where}: {v:g} is not a non-negative whole number")
        counts[:, j] = values
    keep = [(i, j) for i in range(len(rows)) for j in range(len(columns)) if counts[i, j] > 0]
    if not keep:
        raise DataError(f"{name}: every count is 0: the table observes no transitions")
    return Chains(
        kind="counts",
        source=name,
        columns={"from": str(first), "to": "(header)", "count": "(cells)", "lag": str(lag)},
        covariate_names=(),
        line=np.array([f"{lines[i]}, column {columns[j]!r}" for i, j in keep], dtype=object),
        covariates=np.zeros((len(keep), 0)),
        state_from=np.array([rows[i] for i, _ in keep], dtype=object),
        state_to=np.array([columns[j] for _, j in keep], dtype=object),
        lag=np.full(len(keep), float(lag)),
        count=np.array([counts[i, j] for i, j in keep]),
    )


def _load(source) -> tuple[pd.DataFrame, str, int | None]:
    if isinstance(source, pd.DataFrame):
        if len(source) == 0:
            raise DataError("the DataFrame has no rows")
        return source, "DataFrame", None
    path = os.fspath(input_file(source))
    name = os.path.basename(path)
    try:
        frame = pd.read_csv(io.StringIO(read_text(path)), skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: not a readable CSV file ({error})") from None
    if len(frame) == 0:
        raise DataError(f"{path}: the file has a header but no data rows")
    return frame, name, 2  # line 1 is the header


def _line_labels(frame, offset) -> np.ndarray:
    if offset is None:
        return np.array([f"row {label}" for label in frame.index], dtype=object)
    return np.array([f"line {i + offset}" for i in range(len(frame))], dtype=object)


def _require_columns(frame, name, columns):
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        have = ", ".join(map(str, frame.columns))
        raise DataError(
            f"{name}: no column {', '.join(repr(c) for c in missing)}; the columns are: {have}"
        )


def _reject_missing(frame, name, lines, columns):
    for column in columns:
        bad = np.flatnonzero(frame[column].isna().to_numpy())
        if bad.size:
            i = bad[0]
            more = f" (and {bad.size - 1} more rows)" if bad.size > 1 else ""
            raise DataError(
                f"{name} {lines[i]}: column '{column}' is missing (NaN){more}; fix the data or "
                "pass missing='drop' (spec file: data.missing = \"drop\") to drop such rows"
            )


def _numeric(frame, name, lines, column) -> np.ndarray:
    values = np.asarray(pd.to_numeric(frame[column], errors="coerce"), dtype=float)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        i = bad[0]
        raise DataError(
            f"{name} {lines[i]}: column '{column}' holds {frame[column].iloc[i]!r}, "
            "not a finite number"
        )
    huge = np.flatnonzero(np.abs(values) > LARGEST)
    if huge.size:
        i = huge[0]
        raise DataError(
            f"{name} {lines[i]}: column '{column}' holds {values[i]:g}, too large "
            f"to compute with (|value| > {LARGEST:g}); rescale the column"
        )
    return values
