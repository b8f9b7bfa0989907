"""Theory figures, tested through their artists."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from initdiag import theory  # noqa: E402
from initdiag.jacobian import jacobian_spectrum  # noqa: E402
from initdiag.report.theory_figures import init_point, jacobian_histogram, phase_diagram  # noqa: E402


@pytest.fixture(autouse=True)
def close_figs():
    yield
    plt.close("all")


def test_phase_diagram_places_inits_and_the_critical_line():
    ax = phase_diagram("tanh", inits=["xavier_normal", "he_normal", "lecun_normal", "zeros"],
                       bias_var_range=(0.0, 0.3), grid=(30, 16))
    texts = [t.get_text() for t in ax.texts]
    # glorot_normal and lecun_normal share sigma_w^2 = 1 at equal widths: one label
    assert "glorot_normal, lecun_normal" in texts and "he_normal" in texts
    assert "zeros" in ax.get_title()  # listed as not placed
    assert init_point("he_normal", 256) == pytest.approx((2.0, 0.0))
    assert "edge of chaos (chi_1 = 1)" in ax.get_legend_handles_labels()[1]
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
