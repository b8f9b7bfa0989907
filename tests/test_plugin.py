"""The pytest plugin and the README's "Use in CI" example, run as a user runs them."""

import re
import shlex
from pathlib import Path

import pytest

import initdiag
from initdiag.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"


def ci_section():
    text = README.read_text()
    return text[text.index("## Use in CI"):]


def readme_test_source():
    block = re.search(r"```python\n(# tests/test_signal_propagation.py\n.*?)```", ci_section(), re.S)
    return block.group(1)


@pytest.fixture
def example(pytester):
    pytester.makepyfile(test_signal_propagation=readme_test_source())
    return pytester


def scale_stored(path, metric, factor):
    """Simulate a change of what the code computes: the stored numbers differ by ``factor``."""
    b = initdiag.load_baseline(path)
    r0 = b[0]
    vals = {**r0.values, metric: r0.values[metric] * factor}
    changed = initdiag.SweepResult([initdiag.ProbeResult(r0.config, r0.seed, vals, r0.scalars),
                                    *list(b)[1:]], b.meta)
    initdiag.save_baseline(changed, path, overwrite=True)


def test_readme_example_first_run_writes_then_passes_run_after_run(example):
    baseline = example.path / "test_signal_propagation" / "test_init_statistics.json"
    first = example.runpytest()
    first.assert_outcomes(passed=1, failed=1)
    first.stdout.fnmatch_lines([f"*initdiag baseline not found; created {baseline}*"])
    assert initdiag.load_baseline(baseline)[0].config["depth"] == 20
    content = baseline.read_bytes()
    for _ in range(2):
        example.runpytest().assert_outcomes(passed=2)
    assert baseline.read_bytes() == content


def test_drift_fails_with_the_table_pointing_at_the_users_test(example):
    example.runpytest()
    baseline = example.path / "test_signal_propagation" / "test_init_statistics.json"
    scale_stored(baseline, "preact_var", 1.21)
    res = example.runpytest()
    res.assert_outcomes(passed=1, failed=1)
    out = res.stdout.str()
    assert f"initdiag: results drift from the baseline {baseline}" in out
    # 20 layers of one config and seed, of 8 (config, seed) pairs x 20 layers x every metric
    assert f"20 of {8 * 20 * len(initdiag.METRICS)} values out of tolerance." in out
    assert "Error statistics over them:" in out and "--initdiag-update" in out
    assert re.search(r"tanh / glorot_normal depth=20 width=64 batch=64, seed 0:\n\S*\s+metric\s+"
                     r"layer\s+expected\s+got\s+error\s+tolerance", out)
    # (under CI=true pytest repeats the whole message in its short summary: read the first copy)
    first = out.split("short test summary info")[0]
    rows = re.findall(r"preact_var\s+(\d+)\s+(\S+)\s+(\S+)\s+(\S+) \(ratio\)", first)
    assert [int(r[0]) for r in rows] == list(range(1, 21))[:len(rows)] and len(rows) == 20
    assert all(float(e) == pytest.approx(0.21, rel=1e-9) for *_, e in rows)
    # the traceback shows the user's line, not the plugin's internals
    assert "initdiag_regression.check(result)" in out
    assert "pytest_plugin.py" not in out


def test_update_regenerates_drifting_baselines_and_fails_once(example):
    example.runpytest()
    baseline = example.path / "test_signal_propagation" / "test_init_statistics.json"
    scale_stored(baseline, "saturation", 0.0)
    res = example.runpytest("--initdiag-update")
    res.assert_outcomes(passed=1, failed=1)
    res.stdout.fnmatch_lines([f"*initdiag baseline regenerated (--initdiag-update): {baseline}*"])
    example.runpytest().assert_outcomes(passed=2)
    before = baseline.read_bytes()
    example.runpytest("--initdiag-update").assert_outcomes(passed=2)  # nothing drifts: untouched
    assert baseline.read_bytes() == before


