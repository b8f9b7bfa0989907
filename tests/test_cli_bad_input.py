"""The command line's bad input, one table: every option of every subcommand (``initdiag report``,
``table``, ``check``, and the command itself) with bad values -- not numbers, zero, negatives,
absurd sizes, unknown names, unreadable files, a folder for a file, a file for a folder, a TOML
file with an unknown key or a wrong type, a flag given a value, an option without its value --
exits with status 2 and ONE line on stderr naming the bad value and what is valid; no traceback,
nothing probed, nothing written.

The CLI runs in-process (``initdiag.cli.main``); probing is replaced by a failure, so a bad value
that slipped through would fail the test instead of running a sweep. Absurd sizes (depth or
width 10**9) are refused from the shapes alone, before anything is allocated
(:func:`initdiag.engine.memory.check_sizes`).
"""

import importlib

import pytest

import initdiag
from initdiag import cli

#: The valid names, as the messages list them.
ACTIVATIONS = "Valid choices: linear, tanh, sigmoid, relu, leaky_relu"
INITIALIZERS = "Valid choices: zeros, constant, uniform, normal"
METRICS = ", ".join(initdiag.METRICS)
NOT_INTEGERS = "expected comma-separated integers, got"

#: The bad values of the probe options that report, table and check share: (arguments,
#: fragments of the one-line message).
PROBE = [
    (["--activations", "foo"], ["invalid activation 'foo'", ACTIVATIONS]),
    (["--activations", "tanh,rleu"], ["invalid activation 'rleu'", "Did you mean 'relu'",
                                      ACTIVATIONS]),
    (["--activations", ""], ["activations is empty; give one or more of: linear, tanh"]),
    (["--activations", "leaky_relu(slope=x)"], ["leaky_relu slope must be a number; got 'x'"]),
    (["--activations", "relu(x=1)"], ["activation 'relu' has no parameter 'x'",
                                      "Valid parameters: none"]),
    (["--inits", "xavier"], ["invalid initializer 'xavier'", "Did you mean", INITIALIZERS]),
    (["--inits", ","], ["inits is empty; give one or more of: zeros, constant"]),
    (["--inits", "normal(std=-1)"], ["initializer 'normal': std=-1 must be >= 0"]),
    (["--inits", "normal(foo=1)"], ["initializer 'normal' has no parameter 'foo'",
                                    "Valid parameters: std, gain"]),
    (["--inits", "normal(std=1"], ["cannot parse 'normal(std=1'",
                                   "expected name(key=value, ...)"]),
    (["--depth", "x"], [f"argument --depth: {NOT_INTEGERS} 'x'"]),
    (["--depth", "1.5"], [f"argument --depth: {NOT_INTEGERS} '1.5'"]),
    (["--depth", ""], [f"argument --depth: {NOT_INTEGERS} ''"]),
    (["--depth", "0"], ["--depth must be >= 1; got 0"]),
    (["--depth", "4,-3"], ["--depth must be >= 1; got -3"]),
    (["--depth", str(10**9)], ["depth 1000000000 is too large", "needs at least",
                               "over the memory budget of", "depth can be at most"]),
    (["--width", "wide"], [f"argument --width: {NOT_INTEGERS} 'wide'"]),
    (["--width", "0"], ["--width must be >= 1; got 0"]),
    (["--width", "8,-2"], ["--width must be >= 1; got -2"]),
    (["--width", str(10**9)], ["width 1000000000 is too large", "width can be at most"]),
    (["--width", "4", "--depth", str(10**9), "--batch", str(10**9)],
     ["any probe at depth 1000000000, width 4, batch 1000000000 needs at least",
      "reducing one size alone does not make it fit"]),
    (["--batch", "x"], ["argument --batch: expected an integer, got 'x'"]),
    (["--batch", "0"], ["--batch must be >= 1; got 0"]),
    (["--batch", "-1"], ["--batch must be >= 1; got -1"]),
    (["--batch", str(10**9)], ["batch 1000000000 is too large", "batch can be at most"]),
    (["--seeds", "1e3"], [f"argument --seeds: {NOT_INTEGERS} '1e3'"]),
    (["--seeds", "0,-1"], ["seed must be an integer in [0, 4294967295]", "got -1"]),
    (["--seeds", str(2**32)], ["seed must be an integer in [0, 4294967295]", "got 4294967296"]),
    (["--seeds", str(2**70)], ["seed must be an integer in [0, 4294967295]",
                               f"got {2**70}"]),
    (["--bias-init", "foo"], ["invalid initializer 'foo'", INITIALIZERS]),
    (["--no-bias=yes"], ["argument --no-bias: ignored explicit argument 'yes'"]),
    (["--norm", "groupnorm"], ["argument --norm: invalid choice: 'groupnorm' (choose from "
                               "'none', 'batchnorm', 'layernorm')"]),
    (["--residual", "x"], ["argument --residual: expected a number, got 'x'"]),
    (["--residual", "nan"], ["argument --residual: expected a finite number, got 'nan'"]),
    (["--residual=-inf"], ["argument --residual: expected a finite number, got '-inf'"]),
    (["--input", "gaussian"], ["argument --input: invalid choice: 'gaussian' (choose from "
                               "'normal', 'uniform')"]),
    (["--loss", "mse"], ["argument --loss: invalid choice: 'mse' (choose from 'projection', "
                         "'half_mse')"]),
    (["--saturation-threshold", "high"],
     ["argument --saturation-threshold: expected a number, got 'high'"]),
    (["--saturation-threshold", "0"], ["saturation_threshold must be in (0, 1); got 0.0"]),
    (["--saturation-threshold", "1"], ["saturation_threshold must be in (0, 1); got 1.0"]),
    (["--saturation-threshold=-0.5"], ["saturation_threshold must be in (0, 1); got -0.5"]),
    (["--saturation-threshold", "1e999"],
     ["argument --saturation-threshold: expected a finite number, got '1e999'"]),
    (["--remat", "x"], ["argument --remat: expected an integer, got 'x'"]),
    (["--remat", "0"], ["--remat must be >= 1; got 0"]),
    (["--remat", "-4"], ["--remat must be >= 1; got -4"]),
]
#: Options that take a value: given without one.
VALUED = ["--activations", "--inits", "--depth", "--width", "--batch", "--seeds", "--bias-init",
          "--norm", "--residual", "--input", "--loss", "--saturation-threshold", "--remat"]


