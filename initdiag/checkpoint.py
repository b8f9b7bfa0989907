"""Checkpoints of long sweeps: an append-only file of finished probes, to resume after a crash.

:func:`initdiag.sweep` and :func:`initdiag.sweep_fn` given ``checkpoint=PATH`` write each probe
to PATH as it finishes, and on a later call with the same PATH skip every probe already there.

File format (JSON lines, UTF-8; one JSON object per line, each line ending in ``\\n``)::

    {"format": "initdiag.checkpoint", "version": 1, "kind": "sweep",
     "describes": {"versions": {...}, "activations": [...], "depths": [...], ...},
     "probes": [<key of probe 0>, <key of probe 1>, ...]}          # line 1: the header
    {"probe": 3, "key": <key of probe 3>, "result": {...}}          # one line per finished probe

* The header identifies the whole sweep: ``kind`` (``"sweep"``, ``"model_sweep"``,
  ``"model_seeds"``), ``describes`` (what was probed, one entry per argument of the sweep, in a
  fixed order) and ``probes`` (the key of every probe, in the sweep's order: for a stack sweep
  ``[activation, init, depth, width, seed]``). It is created atomically
  (:func:`initdiag.fileio.atomic_write_text`): a file never exists without a complete header.
* A record holds the probe's position in ``probes``, its key and its result as ``to_dict()``
  writes it (:mod:`initdiag.jsonvalues` numbers: float64 values load back bit for bit, NaN and
  infinities as strings). Records are in the order probes finished, not the sweep's order.
* Records are appended with ``open(path, "a")``, ``flush`` and ``os.fsync``, one ``write`` per
  line. A process killed at any moment leaves at most its last line incomplete: a *torn* last
  line (no trailing ``\\n``, or not valid JSON) is dropped when the file is read, never loaded, and
  cut off before anything is appended, so the file stays valid. A line other than the last that is
  not a valid record is corruption: :class:`CheckpointError` names the file and the line.

Opening a checkpoint for a sweep compares its header with the sweep's: a file written for another
sweep raises :class:`CheckpointError` naming the file and the first entry of ``describes`` that
differs (``run.jsonl was written for depths [50]; this sweep has depths [20]``).

One writer at a time: the writer holds an exclusive lock on the file (``fcntl.flock``, where the
platform has it) while it is open, so a second run on the same file is refused rather than
interleaved. Readers (``write=False``: the processes other than 0 of a multi-process sweep) read
the same file and never write it.

This module imports nothing from initdiag but :mod:`initdiag.fileio`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from initdiag.fileio import atomic_write_text

FORMAT = "initdiag.checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: another sweep's, corrupt, or in use; names the file."""


def _dump(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False, default=str)


def _shown(value: Any) -> str:
    text = json.dumps(value, default=repr)
    return text if len(text) <= 120 else text[:117] + "..."


def header(kind: str, describes: Mapping[str, Any], probes: Sequence[Any]) -> dict[str, Any]:
    """The header line of a checkpoint (see the module docstring); ``describes`` and ``probes``
    must be plain JSON values (lists, not tuples)."""
    return {"format": FORMAT, "version": VERSION, "kind": kind,
            "describes": json.loads(_dump(dict(describes))),
            "probes": json.loads(_dump(list(probes)))}


