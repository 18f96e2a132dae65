"""The one atomic writer: every file needle, gan and the apps write goes through it.

    with atomic_writer("run/report.html") as f:     # f is a binary file object
        f.write(page.encode())
    atomic_write("run/run.json", json.dumps(manifest))   # bytes or str

Why: a crash, a kill or a full disk during a write must never leave a half-written file
where a good one was. The bytes go to a temporary file in the same folder (so the rename
cannot cross file systems), are flushed and fsync'ed, then `os.replace` swaps the name
(atomic on POSIX and Windows) and the folder is fsync'ed so the rename itself survives a
power cut. On any failure, KeyboardInterrupt included, the temporary file is removed and
the earlier file, if any, is unchanged.

Temporary names are ".NAME.PID.HEX.tmp" (`TEMP_NAME` matches them), so a cleaner can tell a
dead writer's leftovers from a live one's.
"""
import contextlib
import os
import re
import secrets

__all__ = ["atomic_writer", "atomic_write", "TEMP_NAME"]

TEMP_NAME = re.compile(r"^\..+\.(\d+)\.[0-9a-f]{8}\.tmp$")


@contextlib.contextmanager
def atomic_writer(path):
    """A binary file object whose contents replace `path` only when the block succeeds.

    OSError from the write names `path` (not the temporary file) and says that any earlier
    file there is unchanged.
    """
    folder = os.path.dirname(os.path.abspath(path))
    temp_path = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}."
                                     f"{secrets.token_hex(4)}.tmp")
    # O_EXCL: never clobber another writer's temp file; mode 0o666 & ~umask like open().
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    try:
        handle = os.open(temp_path, flags, 0o666)
    except OSError as error:
        raise _named(error, path) from error
    try:
        with os.fdopen(handle, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp_path, path)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temp_path)
        if isinstance(error, OSError):
            raise _named(error, path) from error
        raise
    _fsync_directory(folder)


def atomic_write(path, data):
    """Replace `path` with `data` (bytes, or str written as UTF-8) atomically."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    with atomic_writer(path) as f:
        f.write(data)
    return path


def _named(error, path):
    message = f"cannot write {path}: {error.strerror or error}; any earlier file there " \
              "is unchanged"
    if error.errno is None:
        return OSError(message)
    return OSError(error.errno, message)


def _fsync_directory(folder):
    """Make the rename durable; not possible (nor needed) on Windows."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
