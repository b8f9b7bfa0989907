"""``initdiag report``: probe a sweep, diagnose it and write a report folder
(:func:`initdiag.report.build.build_report`), with a progress bar and a one-screen summary.

With ``--model FILE.py:FUNCTION`` it reports on your own JAX model instead
(:func:`initdiag.model.loader.load_model`; :func:`run_model`): probed as given
(:func:`initdiag.probe_fn`) or redrawn by each of ``--inits`` x ``--seeds``
(:func:`initdiag.sweep_fn`), written by :func:`initdiag.report.api.write_model_report`.

Output folder: ``--out DIR``, by default ``reports/<slug of --title, or "default">/`` (with
``--model``: of the title or the function's name). Options can
also come from a TOML file (``--config``) whose keys are the option names (with ``_`` or ``-``);
options given on the command line win over the file.

Interruptions: every probe is appended to a checkpoint in ``DIR/.initdiag-work/`` as it finishes
(:class:`initdiag.report.build.WorkFolder`). Ctrl-C or SIGTERM exit with status 130 and one line
on stderr (how many probes were kept, and the command that resumes); a crash or SIGKILL keeps
them too. ``--resume`` continues from the checkpoint; without it a checkpoint holding a finished
probe is refused (exit status 2, saying how to resume or start over). The work folder is
removed once the report is written.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from initdiag.cli.options import (add_probe_options, check_positive, check_probe_args,
                                  config_keys, merge_config, sweep_kwargs)

DESCRIPTION = """\
Probe a sweep (default: every standard initializer x tanh, sigmoid, relu at depth 50, width 256),
diagnose each configuration (vanishing/exploding gradients, saturation, dead units, activation
collapse, symmetric init) and write a self-contained HTML report with figures, the PNGs and the
results (results.json, loadable with initdiag.load). Prints a one-screen verdict summary."""

EPILOG = """\
examples:
  initdiag report                                   the built-in default sweep
  initdiag report --activations tanh,relu --inits he_normal,'orthogonal(gain=1.2)' \\
                  --depth 100 --seeds 0,1,2 --title "deep tanh" --out my-report
  initdiag report --config sweep.toml               the same options from a TOML file
  initdiag report --model models.py:make_model      your own JAX model: make_model() returns
                                                    (fn, params, x) or (model, x)
  initdiag report --model models.py:make_model --inits he_normal,orthogonal --seeds 0,1
  initdiag report --out my-report ... --resume      continue a run stopped by Ctrl-C, SIGTERM,
                                                    an error or SIGKILL (its probes are kept in
                                                    my-report/.initdiag-work/)
  initdiag report --train 200                       also train every configuration for 200 SGD
                                                    steps on digits (depth 10, width 64 unless
                                                    --depth/--width are given)

sweep.toml:
  title = "deep tanh"
  activations = ["tanh", "relu"]        # or "tanh,relu"
  inits = ["he_normal", "orthogonal(gain=1.2)"]
  depth = 100
  seeds = [0, 1, 2]
