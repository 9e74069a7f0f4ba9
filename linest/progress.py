"""Where long work is and how long is left: fits, warm-ups, draws, profiles, comparisons.

Every long operation takes ``progress=`` the same way:

* ``True`` (the default): a tqdm bar when the display is a terminal or a notebook
  (``tqdm.auto``: a widget in Jupyter), occasional plain lines otherwise (a pipe, CI, a
  log file): one every ``LINE_INTERVAL`` seconds, and a last one when the work ends if any
  was printed. A bar appears only for work that lasts over ``BAR_DELAY`` seconds, so
  quick work prints nothing.
* ``"bar"`` or ``"lines"``: that display whatever the stream.
* ``False`` or ``None``: nothing at all (nothing is computed for the display either:
  the samplers compile without their host callbacks).
* a callable: it gets every :class:`Update` (for a GUI, a log, a test); nothing is
  printed.

The display goes to standard error (the results go to standard output). tqdm rather than
rich: tqdm's ``auto`` front end covers the terminal and the notebook with one small pure
Python dependency, and it is what blackjax and numpyro use, so a user of this ecosystem
already has it.

Samplers report from inside their jitted loops by ``jax.debug.callback``, as blackjax's
own progress utility does: one call per chain and 5 warm-up steps, one per chain and
``block // 25`` draws (a call costs about 0.2 ms on the CPU); :func:`chain_steps` is the
callback. The host side only counts, and a bar redraws at most every ``BAR_INTERVAL``
seconds; what it costs is measured in ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

#: Seconds between plain progress lines (streams that are not a terminal).
LINE_INTERVAL = 30.0
#: A bar appears only once the work has lasted this long (seconds).
BAR_DELAY = 1.0
#: Seconds between redraws of a bar.
BAR_INTERVAL = 0.5

__all__ = ["Progress", "Update", "chain_steps", "enabled", "prints"]


@dataclasses.dataclass(frozen=True)
class Update:
    """One progress report: ``task`` ("fit", "warm-up", "draws", "profile", "compare"),
    ``done`` of ``total`` units (``None`` when open-ended), the task's own ``fields``
    (the current -2 log-likelihood, step size, divergences...), seconds since the start,
    units per second since the first unit (compilation excluded) and ``final`` on the
    last one."""

    task: str
    done: int
    total: int | None
    unit: str
    fields: dict[str, Any]
    elapsed: float
    rate: float = math.nan
    final: bool = False

    def line(self) -> str:
        """The plain-line form: ``linest draws: 1200/4000 chain steps (30%, 41.2/s,
        1m08s left), step size 0.31, divergences 0``."""
        head = f"{self.done}/{self.total}" if self.total else f"{self.done}"
        rate = self.rate
        parts = []
        if self.total:
            parts.append(f"{100 * self.done / self.total:.0f}%")
        if math.isfinite(rate) and rate > 0:
            parts.append(f"{rate:.3g}/s")
            if self.total and not self.final:
                parts.append(f"{_duration((self.total - self.done) / rate)} left")
        parts.append(f"{_duration(self.elapsed)} so far" if not self.final else "done in "
                     + _duration(self.elapsed))  # fmt: skip
        fields = "".join(f", {k} {_format(v)}" for k, v in self.fields.items())
        return f"linest {self.task}: {head} {self.unit} ({', '.join(parts)}){fields}"


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _format(value) -> str:
    if isinstance(value, float):
        return f"{value:.8g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.3g}"
    return str(value)


def enabled(progress) -> bool:
    """Whether ``progress`` asks for any display or callback."""
    return progress is not None and progress is not False


def prints(progress) -> bool:
    """Whether ``progress`` asks for printed output (a bar or lines; not a callback)."""
    return progress is True or progress in ("bar", "lines")


def _width(stream) -> dict:
    """tqdm's size options: follow the terminal's, or 100 x 24 where it reports 0 x 0 (a
    pseudo-terminal without a size: tqdm would hide the bar)."""
    try:
        size = os.get_terminal_size(stream.fileno())
    except (AttributeError, OSError, ValueError):
        size = os.terminal_size((0, 0))
    if size.columns > 0 and size.lines > 0:
        return {"dynamic_ncols": True}
    return {"ncols": 100, "nrows": 24}


def _in_notebook() -> bool:
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    try:
        ip = shell.get_ipython()  # type: ignore[attr-defined]
    except Exception:  # any failure: not a notebook
        return False
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


class Progress:
    """The progress of one task; a context manager. ``update(n, **fields)`` adds ``n``
    units and replaces the fields shown; ``close()`` (on leaving the ``with``) ends it.
    Thread-safe: the samplers' callbacks arrive on XLA's threads."""

    def __init__(
        self,
        task: str,
        total: int | None = None,
        unit: str = "",
        progress=True,
        stream=None,
    ):
        self.task, self.total, self.unit = task, total, unit
        self.setting = progress  # what was asked for: a task's sub-tasks show the same way
        self.done = 0
        self.fields: dict[str, Any] = {}
        self.start = time.perf_counter()
        self._first: float | None = None  # when the first unit arrived
        self._lock = threading.Lock()
        self._closed = False
        self._bar = None
        self._callback: Callable[[Update], Any] | None = None
        self._lines = False
        self._last_line = self.start
        self._printed = False
        self.stream = sys.stderr if stream is None else stream
        if callable(progress) and not isinstance(progress, bool):
            self._callback = progress
        elif prints(progress):
            terminal = bool(getattr(self.stream, "isatty", lambda: False)())
            if progress == "lines" or (progress is True and not (terminal or _in_notebook())):
                self._lines = True
            else:
                from tqdm.auto import tqdm

                self._bar = tqdm(
                    total=total,
                    desc=f"linest {task}",
                    unit=f" {unit}" if unit else "it",
                    file=self.stream,
                    delay=BAR_DELAY,
                    mininterval=BAR_INTERVAL,
                    leave=True,
                    **_width(self.stream),
                )
        elif enabled(progress):
            raise ValueError(
                f"progress={progress!r}: expected True, False, 'bar', 'lines' or a callable"
            )

    @property
    def active(self) -> bool:
        return self._bar is not None or self._callback is not None or self._lines

    def update(self, n: int = 1, **fields) -> None:
        if not self.active or self._closed:
            return
        with self._lock:
            now = time.perf_counter()
            if n and self._first is None:
                self._first, self._first_done = now, self.done + n
            self.done += n
            self.fields |= fields
            if self._bar is not None:
                if fields:
                    self._bar.set_postfix({k: _format(v) for k, v in self.fields.items()},
                                          refresh=False)  # fmt: skip
                self._bar.update(n)
            elif self._callback is not None:
                self._callback(self._update(now))
            elif now - self._last_line >= LINE_INTERVAL:
                self._last_line = now
                self._printed = True
                print(self._update(now).line(), file=self.stream, flush=True)

    def _update(self, now: float, final: bool = False) -> Update:
        rate = math.nan
        if self._first is not None and now > self._first:
            rate = (self.done - self._first_done) / (now - self._first)
        return Update(self.task, self.done, self.total, self.unit, dict(self.fields),
                      now - self.start, rate, final)  # fmt: skip

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        now = time.perf_counter()
        if self._bar is not None:
            self._bar.close()
        elif self._callback is not None:
            self._callback(self._update(now, final=True))
        elif self._lines and self._printed:
            print(self._update(now, final=True).line(), file=self.stream, flush=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ----------------------------------------------------------------------- chain steps

_current: list[Progress] = []  # the task the samplers' callbacks report to
_divergences: list[int | None] = [0]  # None: not counted (a warm-up's are not reported)
_log_step = [math.nan]  # a moving average of log step size over the chains' steps


def chain_steps(steps, divergent, step_size) -> None:
    """Host side of a sampler's ``jax.debug.callback`` (one chain): ``steps`` more steps
    done, ``divergent`` of them divergent, at ``step_size``, counted towards the current
    task. Never raises (an exception would abort the jitted computation it reports on)."""
    try:
        if not _current:
            return
        task = _current[-1]
        log_step = math.log(float(step_size))
        average = _log_step[0]
        _log_step[0] = log_step if math.isnan(average) else 0.95 * average + 0.05 * log_step
        fields: dict[str, Any] = {"step size": float(f"{math.exp(_log_step[0]):.3g}")}
        count = _divergences[0]
        if count is not None:
            _divergences[0] = count + int(divergent)
            fields["divergences"] = _divergences[0]
        task.update(int(steps), **fields)
    except Exception:  # a display must never stop the sampler
        pass


class reporting:
    """``with reporting(task):`` chain steps counted towards ``task`` (a
    :class:`Progress`); ``divergences`` starts the count shown (a resumed run's), ``None``
    shows none (the warm-up's: the adaptation's early divergences are expected)."""

    def __init__(self, task: Progress, divergences: int | None = 0):
        self.task, self.divergences = task, divergences

    def __enter__(self) -> Progress:
        _current.append(self.task)
        _divergences[0] = self.divergences
        _log_step[0] = math.nan
        return self.task

    def __exit__(self, *exc) -> None:
        _current.remove(self.task)
