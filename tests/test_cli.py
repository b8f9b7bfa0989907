"""The command line as a user runs it."""

import re
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


# --- the probe options derive from the ProbeConfig schema --------------------------------------

def _subparsers(parser):
    return next(a for a in parser._actions if a.dest == "command").choices


def _options(subparser):
    return {s: a for a in subparser._actions for s in a.option_strings}


def test_every_cli_field_is_an_option_of_every_probing_subcommand():
    from initdiag import config

    subs = _subparsers(cli.build_parser())
    spelled = {"use_bias": "--no-bias"}  # the one field spelled otherwise (Field.cli_name)
    assert config.SCHEMA["use_bias"].cli_name == "no_bias"
    for name in config.CLI_FIELDS:
        flag = spelled.get(name, "--" + name.replace("_", "-"))
        field = config.SCHEMA[name]
        for sub in ("report", "table", "check"):
            action = _options(subs[sub]).get(flag)
            assert action is not None, (sub, name, flag)
            assert field.doc in action.help and "(default: " in action.help, (sub, name)
            if field.choices:
                assert set(field.choices) <= set(action.choices), (sub, name)
    # what is not a CLI field is not an option (besides the CLI's own sweep axes)
    report = _options(subs["report"])
    assert "--input-width" not in report and "--hist-bins" not in report
    assert "--histograms" not in report and "--dtype" not in report


def test_schema_options_reach_the_sweep_from_the_command_line_and_from_toml(tmp_path):
    from initdiag import ProbeConfig
    from initdiag.cli import options
    from initdiag.cli.report import REPORT_KEYS

    parser = cli.build_parser()
    given = ["--bias-init", "normal(std=0.1)", "--no-bias", "--norm", "layernorm",
             "--residual", "0.5", "--input", "uniform", "--loss", "half_mse",
             "--saturation-threshold", "0.9"]
    expected = dict(bias_init="normal(std=0.1)", use_bias=False, norm="layernorm",
                    residual=0.5, input="uniform", loss="half_mse", saturation_threshold=0.9)
    kw = options.sweep_kwargs(parser.parse_args(["table", *given]))
    assert {k: kw[k] for k in expected} == expected
    assert ProbeConfig(**{k: kw[k] for k in expected}).validated()  # valid field values

    cfg = tmp_path / "s.toml"
    cfg.write_text('bias-init = "normal(std=0.1)"\nno_bias = true\nnorm = "layernorm"\n'
                   'residual = 0.5\ninput = "uniform"\nloss = "half_mse"\n'
                   'saturation_threshold = 0.9\n')
    args = options.merge_config(parser.parse_args(["report", "--config", str(cfg)]),
                                REPORT_KEYS)
    kw = options.sweep_kwargs(args)
    assert {k: kw[k] for k in expected} == expected

    # not given: the defaults of the sweep; "none" is None for a field that may be None
    kw = options.sweep_kwargs(parser.parse_args(["table", "--norm", "none"]))
    assert kw["norm"] is None and "use_bias" not in kw and "residual" not in kw


