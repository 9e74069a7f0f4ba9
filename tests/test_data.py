"""Bad input gets a clear error naming the file, line, column or subject: one test per case."""

import textwrap

import numpy as np
import pandas as pd
import pytest

import linest
from linest.data import DataError, DataWarning

CAV = linest.CTMC(
    states=[1, 2, 3, 4], transitions=["1-2", "1-4", "2-1", "2-3", "2-4", "3-2", "3-4"], exact=[4]
)


def write(tmp_path, text, name="visits.csv"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def statistics(path, **kwargs):
    return CAV.statistics(linest.read_chains(path, **kwargs))


def test_good_file_reads(tmp_path):
    path = write(
        tmp_path,
        """
        subject,time,state
        a,0,1
        a,1.5,2
        a,2.0,4
        b,0,1
        b,3,1
    """,
    )
    stats = statistics(path)
    assert stats.num_intervals == 3 and stats.num_subjects == 2


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        linest.read_chains(tmp_path / "nope.csv")


def test_empty_file(tmp_path):
    with pytest.raises(DataError, match="the file is empty"):
        linest.read_chains(write(tmp_path, ""))
    with pytest.raises(DataError, match="header but no data rows"):
        linest.read_chains(write(tmp_path, "subject,time,state\n", "header.csv"))


def test_missing_column(tmp_path):
    path = write(tmp_path, "id,time,state\na,0,1\na,1,2\n")
    with pytest.raises(
        DataError, match=r"visits.csv: no column 'subject'; the columns are: id, time, state"
    ):
        linest.read_chains(path)


def test_non_numeric_time(tmp_path):
    path = write(tmp_path, "subject,time,state\na,0,1\na,one,2\n")
    with pytest.raises(
        DataError, match=r"visits.csv line 3: column 'time' holds 'one', not a finite number"
    ):
        linest.read_chains(path)


def test_nan_value(tmp_path):
    path = write(tmp_path, "subject,time,state,sex\na,0,1,0\na,1,2,\na,2,2,0\n")
    with pytest.raises(DataError, match=r"visits.csv line 3: column 'sex' is missing \(NaN\)"):
        linest.read_chains(path, covariates=["sex"])
    with pytest.warns(DataWarning, match="dropped 1 row"):
        chains = linest.read_chains(path, covariates=["sex"], missing="drop")
    assert chains.num_rows == 2
    assert list(chains.line) == ["line 2", "line 4"]  # messages keep the file's lines


def test_negative_time(tmp_path):
    path = write(tmp_path, "subject,time,state\na,-1,1\na,1,2\n")
    with pytest.raises(DataError, match=r"line 2 \(subject a\): column 'time' is negative"):
        linest.read_chains(path)


def test_decreasing_times_within_subject(tmp_path):
    path = write(tmp_path, "subject,time,state\na,0,1\na,2,1\nb,0,1\na,1,2\n")
    with pytest.raises(
        DataError,
        match=r"line 5 \(subject a\): time 1 in column 'time' is earlier than the row before it \(line 3",
    ):
        linest.read_chains(path)


def test_duplicate_times(tmp_path):
    path = write(tmp_path, "subject,time,state\na,0,1\na,1,1\na,1,2\n")
    with pytest.raises(DataError, match=r"line 4 \(subject a\): time 1 .* repeats the time"):
        linest.read_chains(path)


def test_state_outside_model(tmp_path):
    path = write(tmp_path, "subject,time,state\na,0,1\na,1,5\n")
    with pytest.raises(
        DataError,
        match=r"line 3 \(subject a\): column 'state' holds state '5', which is not a state of the model \(1, 2, 3, 4\)",
    ):
        statistics(path)


def test_forbidden_transition_names_subject_and_row(tmp_path):
    # 4 (death) is absorbing: nothing leads back to 1.
    path = write(tmp_path, "subject,time,state\na,0,1\na,1,2\nb,0,1\nb,1,4\nb,2,1\n")
    with pytest.raises(
        DataError,
        match=r"line 6 \(subject b\): subject b is in state 4 at time 1 \(line 5\) and in state 1 at time 2, which no path",
    ):
        statistics(path)


def test_transition_reachable_through_allowed_ones_is_accepted(tmp_path):
    path = write(tmp_path, "subject,time,state\na,0,1\na,1,3\n")  # 1 -> 2 -> 3
    assert statistics(path).num_intervals == 1


def test_single_observation_subject_warns_and_is_skipped(tmp_path):
    path = write(tmp_path, "subject,time,state\na,0,1\na,1,2\nlonely,0,1\n")
    with pytest.warns(DataWarning, match=r"lonely \(line 4\)"):
        chains = linest.read_chains(path)
    assert chains.num_subjects == 1


def test_dataframe_rows_are_named_by_index():
    frame = pd.DataFrame(
        {"subject": [1, 1], "time": [0.0, np.nan], "state": [1, 2]}, index=[10, 11]
    )
    with pytest.raises(DataError, match=r"DataFrame row 11: column 'time' is missing"):
        linest.read_chains(frame)


def test_missing_covariate_for_model(tmp_path):
    path = write(tmp_path, "subject,time,state\na,0,1\na,1,2\n")
    with pytest.raises(DataError, match=r"uses covariate\(s\) \['sex'\]"):
        CAV.with_covariates(["sex"]).statistics(linest.read_chains(path))


def test_counts_errors(tmp_path):
    path = write(tmp_path, "from,to,count\n1,2,5\n2,1,-1\n")
    with pytest.raises(DataError, match=r"line 3: column 'count' is negative"):
        linest.read_chains(path, kind="counts", lag=1.0)
    path = write(tmp_path, "from,to,count\n4,1,3\n", "c2.csv")
    with pytest.raises(DataError, match=r"line 2: 3 transitions 4 -> 1, which no path"):
        CAV.statistics(linest.read_chains(path, kind="counts", lag=1.0))


def test_model_spec_errors():
    with pytest.raises(ValueError, match=r"transition '1-7'.*not one of the states"):
        linest.CTMC(states=[1, 2], transitions=["1-7"])
    with pytest.raises(ValueError, match=r"exact .* has outgoing transitions"):
        linest.CTMC(states=[1, 2], transitions=["1-2", "2-1"], exact=[2])
