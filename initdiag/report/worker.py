"""A second process that draws report figures beside the main one: :class:`FigureWorker`.

Drawing a figure is matplotlib's text layout and Agg rendering: pure Python on one core, holding
the GIL, 0.3-1.3 s a figure. With a worker, the report hands the figures that need only the probe
results to it as soon as the sweep is done and computes the mean-field predictions, the diagnosis
and the Jacobian spectra meanwhile; then the two processes share the figures that are left
(:class:`initdiag.report.figures.FigureWriter`). The figures are the same bytes either way.

The worker is a *fork* of the main process: no interpreter start-up and nothing imported again
(what the main process imported is shared, copy-on-write), so it costs milliseconds rather than
the ~2 s of CPU of a fresh interpreter importing jax. A fork is only safe before JAX starts its
runtime (XLA's thread pools: a copy of a process whose other threads hold locks can deadlock), so
:meth:`FigureWorker.start` forks only on Linux and only while no JAX backend is initialized, and
returns None otherwise (the caller draws everything itself). ``initdiag report`` starts one before
it probes; from Python, :func:`initdiag.report.build.build_report` takes one (``worker=``).

The worker ignores SIGINT (Ctrl-C reaches the whole process group; the main process decides),
exits when it reads the end of its task queue or within :data:`PARENT_CHECK_S` of the main
process going away (killed), and is terminated by :meth:`FigureWorker.close` after an error or an
interruption. A task that raises in the worker
raises the same exception from :meth:`FigureWorker.result` (its traceback in the message of the
exception it is chained from); a worker that died raises :class:`WorkerGone`, after which
:meth:`FigureWorker.alive` is False and the caller draws the rest itself.
"""

from __future__ import annotations

import os
import pickle
import queue
import signal
import sys
import traceback
import warnings
from typing import Any, Callable

#: Seconds :meth:`FigureWorker.close` waits for the worker to exit before terminating it.
CLOSE_TIMEOUT_S = 5.0


class WorkerGone(RuntimeError):
    """The worker process exited (was killed, crashed) before it answered."""


class WorkerTraceback(Exception):
    """The traceback of an exception raised in the worker (its message), chained to the
    exception :meth:`FigureWorker.result` re-raises."""


def fork_is_safe() -> bool:
    """True when this process can be forked safely: on Linux, and while JAX has no initialized
    backend (no XLA runtime threads yet). Anything else, or a JAX that does not say, is False."""
    if not sys.platform.startswith("linux") or not hasattr(os, "fork"):
        return False
    try:
        from jax._src import xla_bridge

        return not xla_bridge.backends_are_initialized()
    except Exception:  # noqa: BLE001 - a JAX without this function: assume it is not safe
        return False


#: Seconds between the worker's checks that the main process is still there.
PARENT_CHECK_S = 1.0


