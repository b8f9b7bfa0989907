"""Build a report: probe a sweep, diagnose it, write figures, results and an HTML page into a
folder, atomically. The library behind ``initdiag report`` (:mod:`initdiag.cli.report`); callable
from Python without the command line.

Output folder::

    index.html          the self-contained report (open it in any browser, mail it)
    <figure>.png        one PNG per figure (initdiag.report.figures.FIGURES) that applies
    results.json        every probe result, loadable with initdiag.load()
    train_*.png         with ``train=``: the training figures (initdiag.report.train_figures)
    train.json          with ``train=``: every training run (a TrainSweep), initdiag.load()
    .initdiag-work/     while a run is unfinished: its checkpoint (checkpoint.jsonl) and the
                        report being written; removed once the report is in place

:func:`build_report` writes it; :class:`ReportFolder` makes the writing atomic (a failed or
interrupted run leaves no report behind, and an existing folder's report as it was);
:class:`WorkFolder` keeps the probes a failed or interrupted run finished, for ``--resume``;
:func:`slug` names a folder after a title (``initdiag report`` writes to
``reports/<slug of --title>``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from initdiag.fileio import atomic_write_text, umask


def slug(text: str | None) -> str:
    """Folder name from a title: lowercase letters, digits and '-' (``"default"`` if empty)."""
    s = re.sub(r"[^a-z0-9]+", "-", (text or "").lower()).strip("-")[:60].strip("-")
    return s or "default"


def check_output_folder(out: str | Path) -> Path:
    """The folder in which ``out`` is (or will be) made: ``out`` itself if it is a folder, else
    its nearest existing ancestor.

    Raises:
      ValueError: ``out`` exists and is not a folder, or that ancestor is not a folder.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"output folder {out} exists and is not a folder")
    anchor = out if out.is_dir() else out.absolute().parent
    while not anchor.exists():
        anchor = anchor.parent
    if not anchor.is_dir():
        raise ValueError(f"cannot create the output folder {out}: {anchor} is not a folder")
    return anchor


class ReportFolder:
    """Where a report is written: a hidden temporary folder, moved into place when complete.

    Created before any probing, so an output folder that cannot be written is reported at once
    (:func:`check_output_folder`). If ``out`` does not exist, the temporary folder is made in its
    nearest existing ancestor and renamed to ``out`` at the end (one atomic step). If ``out``
    exists (a folder), it is made inside it (inside its work folder :data:`WORK_FOLDER` when it
    has one) and its files are moved into ``out`` one by one (each ``os.replace`` atomic),
    ``index.html`` last, so ``out`` never holds a page without its figures; PNGs of report
    figures this run did not draw are removed. On failure the temporary folder is deleted and
    ``out`` is left as it was.
    """

    def __init__(self, out: str | Path):
        self.out = Path(out)
        anchor = check_output_folder(self.out)
        self.existed = self.out.is_dir()
        if (self.out / WORK_FOLDER).is_dir():
            anchor = self.out / WORK_FOLDER
        try:
            self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.out.name or 'report'}.partial-",
                                             dir=anchor))
        except OSError as e:
            raise OSError(f"cannot write the report to {self.out}: "
                          f"{e.strerror or e} ({anchor})") from None

    def commit(self, names: Any = ()) -> Path:
        """Move the finished report into place; ``names``: the report figures this run wrote
        (PNGs of other stack or model report figures left in an existing ``out`` are removed)."""
        from initdiag.report.figures import FIGURES
        from initdiag.report.model_figures import MODEL_FIGURES
        from initdiag.report.train_figures import TRAIN_FIGURES

        if not (self.tmp / "train.json").exists():  # no training section: drop an old one's
            names = set(names) - set(TRAIN_FIGURES)
            if self.existed:
                (self.out / "train.json").unlink(missing_ok=True)
        if not self.existed:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(self.tmp, 0o777 & ~umask())
            try:
                os.rename(self.tmp, self.out)
                return self.out
            except OSError:
                if not self.out.is_dir():  # e.g. another file system: copy, then remove
                    shutil.copytree(self.tmp, self.out)
                    shutil.rmtree(self.tmp, ignore_errors=True)
                    return self.out
        files = sorted(p.name for p in self.tmp.iterdir())  # the report's files (no folders)
        for name in sorted(files, key=lambda n: n == "index.html"):  # the page last
            os.replace(self.tmp / name, self.out / name)
        for name in dict.fromkeys([*(spec.name for spec in FIGURES), *MODEL_FIGURES,
                                   *TRAIN_FIGURES]):
            if name not in names:  # a stack or model report figure this run did not draw
                (self.out / f"{name}.png").unlink(missing_ok=True)
        self.tmp.rmdir()
        return self.out

    def discard(self) -> None:
        """Delete the temporary folder (after a failure): ``out`` stays as it was."""
        shutil.rmtree(self.tmp, ignore_errors=True)


