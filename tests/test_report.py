"""Report: plot panels (artists, not pixels), figures, HTML and the ``initdiag report`` CLI."""

import html as htmllib
import importlib
import os
import pty
import re
import shlex
import shutil
import subprocess
import sys
import threading

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.collections import FillBetweenPolyCollection, QuadMesh
from matplotlib.patches import StepPatch
from PIL import Image

import initdiag
from initdiag import cli
from initdiag.report import build, data, figures, layout, plots, style

matplotlib.use("Agg")

INITS = ["he_normal", "glorot_normal", "zeros"]
SMALL = dict(activations=["tanh", "relu"], inits=INITS, depths=[8], widths=[16], seeds=[0, 1],
             batch=8)


@pytest.fixture(scope="module")
def sweep2():
    """Two seeds, with histograms."""
    return initdiag.sweep(**SMALL, histograms=True)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _lines(ax):
    return [l for l in ax.lines if not l.get_label().startswith("_")]


def _bands(ax):
    return [c for c in ax.collections if isinstance(c, FillBetweenPolyCollection)]


@pytest.mark.parametrize("fn, metric", [(plots.plot_act_var, "act_var"),
                                        (plots.plot_grad_rms, "grad_preact_rms"),
                                        (plots.plot_grad_weight_ratio, "grad_weight_ratio")])
def test_line_panels_one_line_per_init_log_y_and_seed_band(sweep2, fn, metric):
    fig, ax = plt.subplots()
    assert fn(sweep2, activation="tanh", ax=ax) is ax
    assert ax.get_yscale() == "log"
    assert sorted(l.get_label() for l in _lines(ax)) == sorted(INITS)
    # Band with 2 seeds for every init that is not 0 everywhere; line = median over seeds.
    assert len(_bands(ax)) == 3
    line = {l.get_label(): l for l in _lines(ax)}["he_normal"]
    a, b = (r[metric] for r in sweep2.select(activation="tanh", init="he_normal"))
    np.testing.assert_allclose(line.get_ydata(), (a + b) / 2, rtol=1e-12)
    np.testing.assert_array_equal(line.get_xdata(), np.arange(1, 9))
    # The band spans exactly min..max over the seeds (its outline holds both curves).
    band = _bands(ax)[0]  # drawn in the data's order: he_normal first
    verts = band.get_paths()[0].vertices
    ys = set(np.round(verts[:, 1], 12))
    assert set(np.round(np.minimum(a, b), 12)) <= ys and set(np.round(np.maximum(a, b), 12)) <= ys


def test_single_seed_has_no_band_and_frame_input_matches(sweep2):
    one = sweep2.select(seed=0)
    fig, (ax1, ax2) = plt.subplots(1, 2)
    plots.plot_grad_rms(one, activation="relu", ax=ax1)
    plots.plot_grad_rms(one.to_frame(), activation="relu", ax=ax2)
    assert _bands(ax1) == [] and len(_lines(ax1)) == 3
    for l1, l2 in zip(_lines(ax1), _lines(ax2)):
        np.testing.assert_array_equal(l1.get_ydata(), l2.get_ydata())


def test_same_init_same_colour_everywhere(sweep2):
    fig, axes = plt.subplots(1, 4)
    plots.plot_act_var(sweep2, activation="tanh", ax=axes[0])
    plots.plot_grad_weight_ratio(sweep2, activation="relu", ax=axes[1])
    plots.plot_saturation(sweep2, activation="relu", ax=axes[2])
    palette = style.init_palette(INITS)  # a subset keeps its colours with a shared palette
    plots.plot_grad_rms(sweep2.select(init="zeros"), activation="relu", ax=axes[3],
                        palette=palette)
    colours = {}
    for ax in axes:
        for l in _lines(ax):
            colours.setdefault(l.get_label(), set()).add(matplotlib.colors.to_hex(l.get_color()))
    assert all(len(c) == 1 for c in colours.values()), colours
    assert style.init_palette(["b", "a", "c"]) == style.init_palette(["c", "b", "a"])
    assert len({s for s in style.init_palette([f"i{k}" for k in range(14)]).values()}) == 14


def test_saturation_panel_picks_metric_by_activation(sweep2):
    fig, (ax1, ax2) = plt.subplots(1, 2)
    plots.plot_saturation(sweep2, activation="tanh", ax=ax1)
    plots.plot_saturation(sweep2, activation="relu", ax=ax2)
    assert ax1.get_yscale() == "linear" and len(_lines(ax1)) == 3
    # ReLU: zero fraction (labelled) and dead-unit fraction (dotted, unlabelled) per init.
    assert len(_lines(ax2)) == 3 and len(ax2.lines) == 6
    assert sum(l.get_linestyle() == ":" for l in ax2.lines) == 3
    zeros_line = {l.get_label(): l for l in _lines(ax2)}["zeros"]
    np.testing.assert_array_equal(zeros_line.get_ydata(), 1.0)  # phi(0) = 0 everywhere


