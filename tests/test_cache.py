"""The persistent compilation cache (initdiag.engine.cache): where it goes, that it is used, and
that a bad folder never fails a run. Each case runs in its own process, since jax's cache
configuration is process-wide."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from initdiag.engine import cache

SCRIPT = textwrap.dedent("""
    import sys, jax, jax.numpy as jnp
    from initdiag.engine import cache
    folder, note = cache.enable(sys.argv[1] if len(sys.argv) > 1 else None)
    print(note)
    f = jax.jit(lambda x: jnp.tanh(x @ x.T).sum())
    print(float(f(jnp.arange(12.0).reshape(3, 4))))
""")


def _run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-c", SCRIPT, *args], capture_output=True, text=True,
                          env=full, timeout=300)


def test_default_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("INITDIAG_CACHE_DIR", str(tmp_path / "c"))
    assert cache.default_dir() == tmp_path / "c"
    monkeypatch.setenv("INITDIAG_CACHE_DIR", "")
    assert cache.default_dir() is None
    monkeypatch.delenv("INITDIAG_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.default_dir() == tmp_path / "xdg" / "initdiag"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache.default_dir() == Path.home() / ".cache" / "initdiag"


def test_compiled_executables_are_written_and_reused(tmp_path):
    folder = tmp_path / "cache"
    first = _run(str(folder))
    assert first.returncode == 0, first.stderr
    assert f"compilation cache: {folder}" in first.stdout
    entries = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    assert entries, "the jitted function's executable was not cached"
    second = _run(str(folder))
    assert second.returncode == 0, second.stderr
    assert second.stdout.splitlines()[-1] == first.stdout.splitlines()[-1]  # same number
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == entries


def test_unwritable_or_empty_folder_turns_the_cache_off_without_failing(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    bad = _run(str(blocker / "cache"))
    assert bad.returncode == 0, bad.stderr
    assert "compilation cache off" in bad.stdout and "not writable" in bad.stdout
    off = _run(env={"INITDIAG_CACHE_DIR": ""})
    assert off.returncode == 0 and "compilation cache off" in off.stdout


def test_corrupt_entries_are_misses_not_failures(tmp_path):
    folder = tmp_path / "cache"
    assert _run(str(folder)).returncode == 0
    for entry in folder.iterdir():
        if entry.is_file() and not entry.name.startswith("."):
            entry.write_bytes(b"garbage")
    again = _run(str(folder))
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[-1] == _run().stdout.splitlines()[-1]


def test_stored_arrays_are_exact_and_keyed_by_code(tmp_path, monkeypatch):
    """The phase grid kept in the cache folder is the computed one bit for bit; another key or
    another version of the code is a miss; a corrupt file is recomputed."""
    import numpy as np

    from initdiag import theory

    monkeypatch.setattr(cache, "active_dir", lambda: tmp_path)
    calls = []
    W, B = np.logspace(-1, 1, 7), np.linspace(0, 0.5, 5)

    def compute():
        calls.append(1)
        return theory.phase_grid("tanh", W, B)

    src = tmp_path / "code.py"
    src.write_text("v1")
    first = cache.stored_arrays("phase_grid", ("tanh", W, B), (src,), compute)
    again = cache.stored_arrays("phase_grid", ("tanh", W, B), (src,), compute)
    assert len(calls) == 1
    for k in first:
        np.testing.assert_array_equal(again[k], first[k])
    cache.stored_arrays("phase_grid", ("tanh", W * 2, B), (src,), compute)
    assert len(calls) == 2
    src.write_text("v2")
    cache.stored_arrays("phase_grid", ("tanh", W, B), (src,), compute)
    assert len(calls) == 3
    for f in (tmp_path / "initdiag-arrays").iterdir():
        f.write_bytes(b"garbage")
    fresh = cache.stored_arrays("phase_grid", ("tanh", W, B), (src,), compute)
    assert len(calls) == 4
    for k in first:
        np.testing.assert_array_equal(fresh[k], first[k])