def _files(tmp_path):
    """Files the rows refer to, by name: ``{file}`` a plain file, ``{dir}`` a folder, Python
    files for --model, TOML files for --config, a results file for check."""
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("not json")
    (tmp_path / "int.py").write_text("def make():\n    return 1\n")
    (tmp_path / "boom.py").write_text("def make():\n    raise RuntimeError('boom')\n")
    (tmp_path / "syntax.py").write_text("def make(:\n")
    (tmp_path / "unknown.toml").write_text("depth = 4\ndropout = 0.1\n")
    (tmp_path / "wrong.toml").write_text('depth = "deep"\n')
    (tmp_path / "zero.toml").write_text("batch = 0\n")
    (tmp_path / "results.json").write_text(
        '{"schema": "initdiag.results", "schema_version": 1, "kind": "sweep", "results": []}')
    return {k: str(tmp_path / v) for k, v in
            [("file", "file"), ("dir", "dir"), ("int", "int.py"), ("boom", "boom.py"),
             ("syntax", "syntax.py"), ("unknown", "unknown.toml"), ("wrong", "wrong.toml"),
             ("zero", "zero.toml"), ("results", "results.json"), ("missing", "nope.json")]}


#: (subcommand, arguments, fragments); ``{name}`` is a path of :func:`_files`.
OWN = [
    ("report", ["--model", "x"], ["--model 'x': expected FILE.py:FUNCTION, e.g. models.py:make_model"]),
    ("report", ["--model", "nope.py:make"], ["--model 'nope.py:make': no such file 'nope.py'"]),
    ("report", ["--model", "{dir}:make"], ["is a folder; expected FILE.py:FUNCTION"]),
    ("report", ["--model", "{file}/m.py:make"], ["no such file"]),
    ("report", ["--model", "{int}:nofn"], ["has no function 'nofn'; its functions: make"]),
    ("report", ["--model", "{int}:make"], ["make() returned int; expected (fn, params, x)"]),
    ("report", ["--model", "{boom}:make"], ["calling make() failed: RuntimeError: boom"]),
    ("report", ["--model", "{syntax}:make"], ["importing", "failed: SyntaxError"]),
    ("report", ["--model", "{int}:make", "--depth", "3"],
     ["--depth does not apply with --model (a model report takes --inits and --seeds only)"]),
    ("report", ["--out", "{file}"], ["output folder", "exists and is not a folder"]),
    ("report", ["--out", "{file}/sub"], ["cannot create the output folder", "is not a folder"]),
    ("report", ["--config", "{missing}"], ["config file", "nope.json: no such file"]),
    ("report", ["--config", "{dir}"], ["config file", "dir: cannot be read (Is a directory)"]),
    ("report", ["--config", "{unknown}"], ["unknown key 'dropout'; valid keys: activations, "
                                           "inits, depth"]),
    ("report", ["--config", "{wrong}"], ["key 'depth' must be a list of integers (or a "
                                         "comma-separated string); got 'deep'"]),
    ("report", ["--config", "{zero}"], ["key 'batch' must hold integers >= 1; got 0"]),
    ("report", ["--no-cache=1"], ["argument --no-cache: ignored explicit argument '1'"]),
    ("report", ["--quiet=1"], ["argument --quiet: ignored explicit argument '1'"]),
    ("report", ["--resume=1"], ["argument --resume: ignored explicit argument '1'"]),
    ("report", ["--train", "x"], ["argument --train: invalid int value: 'x'"]),
    ("report", ["--train", "1.5"], ["argument --train: invalid int value: '1.5'"]),
    ("report", ["--train", "0"], ["--train must be >= 1; got 0"]),
    ("report", ["--train", "-3"], ["--train must be >= 1; got -3"]),
    ("report", ["--train", "10", "--model", "{int}:make"],
     ["--train trains the stacks of a sweep; it does not apply with --model"]),
    ("report", ["--title"], ["argument --title: expected one argument"]),
    ("table", ["--metrics", "act_var,foo"], ["unknown metric 'foo'; valid metrics: " + METRICS]),
    ("table", ["--metrics", ""], ["'' names no metric; give a comma-separated list of: " + METRICS]),
    ("table", ["--every", "x"], ["argument --every: expected an integer, got 'x'"]),
    ("table", ["--every", "0"], ["--every must be >= 1; got 0"]),
    ("table", ["--every", "-1"], ["--every must be >= 1; got -1"]),
    ("table", ["--json", "{dir}"], ["--json", "is a folder; give a file name"]),
    ("table", ["--json", "{file}/r.json"], ["--json", "file is not a folder"]),
    ("check", ["{missing}"], ["nope.json: no such baseline file. Create it with"]),
    ("check", ["{dir}"], ["dir: cannot be read as a baseline (Is a directory)"]),
    ("check", ["{file}"], ["file: not valid JSON, the file is truncated or corrupted"]),
    ("check", ["{results}"], ["is not a baseline", "It is a results file"]),
    ("check", [], ["the following arguments are required: BASELINE"]),
    ("check", ["{missing}", "--rtol", "x"], ["--rtol must be a number >= 0; got 'x'"]),
    ("check", ["{missing}", "--rtol", "-1"], ["--rtol must be a number >= 0; got '-1'"]),
    ("check", ["{missing}", "--rtol", "inf"], ["--rtol must be a finite number >= 0",
                                               "got 'inf'"]),
    ("check", ["{missing}", "--atol", "nan"], ["--atol must be a number >= 0; got 'nan'"]),
    ("check", ["{missing}", "--atol=-0.1"], ["--atol must be a number >= 0; got '-0.1'"]),
    ("check", ["{missing}", "--metrics", "foo"], ["unknown metric 'foo'; valid metrics: " + METRICS]),
    ("check", ["{missing}", "--metrics", ","], ["names no metric; give a comma-separated list of: "
                                                + METRICS]),
    ("check", ["{missing}", "--max-rows", "many"], ["--max-rows must be an integer >= 1; got 'many'"]),
    ("check", ["{missing}", "--max-rows", "0"], ["--max-rows must be an integer >= 1; got '0'"]),
    ("check", ["{missing}", "--update=1"], ["argument --update: ignored explicit argument '1'"]),
    ("check", ["{missing}", "--json=1"], ["argument --json: ignored explicit argument '1'"]),
    (None, ["nosuch"], ["argument COMMAND: invalid choice: 'nosuch' (choose from 'report', "
                        "'table', 'check')"]),
    (None, ["--nosuch"], ["unrecognized arguments: --nosuch"]),
    (None, ["--version=1"], ["unrecognized arguments: --version=1"]),
]