def test_histogram_panel_one_step_per_layer_fractions_sum_to_one(sweep2):
    fig, ax = plt.subplots()
    sub = sweep2.select(activation="tanh", init="he_normal")
    assert plots.plot_act_hist(sub, layers=[1, 4, 8], ax=ax) is ax
    steps = [p for p in ax.patches if isinstance(p, StepPatch)]
    assert [s.get_label() for s in steps] == ["layer 1", "layer 4", "layer 8"]
    for s in steps:
        assert np.nansum(s.get_data().values) == pytest.approx(1.0)
    assert ax.get_yscale() == "log"
    with pytest.raises(ValueError, match="select one configuration"):
        plots.plot_act_hist(sweep2, ax=ax)
    with pytest.raises(TypeError, match="no histograms"):
        plots.plot_act_hist(sub.to_frame(), ax=ax)
    with pytest.raises(ValueError, match=r"outside 1\.\.8"):
        plots.plot_act_hist(sub, layers=[9], ax=ax)


def test_heatmap_log10_grad_rms_with_zero_cells_masked(sweep2):
    fig, ax = plt.subplots()
    plots.plot_grad_heatmap(sweep2, activation="tanh", ax=ax)
    (mesh,) = [c for c in ax.collections if isinstance(c, QuadMesh)]
    arr = mesh.get_array().reshape(3, 8)
    a, b = (r["grad_preact_rms"] for r in sweep2.select(activation="tanh", init="glorot_normal"))
    np.testing.assert_allclose(arr[INITS.index("glorot_normal")], np.log10((a + b) / 2))
    assert np.ma.getmaskarray(arr)[INITS.index("zeros"), :-1].all()  # exactly-zero gradient
    assert [t.get_text() for t in ax.get_yticklabels()] == INITS


def test_panel_errors_name_the_choices(sweep2):
    with pytest.raises(ValueError, match="several activations.*tanh, relu"):
        plots.plot_act_var(sweep2)
    with pytest.raises(ValueError, match="present: tanh, relu"):
        plots.plot_act_var(sweep2, activation="gelu")
    with pytest.raises(ValueError, match="unknown figure 'x'; choose from act_var"):
        figures.draw_figure("x", sweep2)


def _panel_grid(name, sweep):
    """(columns, rows, inner width, inner height) in inches of report figure ``name``: the
    plotting areas, whose sizes are fixed; the figure adds the measured text around them."""
    n_act = len({r.config["activation"] for r in sweep})
    n_rows = len(data.hist_rows(sweep))
    if name == "act_hist":
        return n_act, n_rows, n_act * layout.HIST_W, n_rows * layout.HIST_H
    if name == "grad_heatmap":
        return n_act, 1, n_act * layout.HEAT_W + layout.CBAR_W, max(
            1.2, layout.HEAT_ROW_H * len({r.config["init"] for r in sweep}))
    if name == "phase_diagram":
        return n_act, 1, n_act * layout.PANEL_W + layout.CBAR_W, layout.PANEL_H
    return n_act, 1, n_act * layout.PANEL_W, layout.PANEL_H


def _check_png_size(path, size, name, sweep):
    """The PNG has the recorded size, at least the panels' area and at most that plus the text
    around them: per column <= 1.6 in (tick labels and a y label, row labels wrapped to 24
    characters), <= 3.5 in for a legend on the right (entries wrapped to 24 characters), per
    row <= 0.5 in and 3 in for the title, column titles, x labels and notes below a panel."""
    with Image.open(path) as im:
        im.load()
        assert im.format == "PNG"
        assert im.size == size
    cols, rows, w, h = _panel_grid(name, sweep)
    dpi = layout.DPI
    assert w * dpi <= size[0] <= (w + 1.6 * cols + 3.5) * dpi, (name, size)
    assert h * dpi <= size[1] <= (h + 0.5 * rows + 3.0) * dpi, (name, size)


def test_figures_written_at_measured_pixel_size(sweep2, tmp_path):
    written = figures.write_figures(sweep2, tmp_path)
    assert [w.name for w in written] == [f.name for f in figures.FIGURES]
    for w in written:
        assert w.skipped is None and w.path == tmp_path / f"{w.name}.png"
        _check_png_size(w.path, w.size, w.name, sweep2)
        assert w.path.stat().st_size <= 300_000
        assert "=" in w.caption  # states a definition


def _py(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "initdiag", *args], capture_output=True,
                          text=True, cwd=cwd)


