"""The metric table (initdiag.metrics): what follows from it, and that its claims hold."""

import ast
import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

import initdiag
from initdiag import metrics
from initdiag.regression import tolerance

ROOT = Path(__file__).resolve().parents[1]

OLD_NAMES = ("preact_mean", "preact_var", "act_mean", "act_var", "saturation", "zero_frac",
             "dead_frac", "unit_spread", "grad_preact_rms", "grad_act_rms", "grad_weight_norm",
             "weight_norm", "grad_weight_ratio")


def _readme_script():
    spec = importlib.util.spec_from_file_location("readme_metrics",
                                                  ROOT / "scripts" / "readme_metrics.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_public_metrics_is_name_to_definition_in_table_order():
    assert isinstance(initdiag.METRICS, dict)
    assert list(initdiag.METRICS) == [m.name for m in metrics.TABLE]
    assert all(initdiag.METRICS[m.name] == m.definition for m in metrics.TABLE)
    # the metrics of earlier versions keep their names and their place at the front
    assert tuple(initdiag.METRICS)[:len(OLD_NAMES)] == OLD_NAMES
    assert initdiag.METRICS["act_var"] == "variance of the layer output x^l over batch and units"


def test_rows_are_frozen_and_checked():
    row = metrics.BY_NAME["act_var"]
    with pytest.raises(AttributeError):
        row.kind = "signed"
    with pytest.raises(ValueError, match="kind"):
        metrics.Metric("x", "d", "counts")
    with pytest.raises(ValueError, match="scale"):
        metrics.Metric("x", "d", "signed", power=1)  # a signed metric needs its scale
    with pytest.raises(ValueError, match="scale"):
        metrics.Metric("x", "d", "positive", power=1, scale="act_var")
    with pytest.raises(ValueError, match="derived"):
        metrics.Metric("x", "d", "positive", power=1, formula=lambda v: v["act_var"])


def test_readme_metric_table_is_generated_from_the_table():
    """README's table is scripts/readme_metrics.py's output: run it after changing the table."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    mod = _readme_script()
    assert mod.regenerated(text) == text, "README.md is not current: run scripts/readme_metrics.py"
    section = text.split(mod.BEGIN + "\n", 1)[1].split(mod.END, 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    assert [r.split("`")[1] for r in rows] == list(initdiag.METRICS)
    for r, (name, definition) in zip(rows, initdiag.METRICS.items()):
        cells = [c.strip() for c in r.strip("|").split(" | ")]
        assert cells[2].replace("\\|", "|") == definition, name
    with pytest.raises(ValueError, match="BEGIN"):
        mod.regenerated(text.replace(mod.END, ""))


def test_table_module_imports_only_numpy_and_the_standard_library():
    tree = ast.parse((ROOT / "initdiag" / "metrics.py").read_text(encoding="utf-8"))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= {"__future__", "dataclasses", "typing", "numpy"}, imported


def test_probe_reports_every_row_in_table_order():
    r = initdiag.probe("tanh", "he_normal", depth=3, width=8, batch=4)
    assert r.metrics == tuple(initdiag.METRICS)
    assert all(r[m].dtype == np.float64 and r[m].shape == (3,) for m in r.metrics)


@pytest.mark.parametrize("act, init", [("tanh", "normal(std=1.5)"), ("relu", "he_normal"),
                                       ("sigmoid", "orthogonal"), ("relu", "zeros")])
def test_measured_values_are_of_their_rows_kind(act, init):
    r = initdiag.probe(act, init, depth=6, width=16, batch=8, bias_init="normal(std=0.3)")
    for m in metrics.TABLE:
        v = r[m.name]
        ok = np.isnan(v) | {"fraction": (v >= 0) & (v <= 1), "positive": v >= 0,
                            "signed": np.isfinite(v)}[m.kind]
        assert ok.all(), (m.name, v)


def test_derived_formula_grad_weight_ratio():
    values = {m.name: np.array([2.0, 3.0, 0.0]) for m in metrics.measured()}
    values["weight_norm"] = np.array([4.0, 0.0, 0.0])
    out = metrics.with_derived(values)
    assert list(out) == list(initdiag.METRICS)
    np.testing.assert_array_equal(out["grad_weight_ratio"], [0.5, np.nan, np.nan])
    r = initdiag.probe("relu", "zeros", depth=3, width=4, batch=2)
    assert np.all(r["weight_norm"] == 0) and np.all(np.isnan(r["grad_weight_ratio"]))


def test_seeds_pool_by_kind():
    stack = np.array([[1.0, 0.2, -1.0], [100.0, 0.4, 3.0]])
    # positive: geometric mean; a 0 in one seed gives 0
    np.testing.assert_allclose(metrics.pool("act_var", stack[:, :2]), [10.0, math.sqrt(0.08)])
    assert metrics.pool("grad_preact_rms", np.array([[0.0], [5.0]]))[0] == 0
    # signed and fractions: arithmetic mean
    np.testing.assert_allclose(metrics.pool("act_mean", stack), [50.5, 0.3, 1.0])
    np.testing.assert_allclose(metrics.pool("dead_frac", stack[:, 1:2]), [0.3])
    # a name not in the table: geometric, as before the table
    np.testing.assert_allclose(metrics.pool("from_a_plugin", stack[:, :1]), [10.0])


def test_kinds_give_tolerances_log_axes_and_scales():
    from initdiag.report import plots

    assert set(metrics.COMPARISON.values()) == set(tolerance.KINDS)
    by_kind = {m.name: m.kind for m in metrics.TABLE}
    for name, t in initdiag.regression.DEFAULT_TOLERANCES.items():
        expected = {"positive": ("ratio", 1e-3, 0.0), "fraction": ("abs", 0.0, 1e-3),
                    "signed": ("scaled", 1e-3, 0.0)}[by_kind[name]]
        assert tuple(t) == expected, name
    assert set(initdiag.regression.DEFAULT_TOLERANCES) == set(initdiag.METRICS)
    assert tolerance.SCALE_OF["preact_mean"] == "preact_var"
    assert tolerance.SCALE_OF["act_mean"] == "act_var"
    assert set(tolerance.SCALE_OF) == {n for n, k in by_kind.items() if k == "signed"}
    assert plots.LOG_METRICS == {n for n, k in by_kind.items() if k == "positive"}
    assert plots.YLABELS["act_var"] == r"Var[$x^l$] (output of layer $l$)"