ROWS = ([(sub, args, frags) for sub in ("report", "table", "check") for args, frags in PROBE]
        + [(sub, [opt], [f"argument {opt}: expected one argument"])
           for sub in ("report", "table", "check") for opt in VALUED]
        + OWN)


def _argv(sub, args, files, tmp_path):
    """The command line of a row: probe options of ``check`` create a new baseline (so they are
    what is checked, not the baseline file); ``report`` writes into ``tmp_path/out``."""
    args = [a.format(**files) for a in args]
    if sub is None:
        return args
    if sub == "check" and args and args[0].startswith("-"):
        return ["check", str(tmp_path / "new.json"), "--update", *args]
    if sub == "report" and "--out" not in args:
        return ["report", *args, "--out", str(tmp_path / "out")]
    return [sub, *args]


@pytest.fixture
def no_probing(monkeypatch):
    """Any probe fails loudly: a bad value must be refused before it."""
    def fail(*args, **kwargs):
        raise AssertionError("probed although an option was invalid")

    monkeypatch.setattr(importlib.import_module("initdiag.probe"), "run_job", fail)
    monkeypatch.setattr(importlib.import_module("initdiag.engine.sharding"), "run_sharded", fail)
    monkeypatch.setattr(initdiag, "probe_fn", fail)
    monkeypatch.setattr(initdiag, "sweep_fn", fail)


