"""Atomic writes: a file (temp file, fsync, rename), a new folder (staged, renamed) or a folder replaced whole."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path

from .errors import DataError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path, mode: str = "wb"):
    """Yield a file object whose content replaces `path` only if the block finishes without error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; the result should look like any new file
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic rename (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):  # kernel or filesystem without the flag
        return False
    raise OSError(err, os.strerror(err), str(b))


def remove_stale(path) -> None:
    """Delete the sibling temp files and folders (`.NAME.*.tmp`) that interrupted writes of `path` left; a folder
    set aside by an interrupted replace_dir (`.NAME.*.tmp/NAME`) is first put back when `path` is missing."""
    path = Path(path)
    stales = sorted(path.parent.glob(f".{path.name}.*.tmp")) if path.parent.is_dir() else []
    for stale in stales:
        if not path.exists() and (stale / path.name).is_dir():
            os.replace(stale / path.name, path)
    for stale in stales:
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                stale.unlink()


def _fsync_tree(folder: Path) -> None:
    for child in folder.rglob("*"):
        if child.is_file() and not child.is_symlink():
            with open(child, "rb") as f:
                os.fsync(f.fileno())


@contextlib.contextmanager
def replace_dir(path):
    """Yield a sibling temp folder whose content replaces folder `path` as a whole when the block succeeds.

    Files of an existing `path` that the block did not write (e.g. lfw.bin beside a train.rec) are carried over as
    hard links (copies across devices). Then the two folders are exchanged in one atomic rename (Linux
    renameat2 RENAME_EXCHANGE): a reader sees the old set or the new one, never a mix, and a kill at any point leaves
    the old set whole (plus a temp folder that the next write removes). Without the exchange (other systems) the old
    folder is renamed aside first: a moment with no set, never a mixed one.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise DataError(f"{path}: is a file, not a folder. Give a folder for the output.")
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        if path.is_dir():
            for old in path.iterdir():
                if not (tmp / old.name).exists():
                    if old.is_dir() and not old.is_symlink():
                        shutil.copytree(old, tmp / old.name, copy_function=_link_or_copy, symlinks=True)
                    else:
                        _link_or_copy(old, tmp / old.name)
        _fsync_tree(tmp)
        os.chmod(tmp, 0o777 & ~_umask())
        if not path.exists():
            os.replace(tmp, path)
        elif _exchange(tmp, path):
            shutil.rmtree(tmp)  # now the old set
        else:
            aside = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
            os.replace(path, aside / path.name)
            os.replace(tmp, path)
            shutil.rmtree(aside)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _link_or_copy(src, dst) -> None:
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError:
        shutil.copy2(src, dst, follow_symlinks=False)


@contextlib.contextmanager
def staged_dir(path):
    """Yield a sibling temp folder that becomes `path` (which must be absent or empty) if the block succeeds."""
    path = Path(path)
    remove_stale(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise DataError(f"{path}: already exists and is not an empty folder. Choose a new output folder or remove it.")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        if path.exists():
            path.rmdir()
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
