"""One writer per results folder: a lock file that names its holder, taken by every stage that writes there.

Two ``study`` commands on one folder would otherwise both generate the cohort, or train every run twice (on a GPU,
where training is not bit-deterministic, one run's ``summary.json`` could end up beside the other's ``best.pt``).
The lock is a file created with ``O_EXCL`` (atomic on local and NFSv3+ file systems) holding the holder's host,
process id, command and start time. A lock whose process is gone (same host) is stale: it is taken over, and said.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_NAME = ".study.lock"

_held: dict[Path, int] = {}  # lock files this process holds, with their nesting depth (a study holds it for its stages)


class ResultsLockedError(RuntimeError):
    """Another live process writes to the results folder."""


def _process_alive(pid: int) -> bool:
    """True when a process with this id exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _holder(path: Path) -> dict:
    """The lock file's record (empty when it is unreadable or half-written)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def describe_holder(holder: dict) -> str:
    """'pid 123 on host (command, since time)' for messages."""
    if not holder:
        return "an unknown process (the lock file is empty or unreadable)"
    return (f"pid {holder.get('pid')} on {holder.get('host')} ({holder.get('command')!r}, since "
            f"{holder.get('started')})")


def _create(path: Path) -> None:
    """Create the lock file with this process's record; ``FileExistsError`` when it exists."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    record = {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(["python -m studylib", *sys.argv[1:]]),
              "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    with os.fdopen(fd, "w") as fh:
        fh.write(json.dumps(record))


def acquire(folder: Path) -> Path:
    """Take the folder's lock (a stale one is taken over, with a warning); ``ResultsLockedError`` if it is held."""
    if not folder.is_dir():
        raise FileNotFoundError(f"no results folder {folder}")
    path = folder.resolve() / LOCK_NAME
    if path in _held:
        _held[path] += 1
        return path
    for _ in range(2):  # a second try after removing a stale lock
        try:
            _create(path)
        except FileExistsError:
            holder = _holder(path)
            stale = holder.get("host") == socket.gethostname() and not _process_alive(int(holder.get("pid", -1)))
            if not stale:
                raise ResultsLockedError(
                    f"{folder} is being written by {describe_holder(holder)}: wait for it to finish "
                    f"(if that process no longer exists, remove {path})") from None
            print(f"warning: taking over the stale lock {path} of {describe_holder(holder)}, which no longer runs",
                  file=sys.stderr)
            path.unlink(missing_ok=True)
            continue
        except OSError as err:  # read-only or full file system, no permission
            raise OSError(err.errno, f"{folder} cannot be written ({err.strerror}): every stage writes its results "
                          "there") from err
        _held[path] = 1
        return path
    raise ResultsLockedError(f"{folder}: another process took the lock {path} at the same moment")


def release(path: Path) -> None:
    """Release one level of a lock taken by ``acquire`` (the file goes with the last)."""
    _held[path] -= 1
    if not _held[path]:
        del _held[path]
        path.unlink(missing_ok=True)


@contextmanager
def results_lock(folder: str | os.PathLike) -> Iterator[Path]:
    """Hold the results folder's lock for the duration of a stage (re-entrant within one process)."""
    path = acquire(Path(folder))
    try:
        yield path
    finally:
        release(path)