def test_toml_keys_are_the_documented_list():
    import pathlib
    import re

    from initdiag.cli.options import config_keys
    from initdiag.cli.report import REPORT_KEYS

    readme = (pathlib.Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    sentence = re.search(r"A TOML file takes the options' names as keys\s*\(([^)]*)\)", readme)
    documented = tuple(re.findall(r"`(\w+)`", sentence.group(1)))
    assert config_keys(REPORT_KEYS) == documented
    flat = " ".join(run("report", "--help").stdout.split())
    assert "keys: " + ", ".join(documented) + " (default: none" in flat


def test_a_new_cli_field_is_an_option_and_a_toml_key_without_editing_the_cli(monkeypatch,
                                                                            tmp_path, capsys):
    """Fields added to the schema with cli=True: a number, a string with choices that may be
    None, and booleans (true by default: a --no-<name> flag; false: a --<name> flag)."""
    from initdiag import config
    from initdiag.cli import options
    from initdiag.cli.report import REPORT_KEYS

    new = {"dropout": (0.0, config.Field(config.NUMBER, "dropout rate")),
           "gate": (None, config.Field(config.OPT_STR, "gating", choices=("sigmoid", "tanh"))),
           "use_skip": (True, config.Field(config.BOOL, "whether layers skip")),
           "trace": (False, config.Field(config.BOOL, "also trace"))}
    monkeypatch.setattr(config, "SCHEMA", {**config.SCHEMA, **{k: f for k, (_, f) in new.items()}})
    monkeypatch.setattr(config, "DEFAULTS", {**config.DEFAULTS,
                                             **{k: d for k, (d, _) in new.items()}})
    monkeypatch.setattr(config, "CLI_FIELDS", (*config.CLI_FIELDS, *new))

    parser = cli.build_parser()
    for sub in ("report", "table", "check"):
        opts = _options(_subparsers(parser)[sub])
        assert opts["--dropout"].help == "dropout rate (default: 0.0)"
        assert opts["--gate"].choices == ("none", "sigmoid", "tanh")
        assert opts["--gate"].help == "gating (default: none)"
        assert opts["--no-use-skip"].help == "whether layers skip: no (default: yes)"
        assert opts["--trace"].help == "also trace: yes (default: no)"
    args = parser.parse_args(["table", "--dropout", "0.25", "--gate", "none", "--no-use-skip",
                              "--trace"])
    kw = options.sweep_kwargs(args)
    assert (kw["dropout"], kw["gate"], kw["use_skip"], kw["trace"]) == (0.25, None, False, True)
    assert "dropout" not in options.sweep_kwargs(parser.parse_args(["table"]))
    with pytest.raises(SystemExit):
        parser.parse_args(["table", "--gate", "relu"])
    assert "invalid choice: 'relu'" in capsys.readouterr().err

    assert options.config_keys(REPORT_KEYS)[-8:] == ("dropout", "gate", "no_use_skip", "trace",
                                                     "remat", "title", "out", "quiet")
    cfg = tmp_path / "s.toml"
    cfg.write_text('dropout = 0.5\ngate = "tanh"\nno-use-skip = true\ntrace = true\n')
    assert options.read_config(cfg) == {"dropout": 0.5, "gate": "tanh", "no_use_skip": True,
                                        "trace": True}
    for text, message in [('dropout = "high"\n',
                           "key 'dropout' has the wrong type (str: 'high'); expected a number"),
                          ('gate = "relu"\n', "gate = 'relu'; choose from none, sigmoid, tanh"),
                          ('trace = 1\n', "key 'trace' has the wrong type (int: 1); expected "
                                          "true or false")]:
        cfg.write_text(text)
        with pytest.raises(ValueError, match=re.escape(message)):
            options.read_config(cfg)


def test_the_cli_names_no_field_of_the_schema():
    """The CLI's modules derive the schema's options; none spells a field or its flag (the
    multi-word names: one-word names such as norm or input are also English words)."""
    import pathlib

    from initdiag import config
    from initdiag.cli import options

    sources = {p.name: p.read_text(encoding="utf-8")
               for p in pathlib.Path(options.__file__).parent.glob("*.py")}
    assert set(sources) >= {"__init__.py", "options.py", "report.py", "table.py", "check.py"}
    for o in options.schema_options():
        for word in {o.field, o.key, o.flag, "--" + o.field.replace("_", "-")}:
            if "_" in word or "-" in word[2:]:
                assert not [n for n, text in sources.items() if word in text], word


# --- layout: the CLI package, the report library, private names ----------------------------------

def _imports(path):
    """(line, imported module, name or None) of every import in a source file, at any depth."""
    import ast

    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, None) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            out += [(node.lineno, node.module, a.name) for a in node.names]
    return out


def _package_files():
    import pathlib

    root = pathlib.Path(initdiag.__file__).parent
    return root, sorted(root.rglob("*.py"))


def test_report_library_does_not_import_the_cli_and_cli_modules_do_not_cycle():
    root, files = _package_files()
    for path in (root / "report").glob("*.py"):
        for line, module, name in _imports(path):
            assert not (module == "initdiag.cli" or module.startswith("initdiag.cli.")
                        or (module == "initdiag" and name == "cli")), (path.name, line)
    for path in (root / "cli").glob("*.py"):
        cli_imports = {(m, n) for _, m, n in _imports(path) if m.startswith("initdiag.cli")}
        if path.name == "__init__.py":
            assert cli_imports == {("initdiag.cli", "check"), ("initdiag.cli", "report"),
                                   ("initdiag.cli", "table")}
        elif path.name == "options.py":
            assert cli_imports == set()
        else:  # the subcommands use the shared options only
            assert {m for m, _ in cli_imports} == {"initdiag.cli.options"}, path.name


def test_no_module_imports_another_modules_private_name():
    """Modules of a package may import its private modules (theory._meanfield from
    theory._quadrature); no module imports a private name of another module."""
    root, files = _package_files()
    found = set()
    for path in files:
        rel = path.relative_to(root).as_posix()
        package = "initdiag." + ".".join(path.relative_to(root).parts[:-1])
        for line, module, name in _imports(path):
            if not module.startswith("initdiag") or name is None or name.startswith("__"):
                continue
            if name.startswith("_") and not (module == package.rstrip(".")
                                             and (root / path.relative_to(root).parent
                                                  / f"{name}.py").exists()):
                found.add((rel, module, name))
    assert found == set()