def _run_with_terminal_stderr(args):
    """Run the CLI with stdout piped and stderr on a pseudo-terminal; (code, stdout, stderr)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "initdiag", *args], stdout=subprocess.PIPE,
                            stderr=slave, text=True)
    os.close(slave)
    chunks = []

    def drain():
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)

    reader = threading.Thread(target=drain)
    reader.start()
    with proc.stdout:
        out = proc.stdout.read()
    code = proc.wait()
    reader.join(timeout=30)
    os.close(master)
    return code, out, b"".join(chunks).decode("utf-8", "replace")


def test_cli_end_to_end(tmp_path):
    out = tmp_path / "rep"
    code, stdout, stderr = _run_with_terminal_stderr(
        ["report", "--activations", "tanh,relu", "--inits", "he_normal,zeros", "--depth", "6",
         "--width", "8", "--batch", "8", "--seeds", "0,1", "--out", str(out)])
    assert code == 0, stderr
    assert "probing" in stderr and "/8" in stderr  # a progress bar on the terminal
    names = {f.name for f in figures.FIGURES}
    assert {q.name for q in out.iterdir()} == {"index.html", "results.json"} | {
        f"{n}.png" for n in names}
    loaded = initdiag.load(out / "results.json")
    fresh = initdiag.sweep(activations=["tanh", "relu"], inits=["he_normal", "zeros"],
                           depths=[6], widths=[8], batch=8, seeds=[0, 1], histograms=True)
    assert len(loaded) == len(fresh) == 8
    for a, b in zip(loaded, fresh):
        assert a.config == b.config and a.seed == b.seed
        for m in a.metrics:
            np.testing.assert_array_equal(a[m], b[m], err_msg=m)
        for k in a.histograms:
            np.testing.assert_array_equal(a.histograms[k], b.histograms[k], err_msg=k)
    page = (out / "index.html").read_text(encoding="utf-8")
    for n in names:
        with Image.open(out / f"{n}.png") as im:
            im.load()
            size = im.size
        _check_png_size(out / f"{n}.png", size, n, loaded)
        # the page reserves the PNG's own size
        assert re.search(rf'<figure id="fig-{n}">.*?width="{size[0]}" height="{size[1]}"',
                         page, re.S), n
    # The one-screen summary: a row per init, a column per activation, the report's path.
    lines = stdout.splitlines()
    assert re.match(r"initializer\s+tanh\s+relu\s*$", lines[1])
    assert re.match(r"he_normal\s+healthy \S+\s+healthy \S+\s*$", lines[2])
    assert re.match(r"zeros\s+symmetric 0\s+symmetric 0\s*$", lines[3])
    assert str(out / "index.html") in stdout


def test_build_report_results_file_loads_back_equal(tmp_path):
    sweep, verdicts, paths = build.build_report(
        dict(activations=["tanh"], inits=["he_normal"], depths=[5], widths=[8], batch=4,
             seeds=[0]), tmp_path, title="t")
    assert initdiag.load(paths["results"]) == sweep
    assert [v.kind for v in verdicts] == [v.kind for v in initdiag.diagnose(sweep)]


def test_title_is_escaped_and_page_is_self_contained(tmp_path, capsys):
    title = "<script>alert(1)</script> & co"
    assert cli.main(["report", "--activations", "relu", "--inits", "he_normal,normal(std=1.0)",
                     "--depth", "4", "--width", "8", "--batch", "4", "--title", title,
                     "--out", str(tmp_path), "--quiet"]) == 0
    assert capsys.readouterr() == ("", "")  # --quiet
    page = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert "<script" not in page.lower()
    assert htmllib.escape(title, quote=False) in page
    assert "normal(std=1.0)" in page
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)""", page)
    assert refs and all(r.startswith("data:image/png;base64,") for r in refs), refs
    assert not re.search(r"https?://|@import|url\(", page)
    assert build.slug(title) == "script-alert-1-script-co"


def test_no_subcommand_runs_report(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["--activations", "tanh", "--inits", "lecun_normal", "--depth", "3",
                     "--width", "4", "--batch", "4", "--title", "Quick One"]) == 0
    assert (tmp_path / "reports" / "quick-one" / "index.html").is_file()
    out, err = capsys.readouterr()
    assert re.search(r"^lecun_normal\s+\w+", out, re.M)
    assert err == ""  # stderr is not a terminal: no progress bar


def test_config_toml_and_command_line_precedence(tmp_path, capsys):
    cfg = tmp_path / "sweep.toml"
    cfg.write_text('title = "from toml"\nactivations = ["relu"]\ninits = "he_normal,zeros"\n'
                   'depth = 5\nwidth = [8]\nbatch = 4\nseeds = [0, 1]\nquiet = true\n'
                   f'out = "{(tmp_path / "out").as_posix()}"\n')
    assert cli.main(["report", "--config", str(cfg), "--depth", "3"]) == 0
    assert capsys.readouterr().out == ""
    res = initdiag.load(tmp_path / "out" / "results.json")
    assert [(r.config["init"], r.depth, r.config["width"], r.seed) for r in res] == [
        ("he_normal", 3, 8, 0), ("he_normal", 3, 8, 1), ("zeros", 3, 8, 0), ("zeros", 3, 8, 1)]
    assert res.meta["report"]["title"] == "from toml"


