"""initdiag.write_report of model results and ``initdiag report --model FILE.py:FUNCTION``."""

import re
import textwrap

import jax
import jax.numpy as jnp
import pytest
from markupsafe import escape

import initdiag
from initdiag import cli
from initdiag.model.result import MODEL_METRICS, PARAM_COLUMNS, PARAM_DEFINITIONS
from initdiag.report.model_figures import MODEL_FIGURES, short_site

EVIL = "<script>alert(1)</script>"


@jax.custom_vjp
def mix(v):
    """A custom_vjp function: probe_fn does not enter it (a skipped construct)."""
    return v[:, ::-1]


mix.defvjp(lambda v: (mix(v), None), lambda _, g: (g[:, ::-1],))


def residual_mlp(width=8, depth=2):
    """tanh input layer, ``depth`` ReLU residual blocks (named EVIL and a broken mathtext
    ``$\\bad1$``, drawn as typed), a custom_vjp function (skipped)."""
    ks = jax.random.split(jax.random.key(0), depth + 2)
    blocks = {f"$\\bad{i}$" if i else EVIL: {"w": jax.random.normal(ks[i + 1], (width, width))
                                           / jnp.sqrt(width)} for i in range(depth)}
    params = {"inp": {"w": jax.random.normal(ks[0], (4, width)) / 2.0, "b": jnp.zeros(width)},
              "blocks": blocks, "out": {"w": jax.random.normal(ks[-1], (width, 2))}}

    def fn(p, x):
        h = jnp.tanh(x @ p["inp"]["w"] + p["inp"]["b"][None, :])
        for name in sorted(p["blocks"]):
            h = h + jax.nn.relu(h @ p["blocks"][name]["w"])
        h = mix(h)
        return h @ p["out"]["w"]

    return fn, params, jax.random.normal(jax.random.key(1), (16, 4))


def attention_model(width=8, seq=5):
    ks = jax.random.split(jax.random.key(2), 4)
    params = {n: jax.random.normal(k, (width, width)) / jnp.sqrt(width)
              for n, k in zip(("q", "k", "v", "o"), ks)}

    def fn(p, x):
        q, k, v = x @ p["q"], x @ p["k"], x @ p["v"]
        a = jax.nn.softmax(q @ jnp.swapaxes(k, -1, -2) / jnp.sqrt(width), axis=-1)
        return x + (a @ v) @ p["o"]

    return fn, params, jax.random.normal(jax.random.key(3), (2, seq, width))


@pytest.fixture(scope="module")
def mlp_sweep():
    fn, params, x = residual_mlp()
    # two seeds of the readout, one compiled program: a band in every figure
    return initdiag.ModelSweep([initdiag.probe_fn(fn, params, x, seed=s, name="<b>x</b>")
                                for s in (0, 1)])


@pytest.fixture(scope="module")
def attn_result():
    return initdiag.probe_fn(*attention_model(), name="attn")


def pngs(folder):
    return sorted(p.stem for p in folder.glob("*.png"))


