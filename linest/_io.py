"""Writing files so that nothing the user has is lost.

Three rules, the same for every output of every command:

- an output path is checked before any work starts (:func:`check_output`): its folder
  exists and is writable, it is not a folder, a device or an input of the same run, and an
  existing file is replaced only when the user said so (``--overwrite``);
- a write is atomic (:func:`atomic_write`): a killed process leaves the old file or the
  new one, never half, and only ever replaces a regular file;
- the temporary files a killed process leaves (``.NAME.tmpPID.EXT``) are removed by the
  next run on the same path (:func:`remove_stale_temporaries`).
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Iterable
from pathlib import Path

__all__ = ["OutputError", "atomic_write", "check_output", "remove_stale_temporaries"]


class OutputError(ValueError):
    """An output path cannot be written as asked; the message names the option and path."""


def _temporary(path: Path, pid: int | None = None) -> Path:
    return path.with_name(f".{path.stem}.tmp{os.getpid() if pid is None else pid}{path.suffix}")


def _describe(mode: int) -> str | None:
    """What a non-regular file is, in words (None for a regular file)."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def check_output(
    path,
    *,
    option: str,
    overwrite: bool = False,
    inputs: Iterable = (),
    exists_ok: bool = False,
) -> Path:
    """Check, before any work, that ``path`` can be written as the user asked.

    Parameters
    ----------
    path : the output file.
    option : how the user named it (``--json``, ``out=``), for the message.
    overwrite : an existing regular file may be replaced.
    inputs : the files this run reads (spec, data): never replaced, even with ``overwrite``.
    exists_ok : an existing file is expected (``--resume`` continues it).

    Raises :class:`OutputError` naming ``option`` and the path; returns the path.
    """
    path = Path(path)
    if str(path) == "" or path.name in ("", ".", ".."):
        raise OutputError(f"{option} {str(path)!r}: not a file name")
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        mode = None
    except OSError as error:  # a path under a file, a permission error on the folder
        raise OutputError(f"{option} {path}: cannot be written ({error.strerror})") from None
    if mode is not None:
        kind = _describe(mode)
        if kind is not None:
            raise OutputError(
                f"{option} {path}: is {kind}; linest writes (and replaces) only regular files"
            )
        for source in inputs:
            try:
                same = os.path.samefile(path, source)
            except OSError:
                same = False
            if same:
                raise OutputError(
                    f"{option} {path}: is an input of this run ({source}); "
                    "choose another output path"
                )
        if not (overwrite or exists_ok):
            raise OutputError(f"{option} {path}: exists; --overwrite replaces it")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.exists():
        raise OutputError(f"{option} {path}: the folder {folder} does not exist")
    if not folder.is_dir():
        raise OutputError(f"{option} {path}: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"{option} {path}: the folder {folder} is not writable")
    return path


def atomic_write(path, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp)`` on a temporary sibling of ``path``, then rename it onto ``path``.

    The temporary name keeps the suffix (writers such as matplotlib choose the format
    from it) and carries the process id (two processes never share one). Only a regular
    file (or nothing) at ``path`` is ever replaced: a device, a pipe or a folder there is
    an :class:`OutputError`, checked again just before the rename.
    """
    path = Path(path)
    tmp = _temporary(path)
    try:
        write(tmp)
        try:
            kind = _describe(os.stat(path).st_mode)
        except FileNotFoundError:
            kind = None
        if kind is not None:
            raise OutputError(f"{path}: is {kind}; linest replaces only regular files")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temporaries(path) -> list[Path]:
    """Remove the temporary siblings of ``path`` (``.NAME.tmpPID.EXT``) that a killed
    process left: those whose process no longer runs. Returns what was removed."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    pattern = re.compile(rf"^\.{re.escape(path.stem)}\.tmp(\d+){re.escape(path.suffix)}$")
    removed = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = pattern.match(entry.name)
        if match and not _alive(int(match.group(1))) and entry.is_file():
            try:
                entry.unlink()
                removed.append(entry)
            except OSError:
                pass
    return removed