@pytest.mark.parametrize("text, message", [
    ('dept = 5\n', "unknown key 'dept'; valid keys: activations, inits, depth"),
    ('depth = "five"\n', "'depth' must be a list of integers"),
    ('norm = "group"\n', "norm = 'group'; choose from none, batchnorm, layernorm"),
    ('batch = 4.5\n', "key 'batch' has the wrong type"),
    ('depth = [\n', "not valid TOML"),
])
def test_bad_config_exits_2_with_clear_message(tmp_path, capsys, text, message):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    assert cli.main(["report", "--config", str(cfg), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("initdiag: error: config file") and message in err
    assert not (tmp_path / "o").exists()


def test_bad_options_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["report", "--bogus"])
    assert e.value.code == 2 and "unrecognized arguments: --bogus" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        cli.main(["report", "--norm", "group"])
    assert e.value.code == 2 and "invalid choice: 'group'" in capsys.readouterr().err
    assert cli.main(["report", "--inits", "xavier", "--depth", "2", "--width", "4",
                     "--out", str(tmp_path / "o")]) == 2
    assert "xavier_uniform" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_help_is_complete():
    p = _py("report", "--help")
    assert p.returncode == 0
    for opt in ("--activations", "--inits", "--depth", "--width", "--batch", "--seeds", "--norm",
                "--residual", "--title", "--out", "--config", "--quiet", "sweep.toml"):
        assert opt in p.stdout, opt
    top = _py("--help").stdout
    assert "report" in top and "runs 'report'" in top


def test_committed_example_report_is_the_default_sweep():
    """The committed example is the default sweep drawn by the current report code: the same
    figures in the same order, the current captions, each PNG at the size the page gives it.
    (Fails until reports/example is regenerated after a change of figures or captions.)"""
    check_default_report(__import__("pathlib").Path(__file__).parents[1] / "reports" / "example")


def check_default_report(root):
    """The checks of :func:`test_committed_example_report_is_the_default_sweep` on a folder."""
    from markupsafe import escape

    res = initdiag.load(root / "results.json")
    d = initdiag.DEFAULT_SWEEP
    assert {(r.config["activation"], r.config["init"]) for r in res} == {
        (a, i) for a in d["activations"] for i in d["inits"]}
    assert {(r.depth, r.config["width"], r.config["batch"], r.seed) for r in res} == {
        (d["depths"][0], d["widths"][0], d["batch"], 0)}
    page = (root / "index.html").read_text(encoding="utf-8")
    assert re.findall(r'<figure id="fig-([\w-]+)">', page) == [f.name for f in figures.FIGURES]
    assert page.count('src="data:image/png;base64,') == len(figures.FIGURES)
    ctx = figures.Context(res)
    for f in figures.FIGURES:
        block = page.split(f'<figure id="fig-{f.name}">', 1)[1].split("</figure>", 1)[0]
        assert f"<h3>{figures.FIGURES.index(f) + 1}. {escape(f.title)}</h3>" in block, f.name
        caption = re.search(r"<figcaption>(.*?)</figcaption>", block, re.S).group(1)
        assert caption == str(escape(f.caption(res, ctx))), f.name
        png = root / f"{f.name}.png"
        assert png.stat().st_size <= 300_000, png
        with Image.open(png) as im:
            size = im.size
        assert f'width="{size[0]}" height="{size[1]}"' in block, f.name
        _check_png_size(png, size, f.name, res)


# --- several configurations per (activation, init) -------------------------------------------

@pytest.fixture(scope="module")
def sweep_dw():
    """One (activation, init) at two depths x two widths, two seeds, with histograms."""
    return initdiag.sweep(activations=["tanh"], inits=["he_normal"], depths=[4, 6],
                          widths=[8, 16], seeds=[0, 1], batch=4, histograms=True)


def test_distributions_keep_depths_and_widths_apart(sweep_dw):
    fig = figures.draw_figure("act_hist", sweep_dw)
    rows = [ax for ax in fig.axes if any(isinstance(p, StepPatch) for p in ax.patches)]
    assert len(rows) == 4  # one row per (depth, width); nothing pooled across them
    labels = [ax.get_ylabel() for ax in rows]
    for depth in (4, 6):
        for width in (8, 16):
            (ax,) = [a for a, lab in zip(rows, labels)
                     if f"depth {depth}, width {width}" in lab]
            assert "he_normal" in ax.get_ylabel()
            # the last layer's step = the two seeds of this configuration only, pooled
            runs = [r for r in sweep_dw if r.depth == depth and r.config["width"] == width]
            assert len(runs) == 2
            counts = runs[0].histograms["act_hist"][-1] + runs[1].histograms["act_hist"][-1]
            want = counts / counts.sum()
            (last,) = [p for p in ax.patches if p.get_label() == f"layer {depth}"]
            np.testing.assert_allclose(np.nan_to_num(last.get_data().values), want)
    # rows of different depths share colours by place in the stack: the legend says so
    legend = [t.get_text() for ax in fig.axes if ax.get_legend()
              for t in ax.get_legend().get_texts()]
    assert legend == ["layer 1", "layer ~L/10", "layer ~L/4", "layer ~L/2", "layer L"]


def test_histogram_panel_refuses_to_pool_configurations(sweep_dw):
    fig, ax = plt.subplots()
    with pytest.raises(ValueError, match=r"select one configuration.*width 8.*width 16"):
        plots.plot_act_hist(sweep_dw.select(depth=4), ax=ax)  # two widths: not added up
    plots.plot_act_hist(sweep_dw, depth=4, width=16, ax=ax)  # config values select one


def test_cli_report_with_two_depths_and_two_widths(tmp_path, capsys):
    out = tmp_path / "dw"
    assert cli.main(["report", "--activations", "tanh", "--inits", "he_normal", "--depth", "4,6",
                     "--width", "8,16", "--batch", "4", "--out", str(out)]) == 0
    assert (out / "index.html").is_file() and (out / "act_hist.png").is_file()
    stdout = capsys.readouterr().out
    # the summary header names every depth and width, not those of the first probe
    assert "(depth 4/6, width 8/16, batch 4, seed 0)" in stdout.splitlines()[0]
    assert list(tmp_path.iterdir()) == [out]  # no temporary folder left beside it


def test_failed_report_leaves_no_folder_and_an_existing_one_untouched(tmp_path, monkeypatch,
                                                                      capsys):
    def boom(*args, **kwargs):
        raise ValueError("figure drawing failed")

    args = ["report", "--activations", "tanh", "--inits", "he_normal", "--depth", "3",
            "--width", "4", "--batch", "4", "--quiet"]
    monkeypatch.setattr(figures, "render_figure", boom)
    new = tmp_path / "sub" / "new"
    assert cli.main([*args, "--out", str(new)]) == 2
    work = new / ".initdiag-work"
    assert capsys.readouterr().err.splitlines() == [
        "initdiag: error: figure drawing failed",
        f"initdiag: 1 of 1 probes kept in {work / 'checkpoint.jsonl'}; resume with: initdiag "
        + " ".join(shlex.quote(a) for a in sys.argv[1:]) + " --resume"]  # (pytest's argv)
    # no report and no temporary folder: only the probe that finished, kept for --resume
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "sub", "sub/new", "sub/new/.initdiag-work", "sub/new/.initdiag-work/checkpoint.jsonl"]
    shutil.rmtree(tmp_path / "sub")
    old = tmp_path / "old"
    old.mkdir()
    (old / "notes.txt").write_text("mine")
    (old / "index.html").write_text("previous report")
    assert cli.main([*args, "--out", str(old)]) == 2
    assert "1 of 1 probes kept" in capsys.readouterr().err
    assert sorted(p.name for p in old.iterdir()) == [".initdiag-work", "index.html", "notes.txt"]
    assert (old / "index.html").read_text() == "previous report"
    shutil.rmtree(old / ".initdiag-work")  # start over: this is not the same sweep
    # a failure before any probe finished leaves nothing, not even a folder made for it
    monkeypatch.setattr(importlib.import_module("initdiag.probe"), "run_job", boom)
    assert cli.main([*args, "--out", str(tmp_path / "a" / "b")]) == 2
    assert capsys.readouterr().err == "initdiag: error: figure drawing failed\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old"]
    monkeypatch.undo()
    # a report into an existing folder replaces the report's files, keeps the user's, and
    # removes PNGs of figures this run does not draw (no theory figures with normalization)
    (old / "phase_diagram.png").write_bytes(b"stale")
    assert cli.main([*args, "--norm", "layernorm", "--out", str(old)]) == 0
    names = {p.name for p in old.iterdir()}
    assert "notes.txt" in names and "phase_diagram.png" not in names
    assert "jacobian.png" not in names and "act_var.png" in names
    page = (old / "index.html").read_text()
    assert "<!DOCTYPE html>" in page
    # the page says why the theory figures are missing
    for fig_id in ("fig-phase_diagram", "fig-jacobian"):
        block = page.split(f'<figure id="{fig_id}">', 1)[1].split("</figure>", 1)[0]
        assert "Not drawn for this run:" in block and "norm" in block and "<img" not in block
    assert not [p for p in old.iterdir() if p.name.startswith(".")]