#: The folder inside a report's output folder that holds an unfinished run's state.
WORK_FOLDER = ".initdiag-work"


class WorkFolder:
    """``<out>/.initdiag-work/``: the checkpoint of a report's sweep (:mod:`initdiag.checkpoint`),
    ``checkpoint.jsonl``, and the report being written (:class:`ReportFolder`).

    Made before probing (:meth:`create`); after the report is in place it is removed
    (:meth:`remove`); after a failure or an interruption it stays if its checkpoint holds a
    finished probe (``initdiag report --resume`` continues from it) and is removed otherwise
    (:meth:`release`), with ``out`` itself (and the parents made with it) when this run made it
    and it is left empty.
    """

    def __init__(self, out: str | Path):
        self.out = Path(out)
        self.path = self.out / WORK_FOLDER
        self.checkpoint = self.path / "checkpoint.jsonl"
        self.made: list[Path] = []  # folders made for the run: out, then missing parents
        self.created = False  # by this object's create()

    def create(self) -> "WorkFolder":
        """Make the folder (and ``out``), after checking ``out`` can be written
        (:func:`check_output_folder`)."""
        anchor = check_output_folder(self.out)
        out = self.out.absolute()
        if not self.out.exists():  # out and the missing folders above it
            self.made = [out, *[p for p in out.parents if p != anchor and anchor in p.parents]]
        elif {p.name for p in self.out.iterdir()} <= {WORK_FOLDER}:  # a former run's
            self.made = [out]
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OSError(f"cannot write the report to {self.out}: {e.strerror or e}") from None
        self.created = True
        return self

    def kept(self) -> tuple[int, int]:
        """``(k, n)``: the probes the checkpoint holds and the probes of its sweep; (0, 0) when
        there is no checkpoint (or it cannot be read)."""
        from initdiag.checkpoint import CheckpointError, count

        try:
            return count(self.checkpoint)
        except (OSError, CheckpointError):
            return 0, 0

    def remove(self) -> None:
        """Delete the folder (the run is complete, or has nothing to keep), and ``out`` and the
        parents made with it if they are now empty."""
        shutil.rmtree(self.path, ignore_errors=True)
        for folder in self.made:
            try:
                folder.rmdir()  # only if empty
            except OSError:
                break

    def release(self) -> None:
        """After a failure or an interruption: :meth:`remove` unless the checkpoint holds a
        finished probe."""
        if self.kept()[0] == 0:
            self.remove()


#: Row of the timings table for the page itself.
HTML_TIMING = "page (render + embed the PNGs; measured on a first rendering)"
#: Rows of the timings table for what the figure worker computed (its own time there, while
#: this process probed or drew).
BESIDE_TIMINGS = {
    "predictions": "theory: mean-field predictions (in a second process, during the sweep)",
    "spectra": "theory: Jacobian spectra (in a second process, during the sweep)",
    "phase": "theory: phase diagram planes (in a second process, during the sweep; cache on)",
    "diagnosis": "diagnosis (in the second process, beside the figures)"}
#: Row of the timings table for the figures when the worker computed the theory: the time from
#: the end of the sweep until all are written (a diagnosis made here after a failure included).
FIGURES_TIMING = "figures ({n} of {of} drawn in the second process; from the end of the sweep)"
#: The same with ``train=``: the figures start after the training runs and their figures
#: (:func:`initdiag.report.train_section.train_section`), not after the sweep.
FIGURES_AFTER_TRAINING_TIMING = ("figures ({n} of {of} drawn in the second process; from the end "
                                 "of the training figures)")
#: The figures row when the theory was computed here and the worker drew some figures.
SHARED_FIGURES_TIMING = "figures ({n} of {of} drawn in the second process)"
#: Row of the timings table for the whole run.
TOTAL_TIMING = "total (until the page is written)"


