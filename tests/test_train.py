"""Training runs (initdiag.train): outcomes, an independent optax loop, determinism, files.

Compilation dominates the time of these tests (a run itself takes ~0.25 s), so every stack run
has one shape, the issue's: 10 tanh layers of width 64 on digits, batch 128, 200 SGD steps, the
same snapshot steps. The loop, the weight draw and the probe are compiled once for all of them
(the initializer, the seed and the learning rate are data); only the ReLU run that diverges and
train_fn's model compile again.
"""

import json
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import initdiag
from initdiag.train.tasks import DIGITS_TEST, batch_indices, load_task

optax = pytest.importorskip("optax")

STEPS = 200
DEEP = dict(activation="tanh", depth=10, width=64, batch=128, steps=STEPS, seed=0,
            keep_weights=True)  # default snapshots: steps 0, 20, 100, 200
#: A run that diverges, in the shape of the others (no compilation of its own): at lr 1e38 the
#: first update leaves weights near float32's largest value, and step 2's logits overflow (loss
#: NaN). (ReLU at lr 3 blows up more gradually: loss 3.0, 780, 7e21, NaN at step 4.)
DIVERGING = dict(DEEP, init="he_normal", lr=1e38)


@pytest.fixture(scope="module")
def xavier():
    return initdiag.train_probe(init="xavier_normal", **DEEP)


@pytest.fixture(scope="module")
def small_normal():
    return initdiag.train_probe(init="normal(std=0.01)", **DEEP)


@pytest.fixture(scope="module")
def zeros():
    return initdiag.train_probe(init="zeros", **DEEP)


def test_xavier_reaches_a_lower_loss_than_small_normal(xavier, small_normal):
    # mean of the last 20 steps' mini-batch loss (one step's batch is noisy)
    x, n = xavier["loss"][-20:].mean(), small_normal["loss"][-20:].mean()
    print(f"final loss (mean of the last 20 steps): xavier_normal {x:.4f}, normal(std=0.01) "
          f"{n:.4f}")
    # normal(std=0.01) shrinks the gradient ~0.08x per layer: layer 1 gets ~1e-14 of it, the
    # stack does not learn and the loss stays at chance (ln 10 = 2.303); Xavier learns.
    assert n > 2.2
    assert x < 0.5
    assert x < n - 1.5
    assert xavier.scalars["test_accuracy"] > 0.85 > 0.2 > small_normal.scalars["test_accuracy"]


def test_step_zero_statistics_are_the_probe_of_the_same_seed(xavier):
    probe = initdiag.probe("tanh", "xavier_normal", depth=10, width=64, input_width=64,
                           batch=128, seed=0)
    snap = xavier.snapshots[0]
    assert snap.config == probe.config
    for m in probe.metrics:
        np.testing.assert_array_equal(snap[m], probe[m], err_msg=m)
    # and the step-0 weights are the probe's draw, bit for bit
    drawn = initdiag.init_stack(0, initdiag.make_spec(activation="tanh", init="xavier_normal",
                                                      depth=10, width=64, input_width=64))
    for (w, b), (w0, b0) in zip(drawn, xavier.weights[0][0]):
        np.testing.assert_array_equal(np.asarray(w), w0)
        np.testing.assert_array_equal(np.asarray(b), b0)


def _tanh_mlp(th, x):
    for w, b in zip(th["W"], th["b"]):
        x = jnp.tanh(x @ w + b[None, :])
    return x @ th["W_out"] + th["b_out"][None, :]


def _plain_loop(forward, theta, task, idx, lr):
    """An independent SGD loop: a plain jax ``forward``, the softmax cross-entropy written out,
    optax.sgd and optax.apply_updates in a Python for loop. Returns the loss of every step
    (before its update) and the weights after each step."""
    def loss_fn(th, x, y):
        z = forward(th, x)
        return jnp.mean(jax.nn.logsumexp(z, axis=1) - jnp.take_along_axis(z, y[:, None], 1)[:, 0])

    grad = jax.jit(jax.value_and_grad(loss_fn))
    opt = optax.sgd(lr)
    state = opt.init(theta)
    losses, after = [], []
    for rows in idx:
        loss, g = grad(theta, task.x_train[rows], task.y_train[rows])
        losses.append(float(loss))
        updates, state = opt.update(g, state, theta)
        theta = optax.apply_updates(theta, updates)
        after.append(theta)
    return np.array(losses), after