# --- layout: nothing clipped ------------------------------------------------------------------

LONG_INITS = ["orthogonal(gain=2.0)", "variance_scaling(scale=1.76, mode=fan_in, "
              "distribution=normal)", "zeros", "he_normal"]


@pytest.fixture(scope="module")
def sweep_long():
    """One activation, long initializer names."""
    return initdiag.sweep(activations=["tanh"], inits=LONG_INITS, depths=[6], widths=[8],
                          seeds=[0], batch=4, histograms=True)


def _drawn_texts(fig):
    """Every visible, non-empty text artist that a draw of ``fig`` renders."""
    fig.canvas.draw()
    hidden = set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            eps = 1e-9 * max(abs(lo), abs(hi), 1.0)
            shown = [t for t in axis.get_major_ticks() + axis.get_minor_ticks()
                     if lo - eps <= t.get_loc() <= hi + eps]
            pool = axis.majorTicks + axis.minorTicks
            hidden |= {id(lab) for t in pool if t not in shown for lab in (t.label1, t.label2)}
    return [t for t in fig.findobj(matplotlib.text.Text)
            if t.get_visible() and t.get_text().strip() and id(t) not in hidden
            and (t.axes is None or t.axes.get_visible())]


@pytest.mark.parametrize("name", [f.name for f in figures.FIGURES])
def test_no_text_is_clipped_with_long_labels_and_one_activation(sweep_long, name):
    fig = figures.draw_figure(name, sweep_long)
    renderer = fig.canvas.get_renderer()
    W, H = fig.bbox.width, fig.bbox.height
    texts = _drawn_texts(fig)
    assert texts
    for t in texts:
        bb = t.get_window_extent(renderer)
        assert bb.x0 >= -0.5 and bb.y0 >= -0.5 and bb.x1 <= W + 0.5 and bb.y1 <= H + 0.5, (
            name, t.get_text(), bb, (W, H))
    every = " ".join(t.get_text() for t in texts)
    if name in ("act_var", "grad_rms", "act_hist", "grad_heatmap", "jacobian"):
        assert "variance_scaling(" in every and "orthogonal(gain=2.0)" in every
    # panel titles sit at the top of their axes (style.RC, no automatic placement): nothing of
    # the axes' own that matplotlib would move a title for is there
    drawn = {id(t) for t in texts}
    for ax in fig.axes:
        if ax.get_title():
            title = ax.title.get_window_extent(renderer)
            assert ax.title.get_position()[1] == 1.0
            for t in ax.get_xticklabels(which="both") + ax.get_yticklabels(which="both") + [
                    ax.yaxis.offsetText, ax.xaxis.offsetText]:
                if id(t) in drawn:
                    assert not title.overlaps(t.get_window_extent(renderer)), (
                        name, ax.get_title(), t.get_text())


