"""Atomic file writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, overwrite: bool = True) -> Path:
    """Write ``data`` to ``path`` via a temporary file in the same folder, published atomically.

    Parent folders are created. On any error the temporary file is removed and ``path`` is as it
    was.

    Args:
      path: the file to write.
      data: its new content.
      overwrite: True (default): replace an existing file (``os.replace``). False: never replace
        one, even one that appears while ``data`` is written: the temporary file is hard-linked
        to ``path`` (``os.link`` fails if the name exists), then removed. Where hard links are
        not supported (FAT, some network filesystems) the name is claimed by creating an empty
        file exclusively (``O_EXCL``) and the data is then ``os.replace``'d onto it: still never
        clobbering another file, but a reader may briefly see that empty file.

    Returns:
      ``path`` as a Path.

    Raises:
      FileExistsError: ``overwrite`` is False and ``path`` exists.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _write_temp(path, data)
    try:
        if overwrite:
            os.replace(tmp, path)
        else:
            _publish_new(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str, *, overwrite: bool = True) -> Path:
    """:func:`atomic_write_bytes` of ``text`` encoded as UTF-8."""
    return atomic_write_bytes(path, text.encode("utf-8"), overwrite=overwrite)


def _write_temp(path: Path, data: bytes) -> str:
    """A synced temporary file next to ``path`` holding ``data``, with a normal file mode."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.chmod(tmp, 0o666 & ~umask())  # mkstemp makes 0600; give the file a normal mode
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        _remove(tmp)
        raise
    return tmp


def _publish_new(tmp: str, path: Path) -> None:
    """Give the complete file ``tmp`` the name ``path`` unless that name exists."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError:  # no hard links on this filesystem
        _claim_then_replace(tmp, path)
    else:
        _remove(tmp)


def _claim_then_replace(tmp: str, path: Path) -> None:
    """Create ``path`` empty and exclusively (FileExistsError if it exists), then replace it
    with ``tmp``; if that fails, remove the empty file again unless another one replaced it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        claimed = os.fstat(fd)
    finally:
        os.close(fd)
    try:
        os.replace(tmp, path)
    except BaseException:
        try:
            now = os.stat(path)
            if (now.st_dev, now.st_ino) == (claimed.st_dev, claimed.st_ino):
                os.unlink(path)
        except OSError:
            pass
        raise


def _remove(name: str) -> None:
    try:
        os.unlink(name)
    except FileNotFoundError:
        pass


def umask() -> int:
    """The process's file-creation mask (read without changing it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask
