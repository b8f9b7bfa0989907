"""A persistent compilation cache: jax's own, in initdiag's folder, never a reason to fail.

:func:`enable` points jax's persistent compilation cache (``jax_compilation_cache_dir``) at

* ``$INITDIAG_CACHE_DIR`` when that variable is set (set but empty: the cache stays off),
* else ``$XDG_CACHE_HOME/initdiag`` when ``XDG_CACHE_HOME`` is set,
* else ``~/.cache/initdiag``,

with no minimum compile time or entry size, so every executable of a probe is kept: a second
``initdiag report`` of the same shapes loads them instead of compiling. The numbers do not depend
on it (a cached executable is the compiled program itself).

A folder that cannot be created or written turns the cache off with a note, and jax itself treats
an unreadable or corrupt entry as a miss (it logs a warning and compiles), so a bad cache costs
at most the compilation it was meant to save. The command line enables it unless ``--no-cache``;
from Python, call :func:`initdiag.enable_cache` (jax's configuration is process-wide, so the
library does not change it on import).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

ENV = "INITDIAG_CACHE_DIR"


def default_dir() -> Path | None:
    """The cache folder the environment asks for (module docstring), or None for off."""
    if ENV in os.environ:
        value = os.environ[ENV].strip()
        return Path(value).expanduser() if value else None
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "initdiag"


def _writable(folder: Path) -> str | None:
    """None when ``folder`` can be created and written, else why not."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".probe-", delete=True):
            pass
    except OSError as e:
        return f"{type(e).__name__}: {e}"
    return None


def enable(folder: str | os.PathLike | None = None) -> tuple[Path | None, str]:
    """Turn jax's persistent compilation cache on in ``folder`` (default :func:`default_dir`).

    Returns:
      ``(folder or None, note)``: the folder in use (None: off) and one line saying what was
      done, for logs and the report page. Never raises for a bad folder or jax version.
    """
    import jax

    target = Path(folder).expanduser() if folder is not None else default_dir()
    if target is None:
        return None, f"compilation cache off (${ENV} is empty)"
    problem = _writable(target)
    if problem is not None:
        return None, f"compilation cache off: {target} is not writable ({problem})"
    try:
        jax.config.update("jax_compilation_cache_dir", str(target))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    except Exception as e:  # noqa: BLE001 - an old jax without these options: no cache
        return None, f"compilation cache off: this jax cannot ({type(e).__name__}: {e})"
    return target, f"compilation cache: {target}"


def disable() -> None:
    """Turn jax's persistent compilation cache off again (for tests and ``--no-cache``)."""
    import jax

    try:
        jax.config.update("jax_compilation_cache_dir", None)
    except Exception:  # noqa: BLE001 - nothing to undo
        pass


def active_dir() -> Path | None:
    """The folder jax's persistent compilation cache uses in this process (None: off)."""
    import jax

    try:
        value = jax.config.jax_compilation_cache_dir
    except AttributeError:
        return None
    return Path(value) if value else None


def stored_arrays(name: str, key: tuple, sources: tuple, compute) -> dict:
    """``compute()`` (a dict of numpy arrays), kept in the cache folder while the cache is on.

    The file is named after a SHA-256 of ``key`` (its ``repr``: plain numbers, strings, tuples and
    numpy arrays' bytes) and of the bytes of ``sources`` (paths of the files whose code computes
    it), so a change of that code is a miss, never a stale answer. Written atomically; an unreadable file is
    a miss; a cache that cannot be written is skipped. Off: just ``compute()``.
    """
    import hashlib
    import io

    import numpy as np

    folder = active_dir()
    if folder is None:
        return compute()
    digest = hashlib.sha256(name.encode())
    for part in key:
        digest.update(np.ascontiguousarray(part).tobytes() if isinstance(part, np.ndarray)
                      else repr(part).encode())
    for source in sources:
        digest.update(Path(source).read_bytes())
    path = folder / "initdiag-arrays" / f"{name}-{digest.hexdigest()[:32]}.npz"
    try:
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    except Exception:  # noqa: BLE001 - missing or unreadable: compute it
        pass
    result = compute()
    try:
        from initdiag.fileio import atomic_write_bytes

        buffer = io.BytesIO()
        np.savez(buffer, **{k: np.asarray(v) for k, v in result.items()})
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, buffer.getvalue())
    except OSError:  # an unwritable cache costs the saving, nothing else
        pass
    return result