def test_grad_panel_with_minor_tick_labels_keeps_its_y_label(sweep_long):
    """A narrow log range gets minor tick labels (wider); the y label must still fit."""
    sub = sweep_long.select(init="he_normal")
    fig = figures.draw_figure("grad_rms", sub)
    ax = fig.axes[0]
    texts = _drawn_texts(fig)
    minor = [t for t in ax.yaxis.get_minorticklabels() if t in texts]
    assert minor, "expected minor tick labels on a range below one decade"
    bb = ax.yaxis.label.get_window_extent(fig.canvas.get_renderer())
    assert ax.yaxis.label in texts and bb.x0 >= 0


def test_layout_measures_once_and_still_fits_everything(sweep_long):
    """finish_layout checks the fit with the extents it measured before moving the axes; a full
    measurement of the finished figure agrees, and grow_to_fit measures what it is not given."""
    for name in ("act_var", "act_hist", "phase_diagram"):
        fig = figures.draw_figure(name, sweep_long)
        full = fig.get_tightbbox(fig.canvas.get_renderer())
        W, H = fig.get_size_inches()
        half = layout.PAD / 2 - 1e-6
        assert full.x0 >= half and full.y0 >= half and full.x1 <= W - half \
            and full.y1 <= H - half, (name, full.extents, (W, H))
    fig = plt.figure(figsize=(3, 2), dpi=layout.DPI)
    ax = fig.add_axes((0.2, 0.2, 0.6, 0.6))
    ax.set_title("a title much wider than its axes " * 2)
    assert np.allclose(layout.tight_bbox(fig, {}).extents,
                       fig.get_tightbbox(fig.canvas.get_renderer()).extents)
    layout.grow_to_fit(fig, measured={ax: ax.get_window_extent().frozen()})  # title left out
    assert tuple(fig.get_size_inches()) == (3, 2)
    layout.grow_to_fit(fig)
    W, H = fig.get_size_inches()
    bb = ax.title.get_window_extent(fig.canvas.get_renderer())
    assert W > 3 and bb.x0 >= 0 and bb.x1 <= W * layout.DPI


# --- palette ----------------------------------------------------------------------------------

def _contrast_with_white(rgb):
    """WCAG 2 contrast ratio of an sRGB colour against white."""
    lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
    lum = 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]
    return 1.05 / (lum + 0.05)


def test_palette_distinct_readable_and_zeros_neutral():
    std = list(initdiag.nn.initializers.STANDARD_INITIALIZERS)
    pal = style.init_palette(std)
    assert pal["zeros"].color[0] == pal["zeros"].color[1] == pal["zeros"].color[2]  # grey
    others = [lab for lab in std if lab != "zeros"]
    assert len({matplotlib.colors.to_hex(pal[lab].color) for lab in others}) == len(others)
    assert pal["zeros"].color not in {pal[lab].color for lab in others}
    assert (pal["zeros"].color, pal["zeros"].marker) != (pal["glorot_normal"].color,
                                                        pal["glorot_normal"].marker)
    for n in (12, 13, 30):
        labels = [f"init{k:02d}" for k in range(n)] + ["zeros"]
        p = style.init_palette(labels)
        pairs = [(st.color, st.marker) for st in p.values()]
        assert len(set(pairs)) == len(pairs), n
    for st in style.init_palette([f"i{k}" for k in range(12)] + ["zeros"]).values():
        assert _contrast_with_white(st.color) >= 2.0, st.color
    assert "#fbafe4" not in {matplotlib.colors.to_hex(c) for c in style.COLORS}


# --- HTML contents ----------------------------------------------------------------------------

def _custom_init(key, shape, dtype):
    import jax

    return jax.random.normal(key, shape, dtype) * (2.0 / shape[0]) ** 0.5


_custom_init.__qualname__ = "<lambda>"  # labelled 'custom:<lambda>', HTML characters


class _Tables(__import__("html.parser").parser.HTMLParser):
    """Rows of every <table> (by id) as lists of (tag, class, text) cells."""

    def __init__(self):
        super().__init__()
        self.tables, self._stack, self._cell = {}, [], None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self._stack.append(a.get("id") or a.get("class") or f"t{len(self.tables)}")
            self.tables[self._stack[-1]] = []
        elif tag == "tr" and self._stack:
            self.tables[self._stack[-1]].append([])
        elif tag in ("td", "th") and self._stack:
            self._cell = [tag, a.get("class", ""), ""]

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[self._stack[-1]][-1].append(tuple(self._cell))
            self._cell = None
        elif tag == "table" and self._stack:
            self._stack.pop()

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[2] += data