def test_model_report_tables_figures_and_escaping(mlp_sweep, tmp_path):
    r = mlp_sweep[0]
    assert any(EVIL in s for s in r.sites) and r.skipped and "residual" in r.kinds
    page_path = initdiag.write_report(mlp_sweep, tmp_path / "rep", title="T <i>x</i>")
    assert page_path == tmp_path / "rep" / "index.html"
    page = page_path.read_text(encoding="utf-8")
    assert pngs(tmp_path / "rep") == ["signal_propagation", "site_stats"]
    assert initdiag.load(tmp_path / "rep" / "results.json") == mlp_sweep
    # nothing user-typed reaches the page unescaped; every site's whole name is there
    assert "<script>" not in page and "<b>x" not in page and "<i>x" not in page
    assert "T &lt;i&gt;x&lt;/i&gt;" in page and "&lt;b&gt;x&lt;/b&gt;" in page
    for name in r.sites:
        assert f"<td>{escape(name)}</td>" in page, name
    # figures embedded, in order; attention replaced by a note
    assert re.findall(r'<figure id="fig-([\w-]+)">', page) == list(MODEL_FIGURES)
    assert page.count('src="data:image/png;base64,') == 2
    assert "no attention sites" in page
    # parameter table: every column and every leaf path
    params = page.split('<h2 id="parameters">', 1)[1].split('<h2 id="skipped">', 1)[0]
    for col in PARAM_COLUMNS:
        assert f"<th>{col}</th>" in params
    for path in r.params["path"]:
        assert f"<td>{escape(path)}</td>" in params
    # skipped constructs with their reasons
    skipped = page.split('<h2 id="skipped">', 1)[1].split('<h2 id="definitions">', 1)[0]
    for s in r.skipped:
        assert str(escape(s["reason"])) in skipped
    # definitions of what is shown; seeds pooled
    for m in ("var", "grad_rms", "zero_frac", "saturation", "ch_var", "ch_sq_mean",
              "branch_ratio"):
        assert f"<th>{m}</th><td>{escape(MODEL_METRICS[m])}</td>" in page
    for k, v in PARAM_DEFINITIONS.items():
        assert f"<th>{k}</th><td>{escape(v)}</td>" in page
    assert "attn_entropy" not in page
    assert "median over seeds" in page


def test_attention_figure_only_with_attention_sites(attn_result, mlp_sweep, tmp_path):
    out = tmp_path / "rep"
    initdiag.write_report(attn_result, out)
    page = (out / "index.html").read_text(encoding="utf-8")
    assert pngs(out) == ["attention", "signal_propagation", "site_stats"]
    assert page.count('src="data:image/png;base64,') == 3
    for m in ("attn_entropy", "attn_max_logit"):
        assert f"<th>{m}</th><td>{escape(MODEL_METRICS[m])}</td>" in page
    assert "None: every construct of the model was entered." in page
    # the same folder again with a model without attention: its stale PNG goes
    initdiag.write_report(mlp_sweep, out)
    assert pngs(out) == ["signal_propagation", "site_stats"]


def test_verdicts_hook_and_bad_inputs(attn_result, mlp_sweep, tmp_path):
    initdiag.write_report(attn_result, tmp_path / "v", verdicts=["attn: <healthy>"])
    page = (tmp_path / "v" / "index.html").read_text(encoding="utf-8")
    assert '<h2 id="diagnosis">' in page and "attn: &lt;healthy&gt;" in page
    with pytest.raises(TypeError, match="ModelSweep"):
        initdiag.write_report([attn_result], tmp_path / "x")
    with pytest.raises(ValueError, match="different models"):
        initdiag.write_report(initdiag.ModelSweep([attn_result, mlp_sweep[0]]), tmp_path / "x")
    assert not (tmp_path / "x").exists()
    assert not list(tmp_path.glob(".*partial*"))


def test_short_site_names():
    assert short_site("a") == "a"
    assert short_site("enc/layers[3]/mlp/dense") == "…/mlp/dense"
    long = short_site("model/" + "x" * 40 + "/dense_general")
    assert len(long) == 24 and long.startswith("…") and long.endswith("/dense_general")


def test_stack_results_go_through_the_stack_report(tmp_path, monkeypatch):
    """A ProbeResult / SweepResult is written by the stack report's code (build_report's, here
    stubbed: drawing the theory figures takes ~30 s; tests/test_report.py covers it)."""
    from initdiag.report import build

    seen = []

    def fake(sweep, out, *, title=None, command=None):
        seen.append((sweep, out, title))
        return [], {"html": tmp_path / "s" / "index.html"}

    monkeypatch.setattr(build, "write_sweep_report", fake)
    res = initdiag.sweep(activations=["tanh"], inits=["he_normal"], depths=[2], widths=[4],
                         seeds=[0], batch=2)
    assert initdiag.write_report(res[0], tmp_path / "s", title="t") == tmp_path / "s" / "index.html"
    assert isinstance(seen[0][0], initdiag.SweepResult) and seen[0][0].results == [res[0]]
    initdiag.write_report(res, tmp_path / "s")
    assert seen[1][0] is res
    with pytest.raises(ValueError, match="verdicts"):
        initdiag.write_report(res, tmp_path / "s", verdicts=[])