"""

#: The report's own TOML keys (besides the probe options) -> the type of their value.
REPORT_KEYS = {"title": str, "out": str, "quiet": bool}


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``report`` subcommand to an argparse subparsers object."""
    p = subparsers.add_parser(
        "report", help="probe, diagnose and write an HTML report (the default command)",
        description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_probe_options(p)
    g = p.add_argument_group("report")
    g.add_argument("--model", default=None, metavar="FILE.py:FUNCTION",
                   help="report on your own JAX model instead of a stack: FUNCTION() in FILE.py "
                        "(imported by its path, called with no arguments) returns (fn, params, "
                        "x), fn(params, x) -> output, or (model, x); probed as given, or with "
                        "its weights redrawn by each of --inits x --seeds; only --inits and "
                        "--seeds of 'what to probe' apply (default: none, probe a stack)")
    g.add_argument("--title", default=None,
                   help="title shown on the page; also names the default output folder "
                        "(default: none; the page is titled 'initdiag report')")
    g.add_argument("--out", default=None, metavar="DIR",
                   help="output folder (default: reports/<slug of the title, or 'default'>)")
    g.add_argument("--config", default=None, metavar="FILE.toml",
                   help=f"read options from a TOML file; keys: "
                        f"{', '.join(config_keys(REPORT_KEYS))} (default: none; options given "
                        f"on the command line win)")
    g.add_argument("--no-cache", action="store_true",
                   help="do not use the persistent compilation cache (default: on, in "
                        "$INITDIAG_CACHE_DIR, else $XDG_CACHE_HOME/initdiag or ~/.cache/initdiag; "
                        "INITDIAG_CACHE_DIR= empty also turns it off)")
    g.add_argument("--resume", action="store_true",
                   help="continue an interrupted run (Ctrl-C, SIGTERM, a crash, SIGKILL) of the "
                        "same report from its checkpoint in DIR/.initdiag-work/, without running "
                        "the probes it finished again (default: off; without it an existing "
                        "checkpoint is refused with exit status 2)")
    g.add_argument("--quiet", action="store_true",
                   help="no progress bar and no summary (errors still go to stderr; default: "
                        "a progress bar on a terminal and the summary)")
    t = p.add_argument_group("training")
    t.add_argument("--train", type=int, default=None, metavar="STEPS",
                   help="also train each configuration (activations x inits x seeds, the norm "
                        "and stack options) for STEPS SGD steps (lr 0.1, batch 128 unless "
                        "--batch) on scikit-learn's digits at depth 10, width 64 unless --depth "
                        "/ --width are given, and add a training section: loss curves, "
                        "update:data ratios, profiles before and after, each configuration's "
                        "step-0 verdict beside its outcome, and the unhealthy initializers with "
                        "BatchNorm / LayerNorm; writes train.json (needs initdiag[train]; "
                        "default: no training)")
    p.set_defaults(func=run)
    return p


class _Progress:
    """A rich progress bar on stderr when it is a terminal; nothing otherwise. ``already``:
    the probes restored from a checkpoint, shown as done from the start. After each probe it
    raises an interruption that ``interrupts`` recorded but could not deliver."""

    def __init__(self, enabled: bool, total: int, already: int = 0,
                 interrupts: "Interrupts | None" = None):
        self.interrupts = interrupts
        self.bar = None
        self.task = None
        self.already = already
        if enabled:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                       TimeElapsedColumn)

            self.bar = Progress(TextColumn("probing"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), TextColumn("{task.description}"),
                                console=Console(stderr=True), transient=True)
            self.total = total

    def __enter__(self):
        if self.bar is not None:
            self.bar.__enter__()
            start = f"{self.already} of {self.total} already done; " if self.already else ""
            self.task = self.bar.add_task(start + "compiling", total=self.total,
                                          completed=self.already)
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def __call__(self, done: int, total: int, result: Any) -> None:
        if self.interrupts is not None:
            self.interrupts.check()
        if self.bar is None:
            return
        text = result.label if done < total else "writing the report"
        if self.already:
            text = f"{self.already} of {total} already done; {text}"
        self.bar.update(self.task, completed=done, total=total, description=text)


def _print_summary(verdicts, header: str, footer: str) -> None:
    from rich.console import Console
    from rich.text import Text

    from initdiag.report.summary import text_summary

    styles = {"healthy": "green", "vanishing": "blue", "exploding": "red",
              "collapse": "magenta", "saturation": "yellow", "dead": "bright_black",
              "symmetric": "bright_black"}
    text = Text()
    for piece, kind in text_summary(verdicts, header):
        text.append(piece, style=styles.get(kind, "") if kind else "")
    text.append(footer + "\n")
    Console(highlight=False, soft_wrap=True).print(text, end="")


class Terminated(KeyboardInterrupt):
    """SIGTERM received during ``initdiag report``: handled as Ctrl-C is."""


class Interrupts:
    """Ctrl-C (SIGINT) and SIGTERM during ``initdiag report``, made reliable.

    Python runs a signal handler between bytecodes of whatever code is running in the main
    thread, and an exception it raises inside a garbage-collection callback (jax registers one)
    or a ``__del__`` method is printed as "Exception ignored in ..." and dropped: the run would go
    on as if the key had not been pressed. So the handler records the signal, raises at once
    unless it interrupts such a finalizer, and :meth:`check` (called after every probe) raises
    a signal that was recorded but not delivered. ``received`` is the signal number, or None.
    """

    def __init__(self) -> None:
        self.received: int | None = None

    def handler(self, signum: int, frame: Any) -> None:
        self.received = signum
        if not _in_finalizer(frame):
            raise self.exception()

    def exception(self) -> KeyboardInterrupt:
        return Terminated() if self.received == signal.SIGTERM else KeyboardInterrupt()

    def check(self) -> None:
        """Raise the interruption recorded by :meth:`handler`, if there is one."""
        if self.received is not None:
            raise self.exception()


def _in_finalizer(frame: Any) -> bool:
    """Whether ``frame`` runs (inside) a garbage-collection callback or a ``__del__`` method,
    where a raised exception would be dropped."""
    import gc

    callbacks = {getattr(cb, "__code__", None) for cb in gc.callbacks}
    while frame is not None:
        if frame.f_code in callbacks or frame.f_code.co_name == "__del__":
            return True
        frame = frame.f_back
    return False