@pytest.fixture(scope="module")
def html_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("html")
    sweep, verdicts, paths = build.build_report(
        dict(activations=["relu", "tanh"], inits=["glorot_normal", "he_normal", _custom_init,
                                                  "normal"],
             depths=[16], widths=[16], batch=8, seeds=[0]), out, title="contents")
    page = paths["html"].read_text(encoding="utf-8")
    parser = _Tables()
    parser.feed(page)
    return sweep, page, parser.tables


def test_html_environment_configuration_and_timings(html_report):
    import importlib.metadata as md
    import platform

    import jax

    sweep, page, tables = html_report
    env = {c[0][2]: c[1][2] for c in tables["environment-table"]}
    assert env["initdiag"] == md.version("initdiag")
    assert env["jax"] == md.version("jax") and env["jaxlib"] == md.version("jaxlib")
    assert env["numpy"] == md.version("numpy")
    assert env["platform"] == platform.platform()
    assert env["device"].startswith(jax.devices()[0].platform + ":")
    config = {c[0][2]: c[1][2] for c in tables["config-table"]}
    assert config["activation"] == "relu, tanh" and config["depth"] == "16"
    assert config["width"] == "16" and config["batch"] == "8" and config["seeds"] == "0"
    assert config["init"] == "glorot_normal, he_normal, custom:<lambda>, normal"
    inits = {c[0][2]: c[1][2] for c in tables["init-table"]}
    assert inits["normal"].startswith("N(0, (gain*std)^2) with")
    assert "std=0.01" in inits["normal"] and "Var(W_ij) = 0.0001" in inits["normal"]
    assert "sigma_w^2 = fan_in Var(W_ij) = 2 at width 16" in inits["he_normal"]
    timings = {c[0][2]: c[1][2] for c in tables["timings-table"]}
    seconds = {k: float(v.removesuffix(" s")) for k, v in timings.items()}
    assert seconds[build.HTML_TIMING] > 0  # measured, shown
    total = seconds[build.TOTAL_TIMING]
    parts = [v for k, v in seconds.items() if k in (
        "sweep (probing, incl. compilation)", "diagnosis", "theory: mean-field predictions",
        "theory: Jacobian spectra", "figures", build.HTML_TIMING)]
    assert len(parts) == 6 and sum(parts) <= total + 0.05


def test_html_verdict_cells_match_the_diagnosis(html_report):
    sweep, page, tables = html_report
    want = {(v.config["init"], v.config["activation"]): v for v in initdiag.diagnose(sweep)}
    rows = tables["verdicts"]
    header = [c[2] for c in rows[0]][1:]
    assert header == ["relu", "tanh"]
    seen = 0
    for row in rows[1:]:
        init = row[0][2]
        for (tag, cls, text), act in zip(row[1:], header):
            v = want[(init, act)]
            assert cls == f"v-{v.kind}", (init, act)
            number = float(re.search(r"([-+0-9.e]+|inf|nan)\s*(?:·|$)", text.split("\n", 1)[1]
                                     .strip()).group(1))
            assert number == pytest.approx(v.key_value, rel=0.05, abs=1e-300), (init, act)
            seen += 1
    assert seen == len(want) == 8
    # Xavier (glorot) + ReLU at depth 16 vanishes; the page suggests He init for it
    assert want[("glorot_normal", "relu")].kind == "vanishing"
    item = re.search(r"<li>([^<]*)<span class=\"configs\">\(([^)]*relu / glorot_normal[^)]*)\)",
                     page)
    assert item and "He init" in item.group(1)


def test_html_escapes_an_initializer_label(html_report):
    sweep, page, tables = html_report
    assert "custom:&lt;lambda&gt;" in page
    assert "<lambda>" not in page


# --- layer axes and zeros on log axes --------------------------------------------------------

def test_layer_axes_have_integer_ticks_at_small_depth():
    s = initdiag.sweep(activations=["tanh"], inits=["he_normal"], depths=[3], widths=[8],
                       batch=4)
    for fig in (figures.draw_figure("act_var", s), figures.draw_figure("grad_heatmap", s)):
        fig.canvas.draw()
        ax = fig.axes[0]
        lo, hi = sorted(ax.get_xlim())
        ticks = [t for t in ax.get_xticks() if lo - 1e-9 <= t <= hi + 1e-9]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks


