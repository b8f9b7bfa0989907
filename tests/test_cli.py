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