# --- the command line ----------------------------------------------------------------------

MODEL_FILE = '''
import jax, jax.numpy as jnp

def make_model():
    k1, k2 = jax.random.split(jax.random.key(0))
    params = {"dense": jax.random.normal(k1, (4, 8)) / 2.0,
              "head": jax.random.normal(k2, (8, 2)) / 3.0}
    def fn(p, x):
        return jnp.tanh(x @ p["dense"]) @ p["head"]
    return fn, params, jax.random.normal(jax.random.key(1), (8, 4))

def make_pair():
    return object(), jnp.ones((2, 4))

def make_int():
    return 3

NOT_A_FUNCTION = 1
'''


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "my_models.py"
    path.write_text(textwrap.dedent(MODEL_FILE))
    return path


def test_cli_model_end_to_end(model_file, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["report", "--model", f"{model_file}:make_model", "--out", str(out),
                     "--title", "<u>mine</u>", "--seeds", "0,1"]) == 0
    assert "report:" in capsys.readouterr().out
    assert pngs(out) == ["signal_propagation", "site_stats"]
    res = initdiag.load(out / "results.json")
    assert isinstance(res, initdiag.ModelSweep) and [r.seed for r in res] == [0, 1]
    assert res[0].config["model"] == "my_models.py:make_model"
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "&lt;u&gt;mine&lt;/u&gt;" in page and "<u>" not in page
    for name in res[0].sites:
        assert f"<td>{escape(name)}</td>" in page


@pytest.mark.parametrize("spec, message", [
    ("{dir}/my_models.py", "expected FILE.py:FUNCTION"),
    ("{dir}/missing.py:make_model", "no such file"),
    ("{dir}/my_models.py:nope", "has no function 'nope'"),
    ("{dir}/my_models.py:NOT_A_FUNCTION", "not a function"),
    ("{dir}/my_models.py:make_int", "make_int() returned int"),
])
def test_cli_bad_model_spec_exits_2_naming_it(model_file, tmp_path, capsys, spec, message):
    spec = spec.format(dir=tmp_path)
    assert cli.main(["report", "--model", spec, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert message in err and repr(spec) in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_cli_model_rejects_stack_options(model_file, tmp_path, capsys):
    assert cli.main(["report", "--model", f"{model_file}:make_model", "--depth", "3",
                     "--out", str(tmp_path / "o")]) == 2
    assert "--depth does not apply with --model" in capsys.readouterr().err


def test_cli_model_inits_sweep(model_file, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["report", "--model", f"{model_file}:make_model", "--inits",
                     "he_normal,orthogonal", "--seeds", "0,1", "--out", str(out)]) == 0
    res = initdiag.load(out / "results.json")
    assert [(r.config["init"], r.seed) for r in res] == [
        ("he_normal", 0), ("he_normal", 1), ("orthogonal", 0), ("orthogonal", 1)]
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "initializer he_normal" in page and "initializer orthogonal" in page


def test_default_report_carries_the_diagnosis(tmp_path):
    """write_report diagnoses model results itself: a zero readout is named on the page."""
    def mlp(p, x):
        for w in p[:-1]:
            x = jnp.tanh(x @ w)
        return x @ p[-1]

    key = jax.random.key(3)
    ws = [jax.random.normal(jax.random.fold_in(key, i), (32, 32)) / jnp.sqrt(32.0)
          for i in range(3)] + [jnp.zeros((32, 4))]
    x = jax.random.normal(key, (64, 32))
    res = initdiag.probe_fn(mlp, ws, x, name="zero_readout")
    page = initdiag.write_report(res, tmp_path / "z").read_text(encoding="utf-8")
    verdicts = initdiag.diagnose(initdiag.ModelSweep([res]))
    assert any("all zeros" in str(v) for v in verdicts)
    for v in verdicts:
        assert str(escape(str(v))).split(";")[0] in page
