"""Files written safely, on every platform: one atomic write and one file lock.

* :func:`write_atomic` writes a temp file in the same folder, fsyncs it and ``os.replace``\\ s it
  over the target: a reader sees the old file or the new one, never half of one.
* :func:`file_lock` (waits) and :func:`try_lock` (does not) hold an exclusive lock through the
  `filelock <https://py-filelock.readthedocs.io>`_ package: ``flock`` on POSIX, ``msvcrt`` on
  Windows. The operating system drops the lock when its process dies, so a lock file left by a
  killed run never blocks the next one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

import filelock

__all__ = ["default_cache_dir", "file_lock", "try_lock", "write_atomic"]


def write_atomic(path: str | os.PathLike[str], chunks: Iterable[str] | str) -> Path:
    """Write text to ``path`` atomically: a temp file in the same folder, fsync, ``os.replace``.

    A reader sees the old file or the new one, never a half-written one; on any error the
    temp file is removed and the old file is left as it was. Creates the folder if needed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            if isinstance(chunks, str):
                handle.write(chunks)
            else:
                for chunk in chunks:
                    handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable (POSIX); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def file_lock(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created, with its folder, if missing) for the
    ``with`` body, waiting for another process that holds it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(str(path)):
        yield


class HeldLock:
    """A lock taken by :func:`try_lock`; :meth:`release` gives it back, removing its file."""

    def __init__(self, lock: filelock.BaseFileLock) -> None:
        self._lock = lock

    def release(self, *, remove: bool = True) -> None:
        """Release the lock. With ``remove`` the lock file is deleted first, while still held
        (POSIX), so no other process can be holding a lock on the deleted file."""
        path = Path(self._lock.lock_file)
        removed = False
        if remove:
            try:
                path.unlink()
                removed = True
            except FileNotFoundError:
                removed = True
            except OSError:  # Windows cannot delete an open file: delete it after releasing
                pass
        self._lock.release(force=True)
        if remove and not removed:
            with contextlib.suppress(OSError):
                path.unlink()


def _orphaned(lock: filelock.BaseFileLock) -> bool:
    """True when the file we locked was deleted (by the previous holder) after we opened it:
    a new file may be held by someone else under the same name."""
    fd = getattr(getattr(lock, "_context", None), "lock_file_fd", None)
    if not isinstance(fd, int):
        return False
    try:
        return os.fstat(fd).st_nlink == 0
    except OSError:
        return False


def try_lock(path: str | os.PathLike[str]) -> HeldLock | None:
    """Take an exclusive lock on ``path`` without waiting: the held lock, or None when another
    process holds it. Raises :class:`OSError`/:class:`NotImplementedError` where the file
    system has no locks (some network mounts); the caller decides whether to go on unlocked."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        lock = filelock.FileLock(str(path))
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            return None
        if not _orphaned(lock):
            return HeldLock(lock)
        lock.release(force=True)  # the old holder removed it as we locked it: lock the new file


def default_cache_dir() -> Path:
    """``$PYTEST_AIE_CACHE_DIR``, else ``$XDG_CACHE_HOME/pytest-aie``, else ``~/.cache/pytest-aie``."""
    if os.environ.get("PYTEST_AIE_CACHE_DIR"):
        return Path(os.environ["PYTEST_AIE_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pytest-aie"
