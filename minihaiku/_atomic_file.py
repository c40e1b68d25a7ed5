"""Writing one file atomically: a temporary file beside the target, then a rename.

A reader of the target sees the old file or the new one, never half a file:
the data goes to a temporary file in the target's directory, is fsynced, and
is renamed over the target (then the directory is fsynced so the rename
survives a crash). The temporary file is created with mode ``0o666`` and the
kernel applies the process umask, exactly as ``open(path, "w")`` would;
reading the umask would mean setting it, which races with other threads. A
symlinked target path writes the file the link points to and keeps the link.
Every OS error names the path the caller gave, never the temporary file.
"""

import errno
import os
import secrets
import stat
from collections.abc import Callable
from typing import IO, Union

from minihaiku import errors

PathLike = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]

# Short, so that a target name near NAME_MAX still leaves room for it.
_TEMP_PREFIX = ".mh-"
_TEMP_SUFFIX = ".tmp"


def as_str(path: PathLike, call: str) -> str:
    """``path`` (str, bytes or ``os.PathLike``) as a str, for the OS and messages."""
    try:
        return os.fsdecode(os.fspath(path))
    except TypeError as e:
        raise errors.InvalidArgumentError(
            f"{call}: path must be a str, bytes or os.PathLike, got {type(path).__name__} "
            f"({path!r}). Fix: pass a file path such as 'params.npz'.") from e


def write(name: str, write_to: Callable[[IO[bytes]], None]) -> None:
    """Runs ``write_to(file)`` on a temporary file, then renames it over ``name``."""
    target = os.path.realpath(name)  # Through symlinks: write the file they point to.
    if os.path.isdir(target):
        raise IsADirectoryError(
            errno.EISDIR, f"mh.io.save: '{name}' is a directory. Fix: pass a file path "
            f"such as '{os.path.join(name, 'params.npz')}'.")
    directory = os.path.dirname(target)
    try:
        fd, tmp = _create_temp(directory)
    except OSError as e:
        raise _naming(e, name) from e
    try:
        with os.fdopen(fd, "wb") as f:
            write_to(f)
            f.flush()
            os.fsync(f.fileno())
        if os.path.exists(target):
            # Overwriting keeps the file's mode, as writing into it would.
            os.chmod(tmp, stat.S_IMODE(os.stat(target).st_mode))
        os.replace(tmp, target)
    except BaseException as e:
        # Whatever failed, the target is untouched and no temporary file stays.
        if os.path.lexists(tmp):
            os.remove(tmp)
        if isinstance(e, OSError):
            raise _naming(e, name) from e
        raise
    _fsync_directory(directory)


def _create_temp(directory: str) -> tuple[int, str]:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    flags |= getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = os.path.join(directory, f"{_TEMP_PREFIX}{secrets.token_hex(4)}{_TEMP_SUFFIX}")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, f"no free temporary file name in '{directory}'")


def _fsync_directory(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # Not every platform opens directories; the rename itself is done.
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _naming(e: OSError, name: str) -> OSError:
    """``e`` again (same class, same errno) with a message naming ``name``."""
    why = e.strerror or str(e)
    if e.errno == errno.ENOENT:
        fix = f"create the directory '{os.path.dirname(os.path.abspath(name))}' first"
    elif e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = "write somewhere you have write access to"
    elif e.errno == errno.ENAMETOOLONG:
        fix = "use a shorter file name"
    else:
        fix = "check the path and the free space"
    message = f"mh.io.save could not write '{name}': {why}. Fix: {fix}."
    try:
        return type(e)(message) if e.errno is None else type(e)(e.errno, message)
    except Exception:  # noqa: BLE001  (an OSError subclass with another constructor)
        return e