def _within_rounding(got, want):
    # The two compute the same float32 numbers in different orders (XLA fuses the compiled
    # scan differently from the per-step jit), so they differ by rounding: a few float32 eps
    # in the loss of step 1 (measured 1 eps), and the weights then drift apart by independent
    # roundings of ~eps per step, a random walk of size ~eps sqrt(t). These runs are stable (the
    # loss falls smoothly), so nothing amplifies it: measured max 8.4 eps at step 200 for the
    # 10-layer stack. Bound: 4 eps sqrt(t) (= 6.7e-6 at t = 200). An error in the loop (a batch
    # off by one step, a missing update, another loss) moves the loss by 1e-3 or more.
    eps = np.finfo(np.float32).eps
    t = np.arange(1, len(want) + 1)
    rel = np.abs(got - want) / np.abs(want)
    assert np.all(rel <= 4 * eps * np.sqrt(t)), (rel.max(), int(np.argmax(rel)) + 1)


@pytest.fixture(scope="module")
def digits_batches():
    task = load_task("digits", 0)
    return task, batch_indices(0, task.x_train.shape[0], 128, STEPS)


@pytest.fixture(scope="module")
def plain(xavier, digits_batches):
    (hidden, (w_out, b_out)) = xavier.weights[0]
    theta = {"W": [jnp.asarray(w) for seg, _ in hidden for w in seg],
             "b": [jnp.asarray(b) for _, seg in hidden for b in seg],
             "W_out": jnp.asarray(w_out), "b_out": jnp.asarray(b_out)}
    return theta, _plain_loop(_tanh_mlp, theta, *digits_batches, 0.1)


def test_loss_equals_a_plain_optax_loop_step_by_step(xavier, plain):
    _, (losses, _) = plain
    _within_rounding(xavier["loss"], losses)


def test_update_ratio_against_numpy(xavier, plain):
    theta0, (_, after) = plain
    before = theta0["W"]
    for step in (1, 2, 3):
        now = after[step - 1]["W"]
        ratio = [np.linalg.norm(np.float64(a) - np.float64(b)) / np.linalg.norm(np.float64(b))
                 for a, b in zip(now, before)]
        # the independent loop's weights equal the run's to float32 rounding (~eps relative);
        # W changes by ~0.7% a step, so the change itself agrees to ~eps / 0.007 ~ 2e-5
        np.testing.assert_allclose(xavier["update_ratio"][step - 1], ratio, rtol=1e-4)
        before = now
    # at the last step too, from the weights the run kept (after step 200) and the loop's
    # weights after step 199 (equal to the run's to rounding, as above: 4 eps sqrt(t))
    last = [np.float64(w) for seg, _ in xavier.weights[STEPS][0] for w in seg]
    prev = [np.float64(w) for w in after[STEPS - 2]["W"]]
    ratio = [np.linalg.norm(a - b) / np.linalg.norm(b) for a, b in zip(last, prev)]
    np.testing.assert_allclose(xavier["update_ratio"][-1], ratio, rtol=1e-3)


@pytest.mark.parametrize("init", ["zeros", "constant(value=0.02)"])
def test_symmetric_init_never_breaks_symmetry(init, zeros):
    r = zeros if init == "zeros" else initdiag.train_probe(init=init, **DEEP)
    first, last = r.weights[0], r.weights[STEPS]
    for (w, b) in last[0]:  # every layer: all units (columns) identical after training
        np.testing.assert_array_equal(w, np.broadcast_to(w[:, :, :1], w.shape))
        np.testing.assert_array_equal(b, np.broadcast_to(b[:, :1], b.shape))
    np.testing.assert_array_equal(last[1][0], np.broadcast_to(last[1][0][:1], last[1][0].shape))
    for step, snap in r.snapshots.items():
        spread = snap["unit_spread"]
        if init == "zeros":  # every unit outputs exactly 0: a constant layer, unit_spread NaN
            assert np.all(snap["act_var"] == 0) and np.all(np.isnan(spread)), step
            assert np.all(snap["weight_norm"] == 0), step
        else:  # units vary over the batch, all alike: no variance across units
            assert np.all(snap["act_var"] > 0) and np.all(spread <= 1e-6), (step, spread)
    if init != "zeros":  # the weights did move: symmetry holds, it is not a frozen run
        assert not np.array_equal(first[0][0][0], last[0][0][0])
        assert r.final_loss() < r["loss"][0] - 0.3
        assert r.snapshots[0]["weight_norm"][-1] != r.snapshots[STEPS]["weight_norm"][-1]


