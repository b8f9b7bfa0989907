"""Report: plot panels (artists, not pixels), figures, HTML and the ``initdiag report`` CLI."""

import html as htmllib
import os
import pty
import re
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
from initdiag.report import command, figures, plots, style

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


def test_figures_written_at_fixed_pixel_size(sweep2, tmp_path):
    written = figures.write_figures(sweep2, tmp_path)
    assert [w.name for w in written] == [f.name for f in figures.FIGURES]
    for w in written:
        with Image.open(w.path) as im:
            im.load()
            assert im.format == "PNG"
            assert im.size == w.size == figures.figure_size_px(w.name, sweep2)
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
    for n in names:
        with Image.open(out / f"{n}.png") as im:
            im.load()
            assert im.size == figures.figure_size_px(n, loaded)
    # The one-screen summary: a row per init, a column per activation, the report's path.
    lines = stdout.splitlines()
    assert re.match(r"initializer\s+tanh\s+relu\s*$", lines[1])
    assert re.match(r"he_normal\s+healthy \S+\s+healthy \S+\s*$", lines[2])
    assert re.match(r"zeros\s+symmetric 0\s+symmetric 0\s*$", lines[3])
    assert str(out / "index.html") in stdout


def test_build_report_results_file_loads_back_equal(tmp_path):
    sweep, verdicts, paths = command.build_report(
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
    assert command.slug(title) == "script-alert-1-script-co"


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
    root = __import__("pathlib").Path(__file__).parents[1] / "reports" / "example"
    res = initdiag.load(root / "results.json")
    d = initdiag.DEFAULT_SWEEP
    assert {(r.config["activation"], r.config["init"]) for r in res} == {
        (a, i) for a in d["activations"] for i in d["inits"]}
    assert {(r.depth, r.config["width"], r.config["batch"], r.seed) for r in res} == {
        (d["depths"][0], d["widths"][0], d["batch"], 0)}
    for f in figures.FIGURES:
        png = root / f"{f.name}.png"
        assert png.stat().st_size <= 300_000, png
        with Image.open(png) as im:
            assert im.size == figures.figure_size_px(f.name, res)
    page = (root / "index.html").read_text(encoding="utf-8")
    assert page.count('src="data:image/png;base64,') == len(figures.FIGURES)
