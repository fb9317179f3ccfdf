"""One training per output folder, no empty folders left by a failed run, write errors that name the file.

    lock = RunLock(output_dir)
    stale = lock.acquire()        # RunFolderBusyError if another live run holds the folder
    try: ... finally: lock.release()

The lock is the file `train.lock` in the output folder, holding the owner's pid, host and start time
(JSON). It is created complete or not at all (written under a temporary name, then hard-linked to
`train.lock`, which fails if the name exists), so a reader never sees a half-written lock. A lock left by
a run that was killed (same host, pid no longer alive) is taken over; `acquire` returns a line saying so,
for the log. A lock of another host cannot be checked from here and is always respected.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from typing import Iterator

from lib.utils.checkpoint import pid_alive
from lib.utils.logger import UserError

__all__ = ['LOCK_NAME', 'OutputFileError', 'RunFolderBusyError', 'RunLock', 'make_dirs', 'named_file_errors',
           'remove_empty_dirs']

LOCK_NAME = 'train.lock'


class RunFolderBusyError(UserError):
    """Another training holds the output folder (exit 2: the user picks another folder or waits)."""


class OutputFileError(UserError):
    """A results or weights file could not be written or read (read-only folder, full disk); exit 2."""


class RunLock:
    """The lock file of one output folder (see the module docstring)."""

    def __init__(self, folder: str):
        self.folder = folder
        self.path = os.path.join(folder, LOCK_NAME)
        self.held = False

    def acquire(self) -> str | None:
        """Take the lock, or raise RunFolderBusyError naming the owner. Returns a warning line when a
        stale lock (its process is gone) was taken over, else None."""
        warning = None
        for _ in range(3):  # a stale lock removed by us can be taken by a third run in between
            if self._link_new_lock():
                self.held = True
                return warning
            owner = self._read_owner()
            if owner is None:  # released between our attempt and the read: try again
                continue
            if not _is_stale(owner):
                raise RunFolderBusyError(
                    f"{self.folder}: another training (pid {owner.get('pid')} on host {owner.get('host')}, "
                    f"started {owner.get('started', '?')}) is writing here; wait for it to end or choose "
                    f"another OUTPUT_DIR or config name. If that run is gone, delete {self.path}")
            warning = (f"took over the stale lock {self.path} of pid {owner.get('pid')} on this host, which is "
                       f"no longer running (a killed run; its checkpoint.pth is resumed if present)")
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.path)
        raise RunFolderBusyError(f'{self.folder}: could not take {self.path}: other runs keep taking it')

    def release(self) -> None:
        """Remove the lock if this process holds it (never another run's lock)."""
        if self.held:
            owner = self._read_owner()
            if owner is not None and owner.get('pid') == os.getpid() and owner.get('host') == socket.gethostname():
                os.remove(self.path)
            self.held = False

    def _link_new_lock(self) -> bool:
        """Create the complete lock file atomically; False if one exists already."""
        owner = {'pid': os.getpid(), 'host': socket.gethostname(), 'started': time.strftime('%Y-%m-%d %H:%M:%S')}
        tmp = f'{self.path}.{os.getpid()}.tmp'
        with open(tmp, 'w') as f:
            json.dump(owner, f)
        try:
            os.link(tmp, self.path)  # fails with FileExistsError if the lock exists
            return True
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links: exclusive create (a kill mid-write leaves it empty)
            return self._create_exclusive(owner)
        finally:
            os.remove(tmp)

    def _create_exclusive(self, owner: dict) -> bool:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, 'w') as f:
            json.dump(owner, f)
        return True

    def _read_owner(self) -> dict | None:
        """The lock's content; None if there is no lock. An unreadable lock counts as held by someone."""
        try:
            with open(self.path) as f:
                owner = json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {'pid': '?', 'host': '? (unreadable lock file)'}
        return owner if isinstance(owner, dict) else {'pid': '?', 'host': '? (unreadable lock file)'}


def _is_stale(owner: dict) -> bool:
    """A lock of this host whose process is gone. Another host's pid cannot be checked from here."""
    pid = owner.get('pid')
    return owner.get('host') == socket.gethostname() and isinstance(pid, int) and not pid_alive(pid)


def make_dirs(*folders: str) -> list[str]:
    """os.makedirs for each folder; returns the folders this call created, deepest first, so that a run
    that fails before writing anything can remove exactly those (remove_empty_dirs)."""
    created = []
    for folder in folders:
        missing, path = [], os.path.abspath(folder)
        while not os.path.isdir(path):
            missing.append(path)
            path = os.path.dirname(path)
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as err:
            raise OutputFileError(f'{folder}: cannot create the folder ({err.strerror or err})') from None
        created.extend(missing)  # deepest first, as found
    return sorted(set(created), key=lambda p: -p.count(os.sep))


def remove_empty_dirs(folders: list[str]) -> None:
    """Remove each folder (deepest first) if it is empty; a folder with anything in it stays."""
    for folder in folders:
        with contextlib.suppress(OSError):  # not empty, or already gone
            os.rmdir(folder)


@contextlib.contextmanager
def named_file_errors() -> Iterator[None]:
    """Turn an OSError about a file (PermissionError, a full disk) into a one-line OutputFileError naming it.

    Errors without a file name (bugs, sockets) pass through unchanged.
    """
    try:
        yield
    except OSError as err:
        if err.filename is None:
            raise
        raise OutputFileError(f'{err.filename}: {err.strerror or err}') from None