def test_a_random_init_has_unit_spread_far_from_zero(xavier):
    # the contrast that makes the test above meaningful
    assert np.all(xavier.snapshots[STEPS]["unit_spread"] > 0.1)


def test_same_seed_same_curves_other_seed_other_curves():
    a = initdiag.train_probe(**dict(DEEP, init="he_normal", seed=3))
    b = initdiag.train_probe(**dict(DEEP, init="he_normal", seed=3))
    c = initdiag.train_probe(**dict(DEEP, init="he_normal", seed=4))
    for name in a.curves:
        np.testing.assert_array_equal(a[name], b[name])
    assert a.scalars == b.scalars
    for step in a.snapshots:
        for m in a.snapshots[step].metrics:
            np.testing.assert_array_equal(a.snapshots[step][m], b.snapshots[step][m])
    assert not np.array_equal(a["loss"], c["loss"])


def test_divergence_records_nan_and_stops():
    r = initdiag.train_probe(**DIVERGING)
    d = r.diverged_at
    assert d == 2
    for name, v in r.curves.items():
        assert np.all(np.isnan(v[d - 1:])), name
    assert np.all(np.isfinite(r["loss"][:d - 1]))
    assert np.isnan(r.scalars["test_loss"]) and np.isnan(r.final_loss())
    assert all(s < d for s in r.snapshots) and 0 in r.snapshots
    assert r.steps_to(10.0) is None or r.steps_to(10.0) < d


def test_json_round_trip_bit_for_bit(tmp_path):
    s = initdiag.train_sweep(["tanh"], ["he_normal", "zeros"], depths=[10], widths=[64],
                             batch=128, steps=STEPS)
    diverged = initdiag.train_probe(**DIVERGING)
    assert diverged.diverged_at is not None  # NaN in the file
    sweep = initdiag.TrainSweep([*s, diverged], {"note": "x"})
    back = initdiag.load(sweep.to_json(tmp_path / "train.json"))
    assert isinstance(back, initdiag.TrainSweep) and back == sweep
    for r, q in zip(sweep, back):
        for name in r.curves:
            assert r[name].tobytes() == q[name].tobytes(), name
        for step in r.snapshots:
            for m in r.snapshots[step].metrics:
                assert r.snapshots[step][m].tobytes() == q.snapshots[step][m].tobytes()
    one = initdiag.load(s[0].to_json(tmp_path / "one.json"))
    assert isinstance(one, initdiag.TrainResult) and one == s[0]
    doc = json.loads((tmp_path / "train.json").read_text())
    assert doc["kind"] == "train_sweep" and doc["schema"] == "initdiag.results"


def test_to_frame_shape_and_columns():
    r = initdiag.train_probe(init="he_normal", **DEEP)
    f = r.to_frame()
    from initdiag.train.result import FRAME_COLUMNS

    assert tuple(f.columns) == FRAME_COLUMNS
    S, L = STEPS, 10
    assert len(f) == S * (2 + 2 * L) + 2  # loss, accuracy; grad, update per layer; 2 test numbers
    loss = f[f.metric == "loss"].sort_values("step")
    np.testing.assert_array_equal(loss.value, r["loss"])
    upd = f[(f.metric == "update_ratio") & (f.step == 5)].sort_values("layer")
    np.testing.assert_array_equal(upd.value, r["update_ratio"][4])
    assert set(f.layer.dropna()) == set(np.arange(1.0, L + 1))
    assert f[f.metric == "test_loss"].value.item() == r.scalars["test_loss"]
    snap = r.snapshot_frame()
    assert set(snap.step) == set(r.snapshots) == {0, 20, 100, STEPS}