class Checkpoint:
    """An open checkpoint: the results it holds (:attr:`done`) and a way to add to it.

    Made by :func:`open_checkpoint`. Attributes:
      path: the file.
      done: ``{probe index: decoded result}`` of every record read.
      total: the number of probes of the sweep.
      dropped: the bytes of a torn last line that were dropped (0 if none).
      writer: whether :meth:`append` writes (False: a reader, which never writes).
    """

    def __init__(self, path: Path, head: dict[str, Any], done: dict[int, Any], dropped: int,
                 file: Any = None):
        self.path = path
        self.probes = head["probes"]
        self.total = len(self.probes)
        self.done = done
        self.dropped = dropped
        self.writer = file is not None
        self._file = file

    def append(self, index: int, result: Mapping[str, Any]) -> None:
        """Append the record of probe ``index`` (``result``: its ``to_dict()``), flushed and
        fsynced before returning. A reader does nothing."""
        if self._file is None:
            return
        if self._file.closed:
            raise ValueError(f"checkpoint {self.path} is closed")
        line = _dump({"probe": int(index), "key": self.probes[index], "result": result})
        self._file.write((line + "\n").encode("utf-8"))
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        """Release the lock and close the file (the file stays)."""
        if self._file is not None and not self._file.closed:
            self._file.close()

    def __enter__(self) -> "Checkpoint":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def open_checkpoint(path: str | os.PathLike, head: dict[str, Any], *,
                    decode: Callable[[Mapping[str, Any]], Any] = dict,
                    write: bool = True) -> Checkpoint:
    """Open the checkpoint ``path`` of the sweep whose header is ``head`` (:func:`header`).

    A missing (or empty) file is created with ``head`` as its only line (writers only; a reader
    finds nothing done). An existing one must have been written for the same sweep; its records
    are read and decoded with ``decode(record["result"])``, and a torn last line is dropped (and,
    by a writer, cut off the file).

    Args:
      path: the file.
      head: this sweep's header.
      decode: turns a record's ``result`` object into a result (e.g. ``ProbeResult.from_dict``).
      write: open for appending, holding the lock (False: read only).

    Raises:
      CheckpointError: the file was written for another sweep (naming the first difference), is
        not a checkpoint, has a corrupt line before its last (naming the line), records a probe
        twice or one this sweep does not have, or is in use by another writer.
    """
    path = Path(path)
    if write:
        _create(path, head)
        file = open(path, "a+b")  # appends go to the end, whatever the position
        try:
            _lock(file, path)
            file.seek(0)
            data = file.read()
            done, complete = _parse(path, data, head, decode)
            if complete < len(data):  # a torn last line: cut it off before appending
                file.truncate(complete)
                file.flush()
                os.fsync(file.fileno())
        except BaseException:
            file.close()
            raise
        return Checkpoint(path, head, done, len(data) - complete, file)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        data = b""
    if not data:
        return Checkpoint(path, head, {}, 0)
    done, complete = _parse(path, data, head, decode)
    return Checkpoint(path, head, done, len(data) - complete)


def count(path: str | os.PathLike) -> tuple[int, int]:
    """``(k, n)``: the probes recorded in the checkpoint ``path`` and the probes of its sweep,
    without checking which sweep it is for (a torn last line is not counted).

    Raises:
      CheckpointError: the file is not a checkpoint or has a corrupt line before its last.
    """
    path = Path(path)
    data = path.read_bytes()
    lines, _ = _complete_lines(path, data)
    if not lines:
        raise CheckpointError(f"{path}: not an initdiag checkpoint (no header line)")
    stored = _header_of(path, lines[0][1])
    return len(lines) - 1, len(stored["probes"])


def _create(path: Path, head: dict[str, Any]) -> None:
    """Write ``head`` as the file's first line unless the file exists with content."""
    try:
        if path.stat().st_size > 0:
            return
        overwrite = True  # an empty file: nothing to lose
    except FileNotFoundError:
        overwrite = False
    try:
        atomic_write_text(path, _dump(head) + "\n", overwrite=overwrite)
    except FileExistsError:  # another run created it meanwhile: read that one
        pass


def _lock(file: Any, path: Path) -> None:
    try:
        import fcntl
    except ImportError:  # no advisory locks on this platform
        return
    try:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise CheckpointError(f"{path} is in use by another run (it holds the file's lock); "
                              f"wait for it to finish, or use another file") from None


