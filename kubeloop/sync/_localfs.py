"""Writing what two-way sync brings back, without trusting the container.

A container may name any path and pick any mode. Here a path is used only after
:func:`kubeloop.agent.valid_relative` accepted it, every folder on the way is opened
relative to its parent with ``O_NOFOLLOW`` (a symlinked folder is never followed out of
the sync folder), files get at most ``rwxrwxrwx``, and the last step is atomic against a
save by the developer in the same instant: the new file is swapped in with
``renameat2(RENAME_EXCHANGE)`` and swapped back if what it replaced was not the version
both sides had agreed on (``RENAME_NOREPLACE`` where the file should not exist yet).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import hashlib
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

from kubeloop.agent import valid_relative

RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2
AT_FDCWD = -100
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafePath(OSError):
    """A path from the container that would leave the sync folder, or cross a symlink."""


@functools.cache
def _renameat2() -> object | None:
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return None  # not Linux, or a C library without it: see _swap's fallback
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                         ctypes.c_uint]  # fmt: skip
    return function


def _rename2(dirfd: int, old: str, new: str, flags: int) -> None:
    function = _renameat2()
    if function is None:
        raise OSError(errno.ENOSYS, "renameat2 is not available")
    if function(dirfd, os.fsencode(old), dirfd, os.fsencode(new), flags) != 0:  # type: ignore[operator]
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


@contextlib.contextmanager
def parent_of(root: Path, rel: str, create: bool) -> Iterator[tuple[int, str]]:
    """(descriptor of rel's folder, rel's last part); folders are opened one at a time
    from ``root`` without following symlinks, and made when ``create`` is set."""
    if not valid_relative(rel):
        raise UnsafePath(errno.EINVAL, f"not a path inside the sync folder: {rel!r}")
    *folders, name = rel.split("/")
    fd = os.open(root, DIR_FLAGS)
    try:
        for part in folders:
            try:
                child = os.open(part, DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o755, dir_fd=fd)
                child = os.open(part, DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise UnsafePath(exc.errno, f"{rel}: '{part}' is a symlink or a file, "
                                                "not followed") from exc  # fmt: skip
                raise
            os.close(fd)
            fd = child
        yield fd, name
    finally:
        os.close(fd)


def digest_at(dirfd: int, name: str) -> str | None:
    """SHA-256 of a regular file (a symlink is not followed); None when absent or not a
    regular file."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        fd = os.open(name, flags, dir_fd=dirfd)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        digest = hashlib.sha256()
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _write_temp(dirfd: int, data: bytes, mode: int) -> str:
    temp = f".kubeloop-pull-{secrets.token_hex(6)}"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600, dir_fd=dirfd)  # fmt: skip
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        os.fchmod(fd, mode & 0o777)  # never setuid, setgid or sticky from a container
    return temp


def replace_if_unchanged(root: Path, rel: str, data: bytes, mode: int,
                         expected: str | None) -> bool:  # fmt: skip
    """Put ``data`` at rel if the local file still is ``expected`` (its digest; None:
    absent). Returns False, changing nothing at rel, when the developer's copy differs
    (then :func:`save_conflict` keeps the container's version beside it)."""
    with parent_of(root, rel, create=True) as (dirfd, name):
        temp = _write_temp(dirfd, data, mode)
        try:
            return _swap(dirfd, temp, name, expected)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp, dir_fd=dirfd)


def _swap(dirfd: int, temp: str, name: str, expected: str | None) -> bool:
    try:
        if expected is None:
            _rename2(dirfd, temp, name, RENAME_NOREPLACE)
            return True
        _rename2(dirfd, temp, name, RENAME_EXCHANGE)
    except FileExistsError:
        return False  # created locally a moment ago: the developer's file wins
    except FileNotFoundError:
        return False  # deleted locally a moment ago: so is the container's change
    except OSError as exc:
        if exc.errno not in (errno.ENOSYS, errno.EINVAL):
            raise
        # No renameat2 here (not Linux): check, then replace; a save in the instant
        # between the two can still be lost on such systems.
        if digest_at(dirfd, name) != expected:
            return False
        os.rename(temp, name, src_dir_fd=dirfd, dst_dir_fd=dirfd)
        return True
    if digest_at(dirfd, temp) == expected:
        return True  # temp now holds the old version, removed by the caller
    _rename2(dirfd, temp, name, RENAME_EXCHANGE)  # the developer saved meanwhile: undo
    return False


def save_conflict(root: Path, rel: str, data: bytes, mode: int) -> str:
    """Keep the container's version beside the developer's as NAME.remote-conflict."""
    conflict = f"{rel}.remote-conflict"
    with parent_of(root, conflict, create=True) as (dirfd, name):
        temp = _write_temp(dirfd, data, mode)
        os.rename(temp, name, src_dir_fd=dirfd, dst_dir_fd=dirfd)
    return conflict


def remove_if_unchanged(root: Path, rel: str, expected: str) -> bool:
    """Delete rel if it still is ``expected``; a file saved meanwhile stays."""
    try:
        with parent_of(root, rel, create=False) as (dirfd, name):
            aside = f".kubeloop-gone-{secrets.token_hex(6)}"
            try:
                os.rename(name, aside, src_dir_fd=dirfd, dst_dir_fd=dirfd)
            except FileNotFoundError:
                return False
            if digest_at(dirfd, aside) == expected:
                os.unlink(aside, dir_fd=dirfd)
                return True
            try:  # changed locally: put it back (never over a newer save)
                _rename2(dirfd, aside, name, RENAME_NOREPLACE)
            except OSError:
                os.rename(aside, f"{name}.kubeloop-kept", src_dir_fd=dirfd, dst_dir_fd=dirfd)
            return False
    except FileNotFoundError:
        return False


def remove_empty_folder(root: Path, rel: str) -> bool:
    try:
        with parent_of(root, rel, create=False) as (dirfd, name):
            os.rmdir(name, dir_fd=dirfd)
        return True
    except OSError:
        return False