@pytest.mark.parametrize("sub, args, fragments", ROWS,
                         ids=[f"{sub or 'initdiag'} {' '.join(args) or '(none)'}"[:80]
                              for sub, args, _ in ROWS])
def test_a_bad_value_exits_2_with_one_line_naming_it(no_probing, tmp_path, capsys, sub, args,
                                                     fragments):
    files = _files(tmp_path)
    argv = _argv(sub, args, files, tmp_path)
    try:
        code = cli.main(argv)
    except SystemExit as e:  # argparse refuses the option itself
        code = e.code
    out, err = capsys.readouterr()
    assert code == 2, (argv, code, err)
    assert "Traceback" not in out + err
    assert err.endswith("\n") and err.count("\n") == 1, err  # one line
    assert err.startswith("initdiag"), err
    fragments = [f.format(**files) for f in fragments]
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    assert out == ""
    assert not (tmp_path / "out").exists() and not (tmp_path / "new.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["dir", "file", "int.py", "boom.py", "syntax.py", "unknown.toml", "wrong.toml",
         "zero.toml", "results.json"] + (["__pycache__"] if (tmp_path / "__pycache__").exists()
                                         else []))


def _subparsers(parser):
    return next(a for a in parser._actions if a.dest == "command").choices


def test_every_option_of_every_subcommand_has_a_bad_value_in_the_table():
    """A new option is not covered until it has a row here (argparse's --help aside)."""
    parser = cli.build_parser()
    commands = {None: parser, **_subparsers(parser)}
    for sub, p in commands.items():
        rows = [args for s, args, _ in ROWS if s == sub]
        given = {a.split("=")[0] for args in rows for a in args if a.startswith("--")}
        for action in p._actions:
            if action.dest in ("help", "command"):
                continue
            if action.option_strings:
                assert set(action.option_strings) & given, (sub, action.option_strings)
            else:  # a positional argument: a row without it and rows with a bad one
                assert any(args == [] for args in rows), (sub, action.dest)
                assert any(args and not args[0].startswith("-") for args in rows), sub