def _complete_lines(path: Path, data: bytes) -> tuple[list[tuple[int, Any]], int]:
    """The parsed complete lines ``[(line number, object)]`` and the byte length they span; a
    torn last line (no ``\\n``, or not JSON) is left out. A bad line before the last raises."""
    out: list[tuple[int, Any]] = []
    end = 0
    lines = data.split(b"\n")
    for number, raw in enumerate(lines[:-1], start=1):  # lines[-1]: after the last \n
        try:
            obj = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            if number == len(lines) - 1 and not lines[-1]:  # the last line: torn, dropped
                break
            if number == 1:
                raise CheckpointError(f"{path}: not an initdiag checkpoint (line 1 is not a JSON "
                                      f"header)") from None
            raise CheckpointError(f"{path}: line {number} is not valid JSON ({e}); the file is "
                                  f"corrupt (only its last line may be torn by a crash)") from None
        out.append((number, obj))
        end += len(raw) + 1
    return out, end


def _header_of(path: Path, obj: Any) -> dict[str, Any]:
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an initdiag checkpoint (line 1 is not a header with "
                              f"format {FORMAT!r})")
    if obj.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {obj.get('version')!r} is not "
                              f"supported; this initdiag reads version {VERSION}")
    if not isinstance(obj.get("probes"), list) or not isinstance(obj.get("describes"), dict):
        raise CheckpointError(f"{path}: line 1 is a malformed checkpoint header (no 'describes' "
                              f"object or 'probes' list)")
    return obj


def _parse(path: Path, data: bytes, head: dict[str, Any],
           decode: Callable[[Mapping[str, Any]], Any]) -> tuple[dict[int, Any], int]:
    """The decoded records of ``data`` by probe index, and the byte length of its complete
    lines; checks the header against ``head`` and every record."""
    lines, complete = _complete_lines(path, data)
    if not lines:
        raise CheckpointError(f"{path}: not an initdiag checkpoint (no complete header line)")
    _compare(path, _header_of(path, lines[0][1]), head)
    probes = head["probes"]
    done: dict[int, Any] = {}
    first_line: dict[int, int] = {}
    for number, rec in lines[1:]:
        where = f"{path}: line {number}"
        if not isinstance(rec, dict) or not {"probe", "key", "result"} <= set(rec):
            raise CheckpointError(f"{where} is not a record (an object with probe, key, result)")
        i = rec["probe"]
        if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < len(probes):
            raise CheckpointError(f"{where} records probe {_shown(i)}; this sweep has probes "
                                  f"0..{len(probes) - 1}")
        if rec["key"] != probes[i]:
            raise CheckpointError(f"{where} records probe {i} as {_shown(rec['key'])}; this "
                                  f"sweep's probe {i} is {_shown(probes[i])}")
        if i in done:
            raise CheckpointError(f"{where} records probe {i} {_shown(probes[i])} again (first "
                                  f"on line {first_line[i]})")
        try:
            done[i] = decode(rec["result"])
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise CheckpointError(f"{where}: malformed result ({type(e).__name__}: {e})") from None
        first_line[i] = number
    return done, complete


def _compare(path: Path, stored: dict[str, Any], head: dict[str, Any]) -> None:
    """Raise naming the first difference between the stored header and this sweep's."""
    start = f"{path} was written for"
    hint = f"; delete {path} to start over, or use another file"
    if stored.get("kind") != head["kind"]:
        raise CheckpointError(f"{start} a {stored.get('kind')!r} run; this is a "
                              f"{head['kind']!r} run{hint}")
    old, new = stored["describes"], head["describes"]
    for name in [*new, *(k for k in old if k not in new)]:
        if name not in old or name not in new or old[name] != new[name]:
            was = _shown(old[name]) if name in old else "(none)"
            has = _shown(new[name]) if name in new else "(none)"
            raise CheckpointError(f"{start} {name} {was}; this sweep has {name} {has}{hint}")
    if stored["probes"] != head["probes"]:
        n_old, n_new = len(stored["probes"]), len(head["probes"])
        i = next((i for i, (a, b) in enumerate(zip(stored["probes"], head["probes"])) if a != b),
                 min(n_old, n_new))
        was = _shown(stored["probes"][i]) if i < n_old else "(none)"
        has = _shown(head["probes"][i]) if i < n_new else "(none)"
        raise CheckpointError(f"{start} probe {i} {was}; this sweep has probe {i} {has}{hint}")
