"""One writer per run directory: RUN/.lock, held with flock for the life of the training process.

Two processes training into one folder would interleave metrics.csv and leave the weights of one
next to the optimizer state of the other. The lock is an advisory ``flock`` on RUN/.lock (released
by the kernel when the holder exits, however it exits, so a killed run never leaves a stale lock);
the file holds the holder's pid so the refusal can name it. The file stays after a run (deleting a
lock file others may have opened would let two of them lock different inodes), except in folders
the lock itself created and nothing else was written to: a run that failed at its start leaves no
empty folders behind.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path

from multidiff.engine.errors import UserError

LOCK_NAME = ".lock"


class RunLock:
    """``with RunLock(run_dir):`` creates ``run_dir`` if needed and holds its lock, or raises UserError."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / LOCK_NAME
        self.fd = None
        self.created = []  # the folders this lock made, innermost first

    def __enter__(self) -> "RunLock":
        folder = self.path.parent
        self.created = [f for f in (folder, *folder.parents) if not f.exists()]
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise UserError(f"cannot write to the run directory {self.path.parent}: {e.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise UserError(f"cannot lock {self.path}: {e.strerror}") from None
            raise UserError(f"{self.path.parent} is in use by another training process (pid {holder}); "
                            f"wait for it to finish or choose another --out") from None
        self.fd = fd
        with contextlib.suppress(OSError):  # on a full disk the lock holds without the pid to show
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is None:
            return
        if self.created and os.listdir(self.path.parent) == [LOCK_NAME]:
            self.path.unlink()
            with contextlib.suppress(OSError):  # stops at the first folder that is not empty
                for folder in self.created:
                    folder.rmdir()
        os.close(self.fd)  # closing the only descriptor releases the flock
        self.fd = None