@contextlib.contextmanager
def _interrupts() -> Iterator[Interrupts]:
    """Within: SIGINT and SIGTERM are handled by an :class:`Interrupts` (the previous handlers
    are restored after). Outside the main thread (no signal handlers there), the state is
    inert."""
    state = Interrupts()
    if threading.current_thread() is not threading.main_thread():
        yield state
        return
    previous = {sig: signal.signal(sig, state.handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield state
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run(args: argparse.Namespace) -> int:
    """Run ``initdiag report``: exit status 0, 130 when interrupted by Ctrl-C or SIGTERM (one
    line on stderr: the probes kept and how to resume; bad input raises ValueError, TypeError or
    OSError: exit status 2)."""
    import shlex

    from initdiag.checkpoint import CheckpointError
    from initdiag.engine import cache as compile_cache
    from initdiag.report.build import WorkFolder, slug

    command = "initdiag " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    work = None
    with _interrupts() as interrupts:
        try:
            if getattr(args, "no_cache", False):
                compile_cache.disable()
            else:
                compile_cache.enable()
            args = merge_config(args, REPORT_KEYS)
            if getattr(args, "train", None) is not None:
                check_positive(args, ("train",))
                if args.model:
                    raise ValueError("--train trains the stacks of a sweep; it does not apply "
                                     "with --model (train a model from Python with "
                                     "initdiag.train_fn)")
            if args.model:
                from initdiag.model.loader import split_spec

                _, func = split_spec(args.model)
                out = Path(args.out) if args.out else Path("reports") / slug(args.title or func)
            else:
                out = Path(args.out) if args.out else Path("reports") / slug(args.title)
            work = WorkFolder(out)
            summary = (run_model if args.model else run_stack)(args, command, work, interrupts)
        except KeyboardInterrupt:
            print(_interrupted(work, command), file=sys.stderr)
            return 130
        except CheckpointError:
            raise
        except BaseException as e:  # a failure after probing began: say what was kept
            kept = _kept(work, command) if work is not None and work.created else None
            if kept is None:
                raise
            if not isinstance(e, (ValueError, TypeError, OSError)):
                print(f"initdiag: {kept}", file=sys.stderr)
                raise
            print(f"initdiag: error: {e}\ninitdiag: {kept}", file=sys.stderr)
            return 2
    if not args.quiet:
        summary()
    return 0


def _kept(work: Any, command: str) -> str | None:
    """``k of n probes kept in FILE; resume with: COMMAND --resume``, or None if none is."""
    k, n = work.kept()
    if k == 0:
        return None
    resume = command if " --resume" in f" {command} " else f"{command} --resume"
    return f"{k} of {n} probes kept in {work.checkpoint}; resume with: {resume}"


def _interrupted(work: Any, command: str) -> str:
    """The one line printed on an interruption: what was kept and how to resume."""
    kept = _kept(work, command) if work is not None else None
    if kept is None:
        return "initdiag: interrupted; no report written, no probe finished"
    return f"initdiag: interrupted; no report written; {kept}"


def _start(work: Any, resume: bool, quiet: bool, total: int) -> int:
    """Check the work folder before probing: a checkpoint with a finished probe is refused
    without ``--resume`` (one with none is removed: nothing to lose); returns the probes it
    holds (``k of n already done`` is said on stderr unless ``quiet``). A checkpoint that is not
    one, or is corrupt, raises :class:`initdiag.checkpoint.CheckpointError` (never deleted)."""
    from initdiag.checkpoint import count

    k, n = count(work.checkpoint) if work.checkpoint.is_file() else (0, 0)
    if work.checkpoint.is_file() and k == 0 and not resume:
        work.remove()
    if k and not resume:
        raise ValueError(f"{work.checkpoint} holds {k} of {n} probes of an interrupted run; "
                         f"pass --resume to continue it, or delete {work.path} (or use another "
                         f"--out) to start over")
    if resume and not quiet:
        print(f"initdiag: resuming: {k} of {n or total} probes already done ({work.checkpoint})"
              if work.checkpoint.is_file() else
              f"initdiag: nothing to resume in {work.path}; starting from the beginning",
              file=sys.stderr)
    return k


@contextlib.contextmanager
def _figure_worker() -> Iterator[Any]:
    """A :class:`initdiag.report.worker.FigureWorker` for the report (None where a fork is not
    safe), warming up its fonts while this process probes; closed on the way out (terminated
    after an error or an interruption)."""
    from initdiag.report.figures import warm_up
    from initdiag.report.worker import FigureWorker

    worker = FigureWorker.start()
    if worker is None:
        yield None
        return
    with worker:
        worker.submit(warm_up)
        yield worker


def run_stack(args: argparse.Namespace, command: str, work: Any,
              interrupts: Interrupts | None = None) -> Callable[[], None]:
    """``initdiag report`` of a stack sweep into ``work.out``: probe (checkpointed in ``work``),
    diagnose, write the report; returns the function that prints the summary."""
    from initdiag.report.build import build_report

    t0 = time.perf_counter()
    check_probe_args(args)
    kwargs = sweep_kwargs(args)
    train = None
    if getattr(args, "train", None) is not None:
        from initdiag.report.train_data import train_kwargs

        train = train_kwargs(kwargs, args.train, depths=args.depth, widths=args.width,
                             batch=args.batch)
    show = not args.quiet and sys.stderr.isatty()
    total = 1
    for key in ("activations", "inits", "depths", "widths", "seeds"):
        total *= len(kwargs[key])
    already = _start(work, args.resume, args.quiet, total)
    work.create()
    with _figure_worker() as worker, _Progress(show, total, already, interrupts) as progress:
        sweep, verdicts, paths = build_report(kwargs, work.out, title=args.title,
                                              command=command, progress=progress,
                                              work=work, train=train, worker=worker)
    seconds = time.perf_counter() - t0

    def summary() -> None:
        from initdiag.report.summary import setup_text

        header = (f"initdiag report: {len(verdicts)} configurations, {len(sweep)} probes "
                  f"({setup_text(sweep)})")
        footer = (f"report: {paths['html']}  (results: {paths['results'].name}, "
                  f"{len(paths) - 2} figures; {seconds:.1f} s)")
        if train is not None:
            import initdiag
            from initdiag.report.train_data import outcome_text

            footer = (outcome_text(initdiag.load(Path(paths["html"]).parent / "train.json"))
                      + "\n" + footer)
        _print_summary(verdicts, header, footer)
    return summary


#: The probe options that apply with ``--model`` (argparse dests); the others are refused.
MODEL_KEYS = ("inits", "seeds")


def check_model_args(args: argparse.Namespace) -> None:
    """With ``--model``, reject the stack options that do not apply (only ``--inits`` and
    ``--seeds`` do), naming the first one given."""
    from initdiag.cli.options import probe_keys

    for key in probe_keys():
        if key in MODEL_KEYS:
            continue
        value = getattr(args, key, None)
        if value is not None and value is not False:
            raise ValueError(f"--{key.replace('_', '-')} does not apply with --model (a model "
                             f"report takes --inits and --seeds only)")


def probe_model(loaded: Any, inits: list | None, seeds: list[int] | None, *,
                checkpoint: Any = None, progress: Any = None):
    """A ``ModelSweep`` of ``loaded`` (:func:`initdiag.model.loader.load_model`): ``sweep_fn``
    over inits x seeds with ``inits``, else ``probe_fn`` of the weights as given, once per seed
    (the seed draws the projection loss's readout; default seed 0;
    :func:`initdiag.model.api.probe_seeds`); ``checkpoint`` and ``progress`` as there."""
    import initdiag
    from initdiag.model.api import probe_seeds

    seeds = list(seeds) if seeds else [0]
    if inits:
        return initdiag.sweep_fn(loaded.fn, loaded.params, loaded.x, inits=list(inits),
                                 seeds=seeds, layout=loaded.layout, name=loaded.name,
                                 checkpoint=checkpoint, progress=progress)
    return probe_seeds(loaded.fn, loaded.params, loaded.x, seeds, name=loaded.name,
                       checkpoint=checkpoint, progress=progress)


def run_model(args: argparse.Namespace, command: str, work: Any,
              interrupts: Interrupts | None = None) -> Callable[[], None]:
    """``initdiag report --model ...`` into ``work.out``: load, probe (checkpointed in
    ``work``), write the report; returns the function that prints the summary."""
    from initdiag.model.loader import load_model
    from initdiag.report.api import write_model_report

    t0 = time.perf_counter()
    check_model_args(args)
    total = len(args.inits or [None]) * len(args.seeds or [0])
    already = _start(work, args.resume, args.quiet, total)
    loaded = load_model(args.model)
    work.create()
    try:
        with _Progress(not args.quiet and sys.stderr.isatty(), total, already,
                       interrupts) as progress:
            sweep = probe_model(loaded, args.inits, args.seeds, checkpoint=work.checkpoint,
                                progress=progress)
        paths = write_model_report(sweep, work.out, title=args.title, command=command)
    except BaseException:
        work.release()
        raise
    work.remove()
    seconds = time.perf_counter() - t0

    def summary() -> None:
        first = sweep[0]
        print(f"initdiag report: model {loaded.name}, {len(first.sites)} sites, "
              f"{len(first.param_rows)} parameter leaves, {len(sweep)} probes")
        print(f"report: {paths['html']}  (results: {paths['results'].name}, "
              f"{len(paths) - 2} figures; {seconds:.1f} s)")
    return summary
