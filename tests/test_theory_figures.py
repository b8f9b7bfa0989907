"""Theory figures, tested through their artists."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from initdiag import theory  # noqa: E402
from initdiag.analysis.jacobian import jacobian_spectrum  # noqa: E402
from initdiag.report.theory_data import init_point  # noqa: E402
from initdiag.report.theory_figures import jacobian_histogram, phase_diagram  # noqa: E402


@pytest.fixture(autouse=True)
def close_figs():
    yield
    plt.close("all")


def test_phase_diagram_places_inits_and_the_critical_line():
    ax = phase_diagram("tanh", inits=["xavier_normal", "he_normal", "lecun_normal", "zeros"],
                       bias_var_range=(0.0, 0.3), grid=(30, 16))
    at = {t.get_text(): t.xy for t in ax.texts if hasattr(t, "xy")}
    # glorot_normal and lecun_normal share sigma_w^2 = 1 at equal widths: one stacked label
    assert at["glorot_normal"] == at["lecun_normal"] == pytest.approx((1.0, 0.0))
    assert at["he_normal"] == pytest.approx((2.0, 0.0))
    stacked = sorted((t for t in ax.texts if hasattr(t, "xy") and t.xy == at["glorot_normal"]),
                     key=lambda t: t.get_position()[1])
    assert [t.get_text() for t in stacked] == ["lecun_normal", "glorot_normal"]
    assert "zeros" in ax.get_title()  # listed as not placed
    assert init_point("he_normal", 256) == pytest.approx((2.0, 0.0))
    assert r"edge of chaos ($\chi_1 = 1$)" in ax.get_legend_handles_labels()[1]
    # the grid's chi_1 changes sign across the exact edge of chaos at sigma_b^2 = 0.05
    w = theory.edge_of_chaos("tanh", 0.05)
    res = theory.phase_grid("tanh", [w / 1.05, w * 1.05], [0.05])
    assert res["chi1"][0, 0] < 1 < res["chi1"][0, 1]
    assert ax.get_xscale() == "log"


def test_jacobian_histogram_one_line_per_spectrum():
    s = [jacobian_spectrum("linear", i, depth=4, width=32) for i in ("orthogonal", "lecun_normal")]
    ax = jacobian_histogram(s)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0].startswith("orthogonal") and labels[1].startswith("lecun_normal")
    assert len(ax.patches) == 2


def test_report_figures_overlay_the_prediction_per_initializer():
    import initdiag
    from initdiag.report.figures import draw_figure

    s = initdiag.sweep(["tanh"], ["xavier_normal", "he_normal", "zeros"], depths=[8], widths=[32],
                       seeds=[0, 1], batch=16)
    fig = draw_figure("act_var", s)
    ax = fig.axes[0]
    dashed = [ln for ln in ax.get_lines() if ln.get_linewidth() == 0.9]
    assert len(dashed) == 2  # zeros: the theory does not apply, no line
    want = {tuple(np.round(theory.predict_result(r)["act_var"], 12)) for r in s if r.seed == 0
            and r.config["init"] != "zeros"}
    assert {tuple(np.round(ln.get_ydata(), 12)) for ln in dashed} == want
    grad = draw_figure("grad_rms", s).axes[0]
    line = [ln for ln in grad.get_lines() if ln.get_linewidth() == 0.9][0]
    assert line.get_ydata()[-1] > 0  # drawn through the measured last layer


def _band_polygon(ax):
    from matplotlib.collections import FillBetweenPolyCollection

    (band,) = [c for c in ax.collections if isinstance(c, FillBetweenPolyCollection)
               and c.get_label() == "_theory_band_"]
    return band


def test_activation_variance_band_is_the_finite_width_band_of_the_prediction():
    import initdiag
    from initdiag.report.figures import draw_figure

    s = initdiag.sweep(["relu"], ["he_normal"], depths=[6], widths=[16], seeds=[0], batch=8)
    ax = draw_figure("act_var", s).axes[0]
    band = _band_polygon(ax)
    assert band.get_zorder() < min(ln.get_zorder() for ln in ax.get_lines())  # behind the data
    assert band.get_alpha() <= 0.2  # light
    lo_q, hi_q = theory.predict_result(s[0]).band(2.0)
    # relu: Var[relu(z)], z ~ N(0, q), is q (1/2 - 1/(2 pi)) exactly
    k = 0.5 - 0.5 / np.pi
    verts = band.get_paths()[0].vertices
    x = np.arange(1, 7)
    for layer, lo, hi in zip(x, k * lo_q, k * hi_q):
        ys = verts[np.isclose(verts[:, 0], layer), 1]
        assert np.isclose(ys, lo, rtol=1e-9).any() and np.isclose(ys, hi, rtol=1e-9).any()
    assert np.all(hi_q > lo_q) and np.all(lo_q > 0)
    # gradients: the theory gives no band, the caption says so
    grad = draw_figure("grad_rms", s).axes[0]
    assert not [c for c in grad.collections if c.get_label() == "_theory_band_"]
    from initdiag.report.figures import FIGURES

    caps = {f.name: f.caption(s, None) for f in FIGURES}
    assert "no finite-width band" in caps["grad_rms"] and "+-2 standard" in caps["act_var"]


def test_report_phase_diagram_places_the_runs_initializers_per_activation():
    import initdiag
    from initdiag.report.figures import draw_figure

    s = initdiag.sweep(["tanh", "relu"], ["he_normal", "lecun_normal", "zeros"], depths=[4],
                       widths=[16], seeds=[0], batch=8)
    fig = draw_figure("phase_diagram", s)
    panels = [ax for ax in fig.axes if ax.get_xscale() == "log"]
    assert [ax.get_title().split(" ")[0] for ax in panels] == ["tanh", "relu"]
    for ax in panels:
        labels = {t.get_text(): t.xy for t in ax.texts if hasattr(t, "xy")}
        # sigma_w^2 = fan_in Var(W): He 2, LeCun 1 (biases zero): independent of the code
        assert labels["he_normal"] == pytest.approx((2.0, 0.0))
        assert labels["lecun_normal"] == pytest.approx((1.0, 0.0))
        assert "zeros" in ax.get_title() and "not placed" in ax.get_title()
    # theory does not apply with normalization: the figure is skipped, with the reason
    n = initdiag.sweep(["tanh"], ["he_normal"], depths=[4], widths=[8], batch=4,
                       norm="layernorm")
    with pytest.raises(ValueError, match="does not apply.*normalization"):
        draw_figure("phase_diagram", n)


def test_report_jacobian_figure_one_histogram_per_initializer():
    import initdiag
    from matplotlib.patches import StepPatch

    from initdiag.report.figures import draw_figure

    s = initdiag.sweep(["linear", "tanh"], ["orthogonal", "lecun_normal", "zeros"], depths=[6],
                       widths=[16], seeds=[0], batch=8)
    fig = draw_figure("jacobian", s)
    panels = [ax for ax in fig.axes if ax.get_xscale() == "log"]
    assert [ax.get_title() for ax in panels] == ["linear", "tanh"]
    lin = panels[0]
    steps = [p for p in lin.patches if isinstance(p, StepPatch)]
    assert len(steps) == 3
    # a deep linear orthogonal stack is an isometry: all its mass in the bin holding sigma = 1
    dens, edges = steps[0].get_data().values, steps[0].get_data().edges
    (k,) = np.flatnonzero((edges[:-1] <= 1.0) & (1.0 < edges[1:]))
    assert dens[k] * np.log10(edges[k + 1] / edges[k]) == pytest.approx(1.0)
    assert "σ = 0, not drawn: zeros" in " ".join(t.get_text() for t in lin.texts)
    legend = [t.get_text() for ax in fig.axes if ax.get_legend()
              for t in ax.get_legend().get_texts()]
    assert legend == ["orthogonal", "lecun_normal", "zeros"]


def test_report_predictions_shared_only_between_equal_distributions():
    """glorot_normal and lecun_normal draw the same distribution at equal fans (one computation);
    he_normal and he_uniform differ in distribution (two). Each equals its own prediction."""
    import initdiag
    from initdiag.report import data
    from initdiag.report.theory_data import predictions

    s = initdiag.sweep(["tanh"], ["glorot_normal", "lecun_normal", "he_normal", "he_uniform"],
                       depths=[4], widths=[16], seeds=[0], batch=8)
    preds = predictions(s)
    for config, runs in data.configurations(s):
        p = preds[data.config_key(config)]
        want = theory.predict("tanh", config["init"], depth=4, width=16, batch=8)
        assert p.config["init"] == config["init"]
        for m in ("act_var", "grad_preact_rms"):
            np.testing.assert_allclose(p[m], want[m], rtol=1e-12)
        np.testing.assert_allclose(p.log_sd, want.log_sd, rtol=1e-12)
