"""``initdiag report --model FILE.py:FUNCTION``: report on your own JAX model.

The file is imported by its path (its folder is put first on ``sys.path`` while it is imported
and the function runs, so it may import its neighbours) and ``FUNCTION()`` is called with no
arguments. It returns either ``(fn, params, x)`` (``fn(params, x) -> output``, as for
:func:`initdiag.probe_fn`) or ``(model, x)``, a framework's model object adapted by
``initdiag.model.frameworks.adapt(model, x)`` (when this version of initdiag has it).

Without ``--inits`` the weights are probed as returned (:func:`initdiag.probe_fn`, once per
``--seeds`` value: the seed draws the projection loss's readout); with ``--inits`` every weight
leaf is redrawn by each initializer x seed (:func:`initdiag.sweep_fn`). The report is
:func:`initdiag.report.api.write_model_report`'s folder (index.html, PNGs, results.json).

A bad ``--model`` value (no ``:``, no such file, no such function, a file that fails to import,
a function that returns something else) is a ValueError or TypeError naming it: exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import sys
import time
from pathlib import Path
from typing import Any, Iterator, NamedTuple

EXAMPLE = "models.py:make_model"
#: The stack options that do not apply to ``--model`` (argparse dests): everything but the
#: initializers and seeds.
SHARED_KEYS = ("inits", "seeds")


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
        ``(model, x)`` without ``initdiag.model.frameworks``.
      TypeError: ``FUNCTION`` is not callable or returns something else.
    """
    path, name = split_spec(spec)
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
        made = make()
    label = f"{path.name}:{name}"
    if isinstance(made, tuple) and len(made) == 3 and callable(made[0]):
        fn, params, x = made
        return LoadedModel(fn, params, x, "auto", label)
    if isinstance(made, tuple) and len(made) == 2:
        model, x = made
        if importlib.util.find_spec("initdiag.model.frameworks") is None:
            raise ValueError(f"--model {spec!r}: {name}() returned (model, x), but this version "
                             f"of initdiag cannot adapt model objects (no "
                             f"initdiag.model.frameworks); return (fn, params, x) instead, with "
                             f"fn(params, x) -> output")
        from initdiag.model.frameworks import adapt

        adapted = adapt(model, x)
        return LoadedModel(adapted.fn, adapted.params, x,
                           getattr(adapted, "layout", "auto") or "auto", label)
    got = (f"a tuple of {len(made)}" if isinstance(made, tuple) else type(made).__name__)
    raise TypeError(f"--model {spec!r}: {name}() returned {got}; expected (fn, params, x) with "
                    f"fn(params, x) -> output, or (model, x)")


def check_model_args(args: argparse.Namespace) -> None:
    """With ``--model``, reject the stack options that do not apply (only ``--inits`` and
    ``--seeds`` do), naming the first one given."""
    from initdiag.cli.options import probe_keys

    for key in probe_keys():
        if key in SHARED_KEYS:
            continue
        value = getattr(args, key, None)
        if value is not None and value is not False:
            raise ValueError(f"--{key.replace('_', '-')} does not apply with --model (a model "
                             f"report takes --inits and --seeds only)")


def probe_model(loaded: LoadedModel, inits: list | None, seeds: list[int] | None):
    """A ``ModelSweep``: ``sweep_fn`` over inits x seeds with ``inits``, else ``probe_fn`` of the
    weights as given, once per seed (default seed 0)."""
    import initdiag
    from initdiag.model.result import ModelSweep

    seeds = list(seeds) if seeds else [0]
    if inits:
        if importlib.util.find_spec("initdiag.model.reinit") is None:
            raise ValueError("--inits with --model redraws the model's weights, which needs "
                             "initdiag.model.reinit; this version of initdiag does not have it "
                             "(leave out --inits to probe the weights as given)")
        return initdiag.sweep_fn(loaded.fn, loaded.params, loaded.x, inits=list(inits),
                                 seeds=seeds, layout=loaded.layout, name=loaded.name)
    return ModelSweep([initdiag.probe_fn(loaded.fn, loaded.params, loaded.x, seed=s,
                                         name=loaded.name) for s in seeds])


def run_model(args: argparse.Namespace, command: str) -> int:
    """``initdiag report --model ...``: load, probe, write the report; exit status 0."""
    from initdiag.report.api import write_model_report
    from initdiag.report.build import slug

    t0 = time.perf_counter()
    check_model_args(args)
    _, func = split_spec(args.model)
    out = Path(args.out) if args.out else Path("reports") / slug(args.title or func)
    loaded = load_model(args.model)
    sweep = probe_model(loaded, args.inits, args.seeds)
    paths = write_model_report(sweep, out, title=args.title, command=command)
    if not args.quiet:
        first = sweep[0]
        print(f"initdiag report: model {loaded.name}, {len(first.sites)} sites, "
              f"{len(first.param_rows)} parameter leaves, {len(sweep)} probes")
        print(f"report: {paths['html']}  (results: {paths['results'].name}, "
              f"{len(paths) - 2} figures; {time.perf_counter() - t0:.1f} s)")
    return 0
