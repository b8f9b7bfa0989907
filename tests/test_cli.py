"""The command line as a user runs it."""

import subprocess
import sys

import initdiag


def run(*args):
    return subprocess.run([sys.executable, "-m", "initdiag", *args], capture_output=True, text=True)


def test_table_prints_layers_and_saves_json(tmp_path):
    out = tmp_path / "r.json"
    p = run("table", "--activations", "tanh", "--inits", "he_normal,normal(std=1.0)", "--depth", "12",
            "--width", "16", "--batch", "8", "--every", "5", "--json", str(out))
    assert p.returncode == 0, p.stderr
    assert "tanh / normal(std=1.0)" in p.stdout
    assert len(initdiag.load(out)) == 2


def test_bad_name_exits_2_with_message():
    p = run("table", "--inits", "xavier", "--depth", "2", "--width", "4")
    assert p.returncode == 2
    assert "xavier_uniform" in p.stderr


import pytest  # noqa: E402

from initdiag import cli  # noqa: E402


@pytest.fixture
def no_probing(monkeypatch):
    """Make any probing fail loudly: the checks under test must come before it."""
    import importlib

    def fail(*args, **kwargs):
        raise AssertionError("probed although the options were invalid")

    # the module (initdiag.probe is also the name of the function the package exports)
    monkeypatch.setattr(importlib.import_module("initdiag.probe"), "sweep", fail)


def test_table_rejects_unknown_metrics_before_probing(no_probing, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["table", "--metrics", "act_var,foo", "--depth", "3", "--width", "4"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "unknown metric 'foo'" in err and "Traceback" not in err
    for name in initdiag.METRICS:
        assert name in err


@pytest.mark.parametrize("sub", ["table", "report"])
@pytest.mark.parametrize("opt, value", [("--width", "0"), ("--width", "8,0"), ("--depth", "0"),
                                        ("--batch", "0")])
def test_sizes_below_one_are_named_by_option(no_probing, capsys, tmp_path, sub, opt, value):
    args = [sub, opt, value, "--activations", "tanh", "--inits", "he_normal"]
    if sub == "report":
        args += ["--out", str(tmp_path / "o")]
    assert cli.main(args) == 2
    assert capsys.readouterr().err == f"initdiag: error: {opt} must be >= 1; got 0\n"
    assert not (tmp_path / "o").exists()


def test_unwritable_outputs_are_found_before_probing(no_probing, capsys, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert cli.main(["table", "--depth", "3", "--width", "4", "--json",
                     str(blocker / "r.json")]) == 2
    assert "--json" in capsys.readouterr().err
    assert cli.main(["table", "--depth", "3", "--width", "4", "--json", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert cli.main(["report", "--depth", "3", "--width", "4", "--out",
                     str(blocker / "rep")]) == 2
    err = capsys.readouterr().err
    assert "cannot create the output folder" in err and "is not a folder" in err
    assert cli.main(["report", "--depth", "3", "--width", "4", "--out", str(blocker)]) == 2
    assert "exists and is not a folder" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_help_lists_defaults_and_names():
    from initdiag.nn.initializers import STANDARD_INITIALIZERS

    parser = cli.build_parser()
    subs = next(a for a in parser._actions if a.dest == "command").choices
    for name in ("report", "table"):
        for action in subs[name]._actions:
            if not action.option_strings or action.dest == "help":
                continue
            assert "default" in action.help, (name, action.option_strings)
    report = run("report", "--help").stdout
    table = run("table", "--help").stdout
    for text in (report, table):
        flat = " ".join(text.split())
        assert "(default: every standard initializer: " + ", ".join(STANDARD_INITIALIZERS) \
            + ")" in flat
        assert "(default: tanh,sigmoid,relu)" in flat
    flat = " ".join(table.split())
    assert "of: " + ", ".join(initdiag.METRICS) in flat
    assert "(default: preact_var, act_var, saturation, dead_frac, grad_preact_rms, " \
           "grad_weight_ratio)" in flat