def test_parametrized_names_and_basename(pytester):
    pytester.makepyfile(test_names="""
        import pytest, initdiag

        @pytest.mark.parametrize("act", ["tanh"])
        def test_p(initdiag_regression, act):
            r = initdiag.probe(act, "he_normal", depth=3, width=8, batch=8, seed=0)
            initdiag_regression.check(r)
            initdiag_regression.check(r, basename="second")
    """)
    pytester.runpytest().assert_outcomes(failed=1)
    assert (pytester.path / "test_names" / "test_p_tanh_.json").exists()
    pytester.runpytest().assert_outcomes(failed=1)  # now the second baseline is created
    assert (pytester.path / "test_names" / "second.json").exists()
    pytester.runpytest().assert_outcomes(passed=1)


def test_bad_arguments_fail_on_the_first_run_without_writing(pytester):
    pytester.makepyfile(test_bad="""
        import initdiag

        def test_t(initdiag_regression):
            r = initdiag.probe("tanh", "he_normal", depth=3, width=8, batch=8, seed=0)
            initdiag_regression.check(r, tolerances={"act_vr": {"rtol": 0.1}})
    """)
    res = pytester.runpytest()
    res.assert_outcomes(failed=1)
    res.stdout.fnmatch_lines(["*tolerances given for metric 'act_vr', which is not compared*"])
    assert not (pytester.path / "test_bad").exists()


def test_readme_cli_example_runs(tmp_path, monkeypatch, capsys):
    block = re.search(r"```bash\n(.*?)```", ci_section(), re.S).group(1)
    commands = [shlex.split(line.split("#")[0]) for line in block.splitlines() if line.strip()]
    assert len(commands) == 3 and all(c[:2] == ["initdiag", "check"] for c in commands)
    monkeypatch.chdir(tmp_path)
    assert [main(c[1:]) for c in commands] == [0, 0, 0]
    out = capsys.readouterr().out
    assert "created baseline ci/init-baseline.json" in out and '"passed": true' in out


TINY = 'initdiag.probe("tanh", "he_normal", depth=4, width=8, batch=8, seed={seed})'


def tiny_test(pytester, seed=0):
    pytester.makepyfile(test_tiny=f"""
        import initdiag

        def test_t(initdiag_regression):
            r = {TINY.format(seed=seed)}
            initdiag_regression.check(r)
    """)


def assert_points_at_the_users_test(out):
    assert "initdiag_regression.check(r)" in out  # the user's line ends the traceback
    for internal in ("compare.py", "baseline.py", "pytest_plugin.py", "During handling"):
        assert internal not in out, internal


def test_a_corrupted_baseline_fails_in_the_users_test_saying_how_to_regenerate(pytester):
    tiny_test(pytester)
    pytester.runpytest().assert_outcomes(failed=1)  # creates it
    baseline = pytester.path / "test_tiny" / "test_t.json"
    baseline.write_text(baseline.read_text()[:200])
    res = pytester.runpytest()
    res.assert_outcomes(failed=1)
    out = res.stdout.str()
    assert f"{baseline}: not valid JSON, the file is truncated or corrupted" in out
    assert "pytest --initdiag-update" in out
    assert_points_at_the_users_test(out)
    res = pytester.runpytest("--initdiag-update")
    res.assert_outcomes(failed=1)
    out = res.stdout.str()
    assert f"initdiag baseline regenerated (--initdiag-update): {baseline}" in out
    assert "truncated or corrupted" in out
    assert_points_at_the_users_test(out)
    pytester.runpytest().assert_outcomes(passed=1)


def test_a_seed_change_fails_in_the_users_test_saying_how_to_regenerate(pytester):
    tiny_test(pytester, seed=0)
    pytester.runpytest().assert_outcomes(failed=1)
    tiny_test(pytester, seed=1)
    res = pytester.runpytest()
    res.assert_outcomes(failed=1)
    out = res.stdout.str()
    assert "the baseline has seeds [0] but the current results have seeds [1]" in out
    assert "pytest --initdiag-update" in out
    assert_points_at_the_users_test(out)