def test_train_fn_on_a_plain_mlp_equals_the_plain_optax_loop(digits_batches):
    keys = jax.random.split(jax.random.key(7), 2)
    params = {"W": [jax.random.normal(keys[0], (64, 16)) / 8.0], "b": [jnp.zeros(16)],
              "W_out": jax.random.normal(keys[1], (16, 10)) / 4.0, "b_out": jnp.zeros(10)}
    r = initdiag.train_fn(_tanh_mlp, params, "digits", steps=STEPS, batch=128, name="mlp",
                          snapshots=(0, STEPS))
    losses, after = _plain_loop(_tanh_mlp, params, *digits_batches, 0.1)
    _within_rounding(r["loss"], losses)
    assert r.is_model and r.layers == ("['W'][0]", "['W_out']")
    ratio = [np.linalg.norm(np.float64(after[0]["W_out"]) - np.float64(params["W_out"]))
             / np.linalg.norm(np.float64(params["W_out"]))]
    np.testing.assert_allclose(r["update_ratio"][0, 1], ratio, rtol=1e-4)
    assert "grad_preact_rms" not in r.curves and r["update_ratio"].shape == (STEPS, 2)
    assert set(r.snapshots) == {0, STEPS} and r.final_loss() < 0.5
    assert r.snapshots[0].config["model"] == "mlp" and "grad_rms" in r.snapshots[0].metrics
    with pytest.raises(ValueError, match=r"shape \[batch, 1\].*teacher"):
        initdiag.train_fn(_tanh_mlp, params, "teacher", steps=2)


@pytest.mark.parametrize("kwargs, match", [
    (dict(task="mnist"), r"invalid task 'mnist'.*Valid choices: digits, teacher"),
    (dict(optimizer="rmsprop"), r"invalid optimizer 'rmsprop'.*Valid choices: sgd, adam"),
    (dict(steps=0), r"steps must be an integer >= 1; got 0"),
    (dict(steps=-3), r"steps must be an integer >= 1; got -3"),
    (dict(lr=0.0), r"lr must be a number > 0; got 0.0"),
    (dict(lr=-0.1), r"lr must be a number > 0; got -0.1"),
    (dict(snapshots=(0, 21)), r"snapshots must be .* steps in \[0, 20\]; got \[0, 21\]"),
    (dict(batch=5000), r"batch=5000 exceeds the 1348 rows of task 'digits'"),
])
def test_bad_inputs_name_the_value_and_the_choices(kwargs, match):
    with pytest.raises(ValueError, match=match):
        # checked before anything is drawn or compiled
        initdiag.train_probe(**{"init": "he_normal", "depth": 3, "width": 8, "batch": 16,
                                "steps": 20, **kwargs})


def test_digits_split_and_standardisation():
    from sklearn.datasets import load_digits
    from sklearn.preprocessing import StandardScaler

    raw = load_digits()
    t = load_task("digits", 5)
    assert t.x_train.shape == (1797 - DIGITS_TEST, 64) and t.x_test.shape == (DIGITS_TEST, 64)
    np.testing.assert_array_equal(np.sort(np.concatenate([t.train_rows, t.test_rows])),
                                  np.arange(1797))  # a partition of the images
    # sklearn's own scaler (fitted on the training rows; it leaves constant pixels unscaled)
    scaler = StandardScaler().fit(raw.data[t.train_rows])
    np.testing.assert_allclose(t.x_train, scaler.transform(raw.data[t.train_rows]), atol=1e-5)
    np.testing.assert_allclose(t.x_test, scaler.transform(raw.data[t.test_rows]), atol=1e-5)
    np.testing.assert_array_equal(t.y_train, raw.target[t.train_rows])
    np.testing.assert_array_equal(t.y_test, raw.target[t.test_rows])
    again, other = load_task("digits", 5), load_task("digits", 6)
    np.testing.assert_array_equal(again.test_rows, t.test_rows)
    assert not np.array_equal(other.test_rows, t.test_rows)  # the split comes from the seed