def test_zero_gradient_below_the_last_layer_is_named_in_the_panel(sweep2):
    # zero weights: the last layer's gradient is the readout's, every layer below gets 0
    r = sweep2.select(activation="tanh", init="zeros", seed=0)[0]
    assert np.all(r["grad_preact_rms"][:-1] == 0) and r["grad_preact_rms"][-1] > 0
    fig, ax = plt.subplots()
    plots.plot_grad_rms(sweep2, activation="tanh", ax=ax)
    notes = " ".join(t.get_text() for t in ax.texts)
    assert "zeros: = 0 below layer 8" in notes and "not drawn on the log scale" in notes
    assert "zeros" in [l.get_label() for l in _lines(ax)]  # still in the legend
    # its one drawable value (layer 8) is marked, not lost as a line without segments
    marks = [l for l in ax.lines if l.get_label() == "_nolegend_" and l.get_linestyle() == "None"]
    assert any(list(m.get_xdata()) == [8] for m in marks)
    fig2, ax2 = plt.subplots()
    plots.plot_act_var(sweep2, activation="tanh", ax=ax2)  # tanh(0) = 0 at every layer
    assert "zeros: = 0 at every layer" in " ".join(t.get_text() for t in ax2.texts)


# --- log axes: tick labels as plain text -------------------------------------------------------

def _tick_texts(ax, axis="y"):
    """(major, minor) non-empty tick label texts of a drawn axes."""
    which = getattr(ax, f"{axis}axis")
    return tuple([t.get_text() for t in which.get_ticklabels(minor=m) if t.get_text()]
                 for m in (False, True))


def test_plain_log_formatter_writes_matplotlibs_labels_with_superscripts():
    from initdiag.report.ticks import PlainLogFormatter, log_scale, plain_math

    f = PlainLogFormatter(10.0)
    assert [f(v) for v in (1e-5, 1.0, 1e12, 0.1)] == ["10⁻⁵", "10⁰", "10¹²", "10⁻¹"]
    assert plain_math(r"$\mathdefault{2\times10^{-3}}$") == "2×10⁻³"
    assert plain_math("layer $l$") == "layer $l$"  # anything else is left alone
    # the same ticks and the same choice of labels (minor ones on a range below a decade) as
    # matplotlib's default log axis, each written without mathtext
    minor = {}
    for lo, hi in [(1e-5, 1e12), (3e-3, 2e-2), (0.5, 3.0)]:
        drawn = []
        for plain in (False, True):
            fig, ax = plt.subplots()
            ax.plot([1, 2], [lo, hi])
            if plain:
                log_scale(ax, "y")
            else:
                ax.set_yscale("log")
            fig.canvas.draw()
            drawn.append(_tick_texts(ax))
        default, ours = drawn
        assert ours == tuple([plain_math(t) for t in ts] for ts in default), (lo, hi)
        assert not any("$" in t for ts in ours for t in ts)
        minor[lo] = ours[1]
    assert minor[1e-5] == [] and "2×10⁻³" in minor[3e-3] and "2×10⁰" in minor[0.5]


def test_report_log_axes_use_no_mathtext(sweep2):
    for name, axis in (("act_var", "y"), ("act_hist", "y"), ("jacobian", "x")):
        fig = figures.draw_figure(name, sweep2)
        fig.canvas.draw()
        texts = [t for ax in fig.axes if getattr(ax, f"get_{axis}scale")() == "log"
                 for ts in _tick_texts(ax, axis) for t in ts]
        assert texts and not any("$" in t for t in texts), (name, texts)
        assert any("⁻" in t or "⁰" in t for t in texts), name


# --- PNG files -------------------------------------------------------------------------------

def _png_chunks(data):
    """The chunk types of a PNG file, in order."""
    import struct

    out, k = [], 8
    while k < len(data):
        n, kind = struct.unpack(">I4s", data[k:k + 8])
        out.append(kind.decode())
        k += 12 + n
    return out


def test_png_is_a_palette_image_of_the_canvas_pixels_without_metadata(sweep2):
    import io

    from initdiag.report import png

    fig = figures.draw_figure("act_var", sweep2)
    data = png.png_bytes(fig)
    with Image.open(io.BytesIO(data)) as im:
        assert im.mode == "P" and im.size == fig.canvas.get_width_height(physical=True)
        assert len(im.getpalette()) // 3 <= 256
    assert set(_png_chunks(data)) <= {"IHDR", "PLTE", "IDAT", "IEND"}  # no text, time, dpi
    assert png.png_bytes(fig) == data  # equal figures, equal bytes
    again = figures.draw_figure("act_var", sweep2)
    assert png.png_bytes(again) == data
    # the pixels taken from the canvas are those savefig writes
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=layout.DPI)
    buf.seek(0)
    with Image.open(buf) as saved:
        assert np.array_equal(np.asarray(saved.convert("RGB")), np.asarray(png.rendered_rgb(fig)))
    other = plt.figure(figsize=(2, 1.5), dpi=72)  # another resolution: rendered at layout.DPI
    with Image.open(io.BytesIO(png.png_bytes(other))) as im:
        assert im.mode == "P" and im.size == (2 * layout.DPI, int(1.5 * layout.DPI))


def test_theme_is_seaborns_whitegrid_without_importing_seaborn():
    import seaborn as sns

    want = dict(sns.axes_style(*style.AXES_STYLE))
    assert want.pop("image.cmap") == "rocket"  # a seaborn colormap; report figures name theirs
    assert style.AXES_STYLE_RC == want
    code = ("import sys, matplotlib; matplotlib.use('Agg'); from initdiag.report import style\n"
            "with style.theme(): import matplotlib.pyplot as plt; plt.figure()\n"
            "print('seaborn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr
