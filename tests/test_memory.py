"""Memory plans: the estimate's parts follow the shapes; automatic switches say so; no fit -> error."""

import pytest

import initdiag
from initdiag.engine import memory
from initdiag.nn.stacks import make_spec


def test_estimate_parts_follow_the_shapes():
    spec = make_spec(depth=100, width=256)
    stored = memory.estimate(spec, 128, remat=0, draw_in_scan=False)
    assert stored["weights"] == 4 * 100 * (256 * 256 + 256)
    assert stored["activations"] == 4 * 128 * 100 * 512
    remat = memory.estimate(spec, 128, remat=10, draw_in_scan=True)
    assert remat["activations"] == 4 * 128 * 256 * (10 + 20)
    assert remat["weights"] == 4 * 4 * 256 * 256


def test_auto_plan_switches_and_says_so():
    spec = make_spec(depth=2000, width=256)
    full = sum(memory.estimate(spec, 64, remat=0, draw_in_scan=False).values())
    with pytest.warns(memory.MemoryPlanWarning, match="weights drawn in the scan"):
        plan = memory.plan(spec, 64, budget=full // 2)
    assert plan.draw_in_scan and plan.estimate <= full // 2
    assert memory.plan(spec, 64, budget=10 * full).draw_in_scan is False


def test_no_plan_fits_names_the_estimates():
    spec = make_spec(depth=50, width=256)
    with pytest.raises(MemoryError, match=r"budget of 0\.00 GiB.*remat chunks of 5"):
        memory.plan(spec, 64, budget=1000)
    with pytest.raises(ValueError, match="draw_weights.*in_scan"):
        memory.plan(spec, 64, draw_weights="lazy")


def test_probe_reports_its_plan():
    spec_kw = dict(activation="relu", depth=40, width=32, batch=16)
    full = sum(memory.estimate(make_spec(depth=40, width=32), 16, remat=0,
                               draw_in_scan=True).values())
    with pytest.warns(memory.MemoryPlanWarning):
        r = initdiag.probe(memory_budget=full - 1, **spec_kw)
    assert r.meta["memory"]["remat"] > 0 and r.meta["memory"]["draw_in_scan"]
    ref = initdiag.probe(**spec_kw)
    assert ref.meta["memory"]["remat"] == 0
    for m in ref.metrics:
        assert (r[m] == ref[m]).all() or ((r[m] != r[m]) == (ref[m] != ref[m])).all()