def _serve(tasks: Any, results: Any, parent: int) -> None:
    """The worker's loop: run ``(task_id, fn, args)`` as ``fn(state, *args)`` until ``None``,
    or until the main process (pid ``parent``) is gone (killed: the worker is re-parented);
    ``state`` is a dict the tasks share (what a first task loaded for later ones)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    results.cancel_join_thread()  # exiting never waits on answers nobody reads
    state: dict[str, Any] = {}
    while True:
        try:
            item = tasks.get(timeout=PARENT_CHECK_S)
        except queue.Empty:
            if os.getppid() != parent:
                return
            continue
        except (EOFError, OSError):  # the main process went away
            return
        if item is None:
            return
        task_id, fn, args = item
        try:
            answer = (task_id, True, fn(state, *args))
        except BaseException as e:  # noqa: BLE001 - every failure goes back to the caller
            answer = (task_id, False, (_picklable(e), traceback.format_exc()))
        results.put(answer)


def _picklable(e: BaseException) -> BaseException:
    """``e`` if it survives pickling as it is, else a RuntimeError with its type and message."""
    try:
        back = pickle.loads(pickle.dumps(e))
        if str(back) == str(e) and type(back) is type(e):
            return e
    except Exception:  # noqa: BLE001
        pass
    return RuntimeError(f"{type(e).__name__}: {e}")


class FigureWorker:
    """One forked process that runs tasks ``fn(state, *args)`` in submission order
    (:meth:`submit`, :meth:`result`); module docstring. Make one with :meth:`start`."""

    def __init__(self, process: Any, tasks: Any, results: Any):
        self._process = process
        self._tasks = tasks
        self._results = results
        self._next = 0
        self._pending: set[int] = set()
        self._answers: dict[int, tuple[bool, Any]] = {}
        self._gone = False

    @classmethod
    def start(cls) -> "FigureWorker | None":
        """Fork the worker, or return None when that is not safe (:func:`fork_is_safe`), when
        this process may run on one CPU only (a second process would only take turns with it),
        or when the fork fails. Call it before anything runs on JAX (``initdiag report`` does so
        before probing)."""
        if not fork_is_safe() or len(os.sched_getaffinity(0)) < 2:
            return None
        import multiprocessing

        try:  # the queues' locks need POSIX semaphores (/dev/shm), which some systems lack
            mp = multiprocessing.get_context("fork")
            tasks, results = mp.Queue(), mp.Queue()
            process = mp.Process(target=_serve, args=(tasks, results, os.getpid()), daemon=True,
                                 name="initdiag-figures")
            with warnings.catch_warnings():  # Python >= 3.12 warns of any thread (OpenBLAS's)
                warnings.simplefilter("ignore", DeprecationWarning)
                process.start()
        except (OSError, ImportError, ValueError):
            return None
        return cls(process, tasks, results)

    @property
    def pid(self) -> int | None:
        """The worker's process id."""
        return self._process.pid

    @property
    def alive(self) -> bool:
        """False once the worker has exited, died or been closed."""
        return not self._gone and self._process.is_alive()

    def submit(self, fn: Callable[..., Any], *args: Any) -> int:
        """Queue ``fn(state, *args)`` (``fn`` a module-level function; ``args`` picklable) and
        return its task id for :meth:`result`. Does not block."""
        if self._gone:
            raise WorkerGone("the figure worker has exited")
        task_id = self._next
        self._next += 1
        self._pending.add(task_id)
        self._tasks.put((task_id, fn, args))
        return task_id

    def outstanding(self) -> int:
        """How many submitted tasks have not answered (collects the answers that arrived)."""
        self._collect(block=False)
        return len(self._pending)

    def result(self, task_id: int) -> Any:
        """Wait for task ``task_id`` and return its value, or raise its exception.

        Raises:
          WorkerGone: the worker exited before answering.
        """
        while task_id not in self._answers:
            if task_id not in self._pending:
                raise KeyError(f"no task {task_id} was submitted to the figure worker")
            self._collect(block=True)
        ok, value = self._answers.pop(task_id)
        if ok:
            return value
        exc, trace = value
        raise exc from WorkerTraceback(f"in the figure worker:\n{trace}")

    def _collect(self, block: bool) -> None:
        """Move arrived answers from the results queue to ``_answers``; with ``block``, wait for
        at least one (checking every 0.2 s that the worker is still there)."""
        while self._pending:
            try:
                task_id, ok, value = self._results.get(block=block, timeout=0.2 if block else None)
            except queue.Empty:
                if not block:
                    return
                if not self._process.is_alive():
                    self._gone = True
                    self._pending.clear()
                    raise WorkerGone(f"the figure worker exited (exit code "
                                     f"{self._process.exitcode}) before it answered") from None
                continue
            self._pending.discard(task_id)
            self._answers[task_id] = (ok, value)
            block = False

    def close(self) -> None:
        """End the worker: ask it to exit after its queued tasks, wait up to
        :data:`CLOSE_TIMEOUT_S`, then terminate it. Unanswered tasks are dropped."""
        if self._process.is_alive() and not self._gone:
            self.outstanding()  # collect what has answered: what is still pending is dropped
            try:
                self._tasks.put(None)
            except (OSError, ValueError):
                pass
            self._process.join(CLOSE_TIMEOUT_S if not self._pending else 0)
        self.terminate()

    def terminate(self) -> None:
        """Stop the worker now (after an error or an interruption)."""
        self._gone = True
        self._pending.clear()
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(CLOSE_TIMEOUT_S)
            if self._process.is_alive():
                self._process.kill()
                self._process.join()
        for q in (self._tasks, self._results):
            q.close()
            q.cancel_join_thread()  # do not wait to flush tasks nobody will read

    def __enter__(self) -> "FigureWorker":
        return self

    def __exit__(self, *exc: Any) -> None:
        if exc[0] is None:
            self.close()
        else:
            self.terminate()