def test_import_initdiag_imports_neither_optax_nor_sklearn():
    code = ("import sys, initdiag; print(sorted(m for m in ('optax', 'sklearn') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_missing_optional_dependency_names_the_extra(monkeypatch):
    from initdiag.train.tasks import require

    monkeypatch.setitem(sys.modules, "optax", None)
    with pytest.raises(ImportError, match=r"pip install 'initdiag\[train\]'"):
        require("optax")


def test_regression_checks_accept_training_runs(tmp_path):
    s = initdiag.train_sweep(["tanh"], ["he_normal", "zeros"], depths=[10], widths=[64],
                             batch=128, steps=STEPS)
    path = initdiag.save_baseline(s, tmp_path / "base.json")
    assert initdiag.compare(s, path).passed
    from initdiag.regression.rerun import rerun

    assert initdiag.compare(rerun(initdiag.load_baseline(path)), path).passed
    import dataclasses

    curves = {**s[0].curves, "loss": s[0]["loss"].copy()}
    curves["loss"][6] *= 1.01  # a 1% change of one step's loss
    drifted = initdiag.TrainSweep([dataclasses.replace(s[0], curves=curves), s[1]])
    cmp = initdiag.compare(drifted, path)
    assert not cmp.passed and [(d.metric, d.site) for d in cmp.deviations] == [("loss", "step 7")]
    assert "step 7" in cmp.render()
    assert initdiag.update_baseline(drifted, path).rewritten
    with pytest.raises(TypeError, match="like with like"):
        initdiag.compare(initdiag.probe("tanh", depth=10, width=64, batch=128), path)


# --- the report's training section -------------------------------------------------------------

@pytest.fixture
def _close_figures():
    import matplotlib.pyplot as plt

    yield
    plt.close("all")


def test_loss_panel_one_line_per_init_in_the_palette_with_the_threshold(xavier, small_normal,
                                                                       _close_figures):
    import matplotlib.pyplot as plt

    from initdiag.report import style
    from initdiag.report.train_data import smoothed
    from initdiag.report.train_figures import plot_train_curve

    palette = style.init_palette(["glorot_normal", "normal", "zeros"])
    _, ax = plt.subplots()
    plot_train_curve(initdiag.TrainSweep([xavier, small_normal]), "loss", activation="tanh",
                     ax=ax, palette=palette)
    lines = {l.get_label(): l for l in ax.lines if not l.get_label().startswith("_")}
    assert set(lines) == {"glorot_normal", "normal"}
    for label, line in lines.items():
        assert line.get_color() == palette[label].color
    np.testing.assert_array_equal(lines["glorot_normal"].get_ydata(),
                                  smoothed(xavier["loss"], STEPS))
    threshold = [l for l in ax.lines if l.get_label() == "_nolegend_"]
    assert [tuple(l.get_ydata()) for l in threshold] == [(xavier.threshold(),) * 2]
    assert ax.get_yscale() == "log"
    # the smoothed curve crosses the threshold exactly at steps_to
    t = xavier.steps_to()
    y = smoothed(xavier["loss"], STEPS)
    assert y[t - 1] <= xavier.threshold() < y[:t - 1].min()


def test_update_ratio_panel_layers_and_the_1e3_reference(xavier, zeros, _close_figures):
    import matplotlib.pyplot as plt

    from initdiag.report.train_figures import plot_update_ratio

    _, ax = plt.subplots()
    plot_update_ratio([xavier], ax=ax)
    ref = [l for l in ax.lines if l.get_label() == "_nolegend_"]
    assert [tuple(l.get_ydata()) for l in ref] == [(1e-3, 1e-3)]
    layers = [l for l in ax.lines if l.get_label().startswith("layer")]
    assert [l.get_label() for l in layers] == ["layer 1", "layer 2", "layer 5", "layer 10"]
    np.testing.assert_array_equal(layers[-1].get_ydata(), xavier["update_ratio"][:, 9])
    _, ax = plt.subplots()
    plot_update_ratio([zeros], ax=ax)  # 0 / 0 at every step: nothing drawable, said so
    assert any("undefined" in t.get_text() for t in ax.texts)


def test_cli_report_train_end_to_end(tmp_path, capsys, xavier):
    from initdiag import cli
    from initdiag.report.train_figures import TRAIN_FIGURES

    out = tmp_path / "rep"
    # a fresh process, as a user runs it: its second process (forked before JAX starts; this
    # test process's JAX is running) computes the theory and shares the figures
    proc = subprocess.run([sys.executable, "-m", "initdiag", "report", "--activations", "tanh",
                           "--inits", "xavier_normal,zeros", "--depth", "10", "--width", "64",
                           "--batch", "128", "--train", "200", "--title", "<b>t</b>",
                           "--out", str(out), "--quiet", "--no-cache"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    files = {p.name for p in out.iterdir()}
    assert {"train.json", *(f"{n}.png" for n in TRAIN_FIGURES)} <= files
    runs = initdiag.load(out / "train.json")
    assert isinstance(runs, initdiag.TrainSweep)
    # the sweep's runs, then the unhealthy one (zeros) with batchnorm and with layernorm
    assert [(r.config["init"], r.config["norm"]) for r in runs] == [
        ("glorot_normal", None), ("zeros", None), ("zeros", "batchnorm"), ("zeros", "layernorm")]
    np.testing.assert_array_equal(runs[0]["loss"], xavier["loss"])  # the same run, bit for bit
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "&lt;b&gt;t&lt;/b&gt;" in page and "<b>t</b>" not in page
    start = page.index('id="train-table"')
    table = page[start:page.index("</table>", start)]
    rows = re.findall(r"<tr>(.*?)</tr>", table, re.S)[1:]
    assert len(rows) == 4
    assert "glorot_normal" in rows[0] and "healthy" in rows[0]
    assert f">{xavier.final_loss():.3g}<" in rows[0] and f">{xavier.steps_to()}<" in rows[0]
    assert "zeros" in rows[1] and "symmetric" in rows[1] and "not reached" in rows[1]
    assert "batchnorm" in rows[2] and "layernorm" in rows[3]
    for name in TRAIN_FIGURES:
        assert re.search(rf'<figure id="fig-{name}">\s*<h3>T\d\. .*?<img src="data:image/png',
                         page, re.S), name
    # the figures' timing starts after the training runs and their figures, and says so
    timings = json.loads((out / "results.json").read_text())["meta"]["report"]["timings_s"]
    assert "training (incl. compilation and the probe at the snapshots)" in timings
    assert "training figures" in timings
    assert not [k for k in timings if "end of the sweep" in k], list(timings)
    figures = [k for k in timings if k.startswith("figures")]
    assert len(figures) == 1 and re.fullmatch(
        r"figures \(\d of 8 drawn in the second process; from the end of the training figures\)",
        figures[0]), figures
    assert cli.main(["report", "--train", "0", "--out", str(tmp_path / "x")]) == 2
    assert "--train must be >= 1; got 0" in capsys.readouterr().err


def test_outcome_text_for_the_command_line(xavier, small_normal):
    """The summary ``initdiag report --train`` prints: the setup, then one aligned line per
    configuration with its step-0 verdict beside its outcome, the numbers of the runs."""
    from initdiag.report.train_data import outcome_text

    text = outcome_text(initdiag.TrainSweep([xavier, small_normal]))
    head, columns, *rows = text.splitlines()
    assert head == ("training: digits, sgd lr=0.1, 200 steps (2 runs; final loss = mean of the "
                    "last 20 steps)")
    assert columns.split() == ["configuration", "step", "0", "final", "loss", "steps", "to",
                               f"{xavier.threshold():.3g}", "test", "acc"]
    assert len(rows) == 2
    for row, run, verdict in zip(rows, (xavier, small_normal), ("healthy", "vanishing")):
        steps = run.steps_to()
        assert row.split() == [run.config["activation"], "/", run.config["init"], verdict,
                               f"{run.final_loss():.3g}",
                               *(["not", "reached"] if steps is None else [str(steps)]),
                               f"{run.scalars['test_accuracy']:.3g}"]