def build_report(kwargs: dict[str, Any], out: Path, *, title: str | None = None,
                 command: str | None = None, progress: Any = None,
                 work: WorkFolder | None = None, train: dict[str, Any] | None = None,
                 worker: Any = None):
    """Probe ``kwargs`` (for :func:`initdiag.sweep`), diagnose, write the report into ``out``.

    The folder is written atomically (:class:`ReportFolder`): on any error no report is left
    behind. ``work``: a :class:`WorkFolder` of ``out`` (made here if it is not yet): each probe
    is also appended to its checkpoint as it finishes, and probes already there (of the same
    sweep) are not run again; it is removed once the report is in place, and kept after an
    error or an interruption when it holds a finished probe (the training runs of ``train`` are
    not checkpointed). With ``train`` (arguments of :func:`initdiag.train_sweep`, e.g. from
    :func:`initdiag.report.train_data.train_kwargs`), the page also gets the training section
    (:mod:`initdiag.report.train_section`) and the folder ``train.json`` and the training PNGs.
    Timings on the page: the sweep, the diagnosis, the theory computations (mean-field
    predictions, Jacobian spectra), the figures, the page itself (the page is rendered twice:
    the second rendering shows how long the first took) and the total; the same timings are in
    ``sweep.meta["report"]["timings_s"]`` (seconds, in results.json). ``worker``: a
    :class:`initdiag.report.worker.FigureWorker` (started before anything ran on JAX) that
    computes the theory of the planned configurations while this process probes, then diagnoses
    while both draw the figures (:class:`_Beside`, :class:`initdiag.report.figures.FigureWriter`:
    the same files either way; it is terminated here after an error).

    Returns:
      (sweep, verdicts, paths): the SweepResult, its verdicts and {"html", "results", figure
      names...} -> Path.
    """
    from initdiag.jsonvalues import encode
    from initdiag.probe import sweep as run_sweep

    t0 = time.perf_counter()
    if work is not None:
        if Path(work.out).absolute() != Path(out).absolute():
            raise ValueError(f"work folder {work.path} is not {out}'s")
        if not work.created:
            work.create()
    try:
        folder = ReportFolder(out)
    except BaseException:
        if work is not None:
            work.release()
        raise
    try:
        beside = _Beside.start(worker, kwargs)
        sweep = run_sweep(**kwargs, histograms=True, progress=progress,
                          checkpoint=None if work is None else work.checkpoint)
        t_sweep = time.perf_counter() - t0
        # Plain JSON types, so the file loads back equal to this object.
        sweep.meta = json.loads(json.dumps(encode({
            "report": {"title": title, "command": command, "sweep": kwargs,
                       "sweep_s": t_sweep}}), default=str))
        timings = {"sweep (probing, incl. compilation)": t_sweep}
        section = None
        if train is not None:
            from initdiag.report import style
            from initdiag.report.data import inits
            from initdiag.report.train_section import train_section

            section = train_section(train, folder.tmp, timings=timings, progress=progress,
                                    palette=style.init_palette(inits(sweep)))
        verdicts, figs = _write_sweep_files(sweep, folder, title=title, command=command,
                                            timings=timings, t0=t0, train=section,
                                            beside=beside)
        if section is not None:
            figs = [*figs, *section["figures"]]
        final = folder.commit({f.name for f in figs if f.path is not None})
    except BaseException:
        if worker is not None:
            worker.terminate()  # before its figures could land in the folder being deleted
        folder.discard()
        if work is not None:
            work.release()
        raise
    if work is not None:
        work.remove()
    return sweep, verdicts, _paths(final, figs)


def write_sweep_report(sweep: Any, out: str | Path, *, title: str | None = None,
                       command: str | None = None):
    """Write the report of an existing ``SweepResult`` into ``out`` (atomically, as
    :func:`build_report`, without probing): diagnosis, figures, results.json, index.html.

    Returns:
      (verdicts, paths) as :func:`build_report`.
    """
    t0 = time.perf_counter()
    folder = ReportFolder(out)
    try:
        verdicts, figs = _write_sweep_files(sweep, folder, title=title, command=command,
                                            timings={}, t0=t0)
        final = folder.commit({f.name for f in figs if f.path is not None})
    except BaseException:
        folder.discard()
        raise
    return verdicts, _paths(final, figs)


