"""Load a model from ``FILE.py:FUNCTION`` (``initdiag report --model``): :func:`load_model`.

The file is imported by its path (its folder is put first on ``sys.path`` while it is imported
and the function runs, so it may import its neighbours) and ``FUNCTION()`` is called with no
arguments. It returns either ``(fn, params, x)`` (``fn(params, x) -> output``, as for
:func:`initdiag.probe_fn`) or ``(model, x)``, a framework's model object adapted by
``initdiag.model.frameworks.adapt(model, x)``.

A bad spec (no ``:``, no such file, no such function, a file that fails to import, a function
that returns something else) is a ValueError or TypeError whose message quotes it as the
command line's ``--model '...'``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from pathlib import Path
from typing import Any, Iterator, NamedTuple

EXAMPLE = "models.py:make_model"
class LoadedModel(NamedTuple):
    """What ``FUNCTION()`` gave: ``fn(params, x)``, ``params``, ``x``, the weight ``layout``
    (``"auto"`` unless a framework adapter says otherwise) and a display ``name``."""

    fn: Any
    params: Any
    x: Any
    layout: Any
    name: str


def split_spec(spec: str) -> tuple[Path, str]:
    """``"path/to/file.py:make_model"`` -> (Path, "make_model"); the last ``:`` separates.

    Raises:
      ValueError: no ``:``, or an empty file or function part (the message quotes ``spec``).
    """
    path, sep, name = str(spec).rpartition(":")
    if not sep or not path or not name.strip():
        raise ValueError(f"--model {spec!r}: expected FILE.py:FUNCTION, e.g. {EXAMPLE}")
    if not name.isidentifier():
        raise ValueError(f"--model {spec!r}: {name!r} is not a function name; expected "
                         f"FILE.py:FUNCTION, e.g. {EXAMPLE}")
    return Path(path), name


@contextlib.contextmanager
def _first_on_path(folder: Path) -> Iterator[None]:
    entry = str(folder)
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(entry)


def load_model(spec: str) -> LoadedModel:
    """Import ``FILE.py`` by path, call ``FUNCTION()`` and unpack what it returns.

    Raises:
      ValueError: a bad spec, no such file, an import that fails, no such function, or
        ``(model, x)`` that :func:`initdiag.model.frameworks.adapt` does not accept.
      TypeError: ``FUNCTION`` is not callable or returns something else.
    """
    path, name = split_spec(spec)
    if path.is_dir():
        raise ValueError(f"--model {spec!r}: {str(path)!r} is a folder; expected FILE.py:FUNCTION, "
                         f"e.g. {EXAMPLE}")
    if not path.is_file():
        raise ValueError(f"--model {spec!r}: no such file {str(path)!r}")
    module_name = f"_initdiag_model_{abs(hash(str(path.resolve())))}"
    mod_spec = importlib.util.spec_from_file_location(module_name, path)
    if mod_spec is None or mod_spec.loader is None:
        raise ValueError(f"--model {spec!r}: cannot import {str(path)!r} as a Python file")
    module = importlib.util.module_from_spec(mod_spec)
    with _first_on_path(path.resolve().parent):
        try:
            mod_spec.loader.exec_module(module)
        except Exception as e:
            raise ValueError(f"--model {spec!r}: importing {str(path)!r} failed: "
                             f"{type(e).__name__}: {e}") from e
        if not hasattr(module, name):
            public = sorted(k for k, v in vars(module).items()
                            if callable(v) and not k.startswith("_")
                            and getattr(v, "__module__", None) == module_name)
            raise ValueError(f"--model {spec!r}: {str(path)!r} has no function {name!r}"
                             + (f"; its functions: {', '.join(public)}" if public else ""))
        make = getattr(module, name)
        if not callable(make):
            raise TypeError(f"--model {spec!r}: {name!r} in {str(path)!r} is a "
                            f"{type(make).__name__}, not a function")
        try:
            made = make()
        except Exception as e:  # the user's code: one line naming it, as for its import
            raise ValueError(f"--model {spec!r}: calling {name}() failed: "
                             f"{type(e).__name__}: {e}") from e
    label = f"{path.name}:{name}"
    if isinstance(made, tuple) and len(made) == 3 and callable(made[0]):
        fn, params, x = made
        return LoadedModel(fn, params, x, "auto", label)
    if isinstance(made, tuple) and len(made) == 2:
        model, x = made
        from initdiag.model.frameworks import adapt

        adapted = adapt(model, x)
        return LoadedModel(adapted.fn, adapted.params, x, adapted.layout, label)
    got = (f"a tuple of {len(made)}" if isinstance(made, tuple) else type(made).__name__)
    raise TypeError(f"--model {spec!r}: {name}() returned {got}; expected (fn, params, x) with "
                    f"fn(params, x) -> output, or (model, x)")