def test_a_bad_argument_fails_in_the_users_test(pytester):
    pytester.makepyfile(test_bad="""
        import initdiag

        def test_t(initdiag_regression):
            r = initdiag.probe("tanh", "he_normal", depth=4, width=8, batch=8, seed=0)
            initdiag_regression.check(r, metrics=[])
    """)
    res = pytester.runpytest()
    res.assert_outcomes(failed=1)
    out = res.stdout.str()
    assert "metrics is empty: nothing would be compared" in out
    assert "initdiag_regression.check(r, metrics=[])" in out
    assert "compare.py" not in out and "pytest_plugin.py" not in out
    assert not (pytester.path / "test_bad").exists()


def test_baseline_names_follow_the_node_id(pytester):
    pytester.makepyfile(test_names="""
        import pytest, initdiag

        def probe(act):
            return initdiag.probe(act, "he_normal", depth=4, width=8, batch=8, seed=0)

        class TestTanh:
            def test_it(self, initdiag_regression):
                initdiag_regression.check(probe("tanh"))

        class TestRelu:
            def test_it(self, initdiag_regression):
                initdiag_regression.check(probe("relu"))

        class TestOuter:
            class TestInner:
                def test_it(self, initdiag_regression):
                    initdiag_regression.check(probe("sigmoid"))

        @pytest.mark.parametrize("act, gain", [("relu", 0.5)])
        def test_x(initdiag_regression, act, gain):
            initdiag_regression.check(probe(act))

        @pytest.mark.parametrize("tag", ["a", "b"], ids=["x" * 300 + "a", "x" * 300 + "b"])
        def test_long(initdiag_regression, tag):
            initdiag_regression.check(probe("tanh" if tag == "a" else "relu"))

        def test_plain(initdiag_regression):
            initdiag_regression.check(probe("tanh"))
    """)
    pytester.runpytest().assert_outcomes(failed=7)  # each test writes its own baseline
    folder = pytester.path / "test_names"
    names = sorted(f.name for f in folder.iterdir())
    short = [n for n in names if not n.startswith("test_long")]
    assert short == ["TestOuter__TestInner__test_it.json", "TestRelu__test_it.json",
                     "TestTanh__test_it.json", "test_plain.json", "test_x_relu-0.5_.json"]
    long = [n for n in names if n.startswith("test_long_xxx")]
    assert len(long) == 2 and all(len(n.encode()) <= 255 for n in long)
    assert initdiag.load_baseline(folder / "TestRelu__test_it.json").config["activation"] == "relu"
    assert initdiag.load_baseline(folder / "TestTanh__test_it.json").config["activation"] == "tanh"
    pytester.runpytest().assert_outcomes(passed=7)


def test_two_tests_whose_names_sanitize_alike_do_not_share_a_baseline(pytester):
    pytester.makepyfile(test_clash="""
        import pytest, initdiag

        @pytest.mark.parametrize("sep", ["a/b", "a:b"])
        def test_c(initdiag_regression, sep):
            initdiag_regression.check(initdiag.probe("tanh", "he_normal", depth=4, width=8,
                                                     batch=8, seed=0))
    """)
    pytester.runpytest().assert_outcomes(failed=2)
    res = pytester.runpytest()
    res.assert_outcomes(passed=1, failed=1)
    res.stdout.fnmatch_lines(["*test_clash.py::test_c[[]a:b] and test_clash.py::test_c[[]a/b] "
                              "map to the same baseline file*test_c_a_b_.json*"])
    assert "basename=" in res.stdout.str()
    assert [f.name for f in (pytester.path / "test_clash").iterdir()] == ["test_c_a_b_.json"]