def _write_sweep_files(sweep: Any, folder: ReportFolder, *, title: str | None,
                       command: str | None, timings: dict[str, float], t0: float,
                       train: dict[str, Any] | None = None, beside: "_Beside | None" = None):
    """Diagnose ``sweep`` and write results.json, the figures and index.html into
    ``folder.tmp``; ``timings`` (updated) are shown on the page, and the training section
    ``train`` (:func:`initdiag.report.train_section.train_section`) when given. With ``beside``
    (a figure worker and what it computed beside the sweep) the two processes share the work
    (:class:`_Beside`). Returns (verdicts, figures)."""
    from initdiag.analysis.diagnosis import diagnose
    from initdiag.report.figures import Context, FigureWriter
    from initdiag.report.html import render_html

    ctx = Context(sweep)
    beside = beside or _Beside(None)
    t = time.perf_counter()
    theory = beside.theory(sweep)  # the worker's, when it computed this sweep's
    writer = FigureWriter(sweep, folder.tmp, ctx=ctx, worker=beside.worker,
                          theory_in_worker=theory is not None)
    writer.start()  # returns at once
    diagnosis = beside.diagnose() if theory is not None else None
    if theory is not None:
        ctx.__dict__.update(predictions=theory["predictions"], spectra=theory["spectra"])
        timings[BESIDE_TIMINGS["predictions"]] = theory["predictions_s"]
        timings[BESIDE_TIMINGS["spectra"]] = theory["spectra_s"]
        if theory.get("phase_s") is not None:
            timings[BESIDE_TIMINGS["phase"]] = theory["phase_s"]
    else:
        ctx.predictions  # noqa: B018 (computed once, shared by the figures and the diagnosis)
        timings["theory: mean-field predictions"] = time.perf_counter() - t
        t = time.perf_counter()
        verdicts = diagnose(sweep)  # takes the predictions above from theory's cache
        timings["diagnosis"] = time.perf_counter() - t
        t = time.perf_counter()
        ctx.spectra  # noqa: B018
        timings["theory: Jacobian spectra"] = time.perf_counter() - t
        t = time.perf_counter()
    figs = writer.finish()
    if theory is not None:
        answer = beside.result(diagnosis, lambda: None) if diagnosis is not None else None
        if answer is not None:
            verdicts, timings[BESIDE_TIMINGS["diagnosis"]] = answer
        else:  # the worker failed: here
            t_d = time.perf_counter()
            verdicts = diagnose(sweep)
            timings["diagnosis"] = time.perf_counter() - t_d
    drawn = sum(f.path is not None for f in figs)
    if theory is not None:  # t: the end of the sweep, or of the training section after it
        key = (FIGURES_TIMING if train is None else FIGURES_AFTER_TRAINING_TIMING).format(
            n=len(writer.drawn_by_worker), of=drawn)
    elif writer.drawn_by_worker:  # t: the end of the theory computed here
        key = SHARED_FIGURES_TIMING.format(n=len(writer.drawn_by_worker), of=drawn)
    else:
        key = "figures"
    timings[key] = time.perf_counter() - t
    t = time.perf_counter()
    render_html(sweep, verdicts, figs, title=title, timings=timings, command=command,
                train=train)
    timings[HTML_TIMING] = time.perf_counter() - t
    timings[TOTAL_TIMING] = time.perf_counter() - t0
    page = render_html(sweep, verdicts, figs, title=title, timings=timings, command=command,
                       train=train)
    atomic_write_text(folder.tmp / "index.html", page)
    if isinstance(sweep.meta.get("report"), dict):  # the page's timings, in seconds
        sweep.meta["report"]["timings_s"] = dict(timings)
    sweep.to_json(folder.tmp / "results.json")
    return verdicts, figs


class _Beside:
    """The figure worker of a report (:mod:`initdiag.report.worker`) and what it computes beside
    the sweep (:mod:`initdiag.report.beside`): the theory of the planned probes, started before
    probing, then the diagnosis. Every answer falls back to computing here when the worker
    fails or its plan is not the sweep's (:meth:`theory` returns None)."""

    def __init__(self, worker: Any, plan: Any = None, theory_task: int | None = None):
        self.worker = worker
        self.plan = plan
        self.theory_task = theory_task

    @classmethod
    def start(cls, worker: Any, kwargs: dict[str, Any]) -> "_Beside":
        """Give ``worker`` (None: nothing to do) the theory of the sweep ``kwargs`` plans."""
        if worker is None or not worker.alive:
            return cls(None)
        from initdiag.probe import planned_records
        from initdiag.report.beside import planned, theory_task

        try:
            records = planned_records(**kwargs, histograms=True)
        except Exception:  # noqa: BLE001 - bad arguments: the sweep refuses them in its words
            records = None
        if records is None:
            return cls(worker)
        plan = planned(records)
        return cls(worker, plan, worker.submit(theory_task, plan))

    def result(self, task: int, fallback: Any) -> Any:
        """Task ``task``'s answer, or ``fallback()`` if the worker failed it."""
        try:
            return self.worker.result(task)
        except Exception:  # noqa: BLE001 - the worker's failure costs time, not the report
            return fallback()

    def theory(self, sweep: Any) -> dict[str, Any] | None:
        """The worker's :func:`~initdiag.report.beside.theory_task` answer if it is ``sweep``'s
        (:func:`~initdiag.report.beside.plan_matches`), else None."""
        from initdiag.report.beside import plan_matches

        if self.theory_task is None:
            return None
        if not plan_matches(self.plan, sweep):  # it would only compute what is not needed
            self.worker.terminate()
            self.worker = None
            return None
        return self.result(self.theory_task, lambda: None)

    def diagnose(self) -> int | None:
        """Submit the diagnosis of the sweep the worker holds; its task id (None: failed)."""
        from initdiag.report.beside import diagnose_task

        try:
            return self.worker.submit(diagnose_task)
        except Exception:  # noqa: BLE001
            return None


def _paths(final: Path, figs: Any) -> dict[str, Path]:
    paths: dict[str, Path] = {"results": final / "results.json"}
    paths.update({f.name: final / f.path.name for f in figs if f.path is not None})
    paths["html"] = final / "index.html"
    return paths
