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
exits when it reads the end of its task pipe, is killed with the main process (Linux's
parent-death signal; else within :data:`PARENT_CHECK_S` once idle), and is terminated by
:meth:`FigureWorker.close` after an error or an interruption. Each side holds only its own ends
of the two pipes, so either side's death is the other's end of file, never a wait. A task that raises in the worker
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


#: Seconds between the worker's checks that the main process is still there (when idle; it is
#: also killed with the main process where Linux's parent-death signal is available).
PARENT_CHECK_S = 1.0


def _die_with(parent: int) -> None:
    """Ask Linux to SIGKILL this process when its parent exits (``prctl(PR_SET_PDEATHSIG)``), so a
    busy worker does not outlive a killed main process; then check the parent did not already
    go. Where prctl is unavailable the worker still exits when it next reads from the main
    process."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        os._exit(0)


def _serve(tasks: Any, results: Any, theirs: tuple, parent: int) -> None:
    """The worker's loop: run each ``(task_id, fn, args)`` read from ``tasks`` as
    ``fn(state, *args)`` and send ``(task_id, ok, value)`` back on ``results`` (pickled here, so
    an answer that does not pickle is sent as the error it raises), until ``None`` or the end of
    the pipe (the main process is gone); ``state`` is a dict the tasks share (what a first task
    loaded for later ones). ``theirs``: the main process's ends of the two pipes, closed here so
    that either side's exit is the other's end of file."""
    _die_with(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    for end in theirs:
        end.close()
    state: dict[str, Any] = {}
    while True:
        try:
            if not tasks.poll(PARENT_CHECK_S):
                if os.getppid() != parent:
                    return
                continue
            item = pickle.loads(tasks.recv_bytes())
        except (EOFError, OSError):  # the main process went away
            return
        if item is None:
            return
        task_id, fn, args = item
        try:
            answer = (task_id, True, fn(state, *args))
            data = pickle.dumps(answer)
        except BaseException as e:  # noqa: BLE001 - every failure goes back to the caller
            data = pickle.dumps((task_id, False, (_picklable(e), traceback.format_exc())))
        try:
            results.send_bytes(data)
        except OSError:  # the main process went away
            return


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
    (:meth:`submit`, :meth:`result`); module docstring. Make one with :meth:`start`.

    Tasks are pickled when submitted (an argument that does not pickle raises there) and written
    to the worker by a sender thread, so :meth:`submit` never blocks on a busy worker; answers are
    read by :meth:`result`. Use it from one thread at a time."""

    def __init__(self, process: Any, tasks: Any, results: Any):
        import threading

        self._process = process
        self._tasks = tasks  # this process's writing end
        self._results = results  # this process's reading end
        self._outbox: queue.Queue = queue.Queue()
        self._sender = threading.Thread(target=self._send, name="initdiag-worker-sender",
                                        daemon=True)
        self._sender.start()
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

        try:
            mp = multiprocessing.get_context("fork")
            task_in, task_out = mp.Pipe(duplex=False)  # (reading end, writing end)
            result_in, result_out = mp.Pipe(duplex=False)
            process = mp.Process(target=_serve, name="initdiag-figures", daemon=True,
                                 args=(task_in, result_out, (task_out, result_in), os.getpid()))
            with warnings.catch_warnings():  # Python >= 3.12 warns of any thread (OpenBLAS's)
                warnings.simplefilter("ignore", DeprecationWarning)
                process.start()
        except (OSError, ImportError, ValueError):
            return None
        task_in.close()  # the worker's ends: its exit is then this side's end of file
        result_out.close()
        return cls(process, task_out, result_in)

    @property
    def pid(self) -> int | None:
        """The worker's process id."""
        return self._process.pid

    @property
    def exitcode(self) -> int | None:
        """The worker's exit code once it has exited (None while it runs)."""
        return self._process.exitcode

    @property
    def alive(self) -> bool:
        """False once the worker has exited, died or been closed."""
        return not self._gone and self._process.is_alive()

    def _send(self) -> None:
        """The sender thread: write queued tasks to the worker, in order, until ``None``."""
        while True:
            data = self._outbox.get()
            if data is None:
                return
            try:
                self._tasks.send_bytes(data)
            except (OSError, ValueError):  # the worker is gone: result() will say so
                return

    def submit(self, fn: Callable[..., Any], *args: Any) -> int:
        """Queue ``fn(state, *args)`` (``fn`` a module-level function; ``args`` picklable) and
        return its task id for :meth:`result`. Does not block.

        Raises:
          WorkerGone: the worker has exited. pickle errors: for arguments that do not pickle.
        """
        if self._gone:
            raise WorkerGone("the figure worker has exited")
        task_id = self._next
        data = pickle.dumps((task_id, fn, args))
        self._next += 1
        self._pending.add(task_id)
        self._outbox.put(data)
        return task_id

    def outstanding(self) -> int:
        """How many submitted tasks have not answered (collects the answers that arrived)."""
        self._collect(block=False)
        return len(self._pending)

    def result(self, task_id: int) -> Any:
        """Wait for task ``task_id`` and return its value, or raise its exception (chained to a
        :class:`WorkerTraceback`).

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
        """Move arrived answers to ``_answers``; with ``block``, wait for at least one. The end
        of the pipe, or an answer that cannot be read, means the worker is gone."""
        while self._pending and not self._gone:
            try:
                if not self._results.poll(0.2 if block else 0):
                    if not block:
                        return
                    if self._process.is_alive():
                        continue
                    raise EOFError
                task_id, ok, value = pickle.loads(self._results.recv_bytes())
            except Exception:  # noqa: BLE001 - EOF, a broken pipe or an unreadable answer
                self._process.join(1.0)  # an exiting worker closes its pipe before it is reaped
                code = self._process.exitcode
                self.terminate()
                raise WorkerGone(f"the figure worker exited (exit code {code}) before it "
                                 f"answered") from None
            self._pending.discard(task_id)
            self._answers[task_id] = (ok, value)
            block = False

    def close(self) -> None:
        """End the worker: ask it to exit after its queued tasks, wait up to
        :data:`CLOSE_TIMEOUT_S`, then terminate it. Answers not yet read are dropped."""
        try:
            if self.alive:
                self._outbox.put(pickle.dumps(None))  # after the queued tasks
                self._process.join(CLOSE_TIMEOUT_S)
        except Exception:  # noqa: BLE001 - closing never fails the report
            pass
        finally:
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
        self._outbox.put(None)  # ends the sender thread
        for end in (self._tasks, self._results):
            try:
                end.close()
            except OSError:
                pass

    def __enter__(self) -> "FigureWorker":
        return self

    def __exit__(self, *exc: Any) -> None:
        if exc[0] is None:
            self.close()
        else:
            self.terminate()
