"""Checkpoints (issue 13 §1): an interrupted sweep resumed from its file gives the numbers of an
uninterrupted one, bit for bit; torn, corrupt and foreign files; sharded sweeps; the model probe;
``initdiag report --resume`` after SIGKILL, SIGTERM."""

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import pytest

import initdiag
from initdiag import checkpoint, cli
from initdiag.checkpoint import CheckpointError

KW = dict(activations=["tanh", "relu"], inits=["he_normal", "orthogonal", "zeros"], depths=[3],
          widths=[8], seeds=[0, 1], batch=8, histograms=True)


def assert_same_numbers(a, b):
    """Same configs, seeds and order; every metric, histogram and scalar identical (NaN = NaN);
    meta (timings) may differ."""
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert (x.config, x.seed) == (y.config, y.seed)
        assert x.metrics == y.metrics
        for m in x.metrics:
            assert np.array_equal(x[m], y[m], equal_nan=True), (x.label, m)
            assert x[m].dtype == y[m].dtype == np.float64
        assert x.histograms.keys() == y.histograms.keys()
        for h in x.histograms:
            assert np.array_equal(x.histograms[h], y.histograms[h]), (x.label, h)
        assert json.dumps(x.scalars) == json.dumps(y.scalars)


class Stop:
    """A progress callback that raises KeyboardInterrupt at its ``after``-th call."""

    def __init__(self, after):
        self.after, self.calls = after, []

    def __call__(self, done, total, result):
        self.calls.append(done)
        if len(self.calls) == self.after:
            raise KeyboardInterrupt


@pytest.fixture(scope="module")
def uninterrupted():
    return initdiag.sweep(**KW)


@pytest.fixture
def prepared(monkeypatch):
    """The labels of the probes a sweep prepares (draws weights for, runs)."""
    import importlib

    probe = importlib.import_module("initdiag.probe")
    seen = []
    real = probe.prepare

    def counting(config, seed, **kw):
        seen.append((config.activation, config.init, seed))
        return real(config, seed, **kw)

    monkeypatch.setattr(probe, "prepare", counting)
    return seen


def test_interrupted_then_resumed_equals_uninterrupted(tmp_path, uninterrupted, prepared):
    path = tmp_path / "run.jsonl"
    stop = Stop(after=3)
    with pytest.raises(KeyboardInterrupt) as e:
        initdiag.sweep(**KW, checkpoint=path, progress=stop)
    assert len(e.value.partial) == 3 and checkpoint.count(path) == (3, 12)
    # the order probes run in: those differing only in the activation are adjacent and share
    # weights; the third finished probe is tanh / he_normal seed 1, whose weights relu reuses
    assert prepared == [("tanh", "he_normal", 0), ("relu", "he_normal", 0),
                        ("tanh", "he_normal", 1)]
    del prepared[:]
    calls = []
    resumed = initdiag.sweep(**KW, checkpoint=path, progress=lambda d, t, r: calls.append((d, t)))
    assert calls == [(d, 12) for d in range(4, 13)]   # done counts the restored probes
    assert len(prepared) == 9 and ("tanh", "he_normal", 1) not in prepared
    assert_same_numbers(resumed, uninterrupted)
    # the zeros probes have NaN metrics: they came back from the file as NaN
    zeros = resumed.select(init="zeros")
    assert all(np.isnan(r["grad_weight_ratio"]).all() for r in zeros)
    # relu / he_normal seed 1 drew its weights again (tanh's were restored, not drawn): the same
    # numbers as the uninterrupted run, where it reused them
    relu1 = [r for r in resumed if r.label == "relu / he_normal" and r.seed == 1][0]
    first = [r for r in uninterrupted if r.label == "relu / he_normal" and r.seed == 1][0]
    assert first.meta["timing"]["weights_reused"] and not relu1.meta["timing"]["weights_reused"]
    # everything recorded: a third call probes nothing
    del prepared[:]
    again = initdiag.sweep(**KW, checkpoint=path, progress=lambda *a: calls.append(a))
    assert prepared == [] and len(calls) == 9
    assert_same_numbers(again, uninterrupted)
    lines = path.read_text().splitlines()
    assert len(lines) == 13 and all(json.loads(line) for line in lines)


def test_restored_results_are_the_written_ones_bit_for_bit(tmp_path):
    """NaN, +-Inf, -0.0, subnormals and float64 values that are not float32 load back exactly."""
    values = np.array([np.nan, np.inf, -np.inf, -0.0, 5e-324, 0.1, 1 / 3, -1e308])
    r = initdiag.ProbeResult(config=dict(activation="tanh", init="he_normal", depth=8), seed=0,
                             values={"act_var": values}, scalars={"loss": -np.inf})
    head = checkpoint.header("sweep", {"x": 1}, [["a"]])
    with checkpoint.open_checkpoint(tmp_path / "c.jsonl", head) as c:
        c.append(0, r.to_dict())
    back = checkpoint.open_checkpoint(tmp_path / "c.jsonl", head,
                                      decode=initdiag.ProbeResult.from_dict, write=False).done[0]
    assert back == r
    assert back["act_var"].view(np.uint64)[1:].tolist() == values.view(np.uint64)[1:].tolist()
    assert np.isnan(back["act_var"][0]) and back.scalars["loss"] == -np.inf


def _interrupted_file(tmp_path, after):
    path = tmp_path / "run.jsonl"
    with pytest.raises(KeyboardInterrupt):
        initdiag.sweep(**KW, checkpoint=path, progress=Stop(after))
    return path


@pytest.mark.parametrize("tail", [b'{"probe": 7, "key": ["relu", "orth', b'{"probe": 7}x\n'],
                         ids=["no newline", "not JSON"])
def test_torn_last_line_is_dropped_and_cut_off(tmp_path, uninterrupted, prepared, tail):
    path = _interrupted_file(tmp_path, after=2)
    intact = path.read_bytes()
    with open(path, "ab") as f:
        f.write(tail)
    assert checkpoint.count(path) == (2, 12)
    del prepared[:]
    resumed = initdiag.sweep(**KW, checkpoint=path)
    assert len(prepared) == 10
    assert_same_numbers(resumed, uninterrupted)
    data = path.read_bytes()
    assert data.startswith(intact) and tail not in data and data.endswith(b"\n")
    assert checkpoint.count(path) == (12, 12)


def test_corrupt_line_before_the_last_is_an_error_naming_file_and_line(tmp_path):
    path = _interrupted_file(tmp_path, after=3)
    lines = path.read_bytes().split(b"\n")
    lines[2] = lines[2][:40]  # line 3 cut short, lines 4 and 5 intact after it
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(CheckpointError, match=rf"{path}: line 3 is not valid JSON"):
        initdiag.sweep(**KW, checkpoint=path)
    with pytest.raises(CheckpointError, match="line 3"):
        checkpoint.count(path)


def _edit_result(edit):
    def apply(rec):
        edit(rec["result"])
    return apply


@pytest.mark.parametrize("edit, field", [
    (_edit_result(lambda r: r["metrics"].update(act_var=r["metrics"]["act_var"][:-1])),
     "result.metrics['act_var'] has 2 values; the config's depth is 3"),
    (_edit_result(lambda r: r["metrics"]["grad_preact_rms"].__setitem__(1, "big")),
     "result.metrics['grad_preact_rms'][1] (layer 2) is \"big\""),
    (_edit_result(lambda r: r["metrics"].update(nonsense=[1, 2, 3])),
     "result.metrics has metric(s) 'nonsense' unknown"),
    (_edit_result(lambda r: r.update(seed=1.5)), "result.seed is 1.5"),
    (_edit_result(lambda r: r.update(metrics=[1, 2])), "result.metrics is [1, 2]"),
    (_edit_result(lambda r: r.pop("config")), "result has no 'config'"),
    (lambda rec: rec.update(result="text"), "result is \"text\""),
])
def test_a_record_with_a_malformed_result_is_refused_naming_line_and_field(tmp_path, edit,
                                                                         field):
    """A record that is valid JSON with the right probe and key, but whose result is not a
    result, is refused (never loaded as a wrong number), naming the file, line and field."""
    path = _interrupted_file(tmp_path, after=3)
    lines = path.read_bytes().split(b"\n")
    rec = json.loads(lines[2])
    edit(rec)
    lines[2] = json.dumps(rec).encode()
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(CheckpointError) as e:
        initdiag.sweep(**KW, checkpoint=path)
    assert str(e.value).startswith(f"{path}: line 3: malformed result"), str(e.value)
    assert field in str(e.value), str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("change, message", [
    (dict(depths=[4]), "was written for depths [3]; this sweep has depths [4]"),
    (dict(inits=["he_normal", "orthogonal"]),
     'was written for inits ["he_normal", "orthogonal", "zeros"]; this sweep has inits '
     '["he_normal", "orthogonal"]'),
    (dict(norm="layernorm"), 'was written for norm null; this sweep has norm "layernorm"'),
    (dict(seeds=[0, 2]), "was written for seeds [0, 1]; this sweep has seeds [0, 2]"),
])
def test_another_sweeps_file_is_refused_naming_the_difference(tmp_path, change, message):
    path = _interrupted_file(tmp_path, after=1)
    before = path.read_bytes()
    with pytest.raises(CheckpointError) as e:
        initdiag.sweep(**{**KW, **change}, checkpoint=path)
    assert str(e.value).startswith(f"{path} {message}; delete {path} to start over")
    assert path.read_bytes() == before
    # how it is run is not what it measures: devices and run options may change
    assert len(initdiag.sweep(**KW, checkpoint=path, devices=1, memory_budget=2**40)) == 12


def test_records_of_probes_this_sweep_does_not_have_are_errors(tmp_path):
    path = _interrupted_file(tmp_path, after=1)
    good = path.read_bytes()
    record = json.loads(good.split(b"\n")[1])
    for bad, message in [({**record, "probe": 12}, "records probe 12; this sweep has probes 0..11"),
                         ({**record, "key": ["selu", "he_normal", 3, 8, 0]},
                          'records probe 0 as ["selu", "he_normal", 3, 8, 0]'),
                         (record, "records probe 0 [\"tanh\", \"he_normal\", 3, 8, 0] again "
                                  "(first on line 2)")]:
        path.write_bytes(good + json.dumps(bad).encode() + b"\n")
        with pytest.raises(CheckpointError, match=r"line 3 " + re.escape(message)):
            initdiag.sweep(**KW, checkpoint=path)


def test_not_a_checkpoint_and_a_second_writer_are_refused(tmp_path):
    for text in ['{"schema": "initdiag.results",\n "results": []}\n', '{"a": 1}\n{"b": 2}\n']:
        other = tmp_path / "other.json"
        other.write_text(text)
        with pytest.raises(CheckpointError, match=f"{other}: not an initdiag checkpoint"):
            initdiag.sweep(**KW, checkpoint=other)
        assert other.read_text() == text
    head = checkpoint.header("sweep", {"x": 1}, [["a"], ["b"]])
    with checkpoint.open_checkpoint(tmp_path / "c.jsonl", head):
        with pytest.raises(CheckpointError, match="is in use by another run"):
            checkpoint.open_checkpoint(tmp_path / "c.jsonl", head)
    with pytest.raises(TypeError, match="checkpoint= needs integer seeds"):
        initdiag.sweep(**{**KW, "seeds": [jax.random.key(0)]}, checkpoint=tmp_path / "k.jsonl")
    assert not (tmp_path / "k.jsonl").exists()


def test_a_bad_configuration_fails_before_the_file_is_written(tmp_path):
    with pytest.raises(ValueError, match="invalid norm"):
        initdiag.sweep(**{**KW, "norm": "groupnorm"}, checkpoint=tmp_path / "c.jsonl")
    assert not (tmp_path / "c.jsonl").exists()


def test_processes_other_than_0_read_and_never_write(tmp_path, monkeypatch, uninterrupted):
    from initdiag.engine import sharding

    path = _interrupted_file(tmp_path, after=4)
    before = path.read_bytes()
    monkeypatch.setattr(jax, "process_index", lambda: 1)
    assert_same_numbers(initdiag.sweep(**KW, checkpoint=path), uninterrupted)
    assert path.read_bytes() == before
    assert len(initdiag.sweep(**KW, checkpoint=tmp_path / "new.jsonl")) == 12
    assert not (tmp_path / "new.jsonl").exists()
    # processes that read different files (not a shared file system) all stop, saying so
    monkeypatch.setattr(sharding, "process_flags",
                        lambda flags: np.array([flags, [False] * len(flags)]))
    with pytest.raises(CheckpointError, match="process 0: 4, process 1: 0"):
        initdiag.sweep(**KW, checkpoint=path)


# --- the model probe ---------------------------------------------------------------------------

def _mlp():
    import jax.numpy as jnp

    def fn(params, x):
        for w, b in params:
            x = jnp.tanh(x @ w + b[None, :])
        return x

    ks = jax.random.split(jax.random.key(0), 4)
    params = [(jax.random.normal(ks[i], (8, 8)) / 3, jnp.zeros(8)) for i in range(3)]
    return fn, params, jax.random.normal(ks[3], (8, 8))


def _numbers(sweep):
    return [{k: v for k, v in r.to_dict().items() if k != "meta"} for r in sweep]


def test_sweep_fn_and_probe_seeds_resume_bit_for_bit(tmp_path):
    from initdiag.model.api import probe_seeds

    fn, params, x = _mlp()
    kw = dict(inits=["he_normal", "orthogonal"], seeds=[0, 1, 2])
    full = initdiag.sweep_fn(fn, params, x, **kw)
    path = tmp_path / "m.jsonl"
    with pytest.raises(KeyboardInterrupt) as e:
        initdiag.sweep_fn(fn, params, x, **kw, checkpoint=path, progress=Stop(4))
    assert len(e.value.partial) == 4
    calls = []
    resumed = initdiag.sweep_fn(fn, params, x, **kw, checkpoint=path,
                                progress=lambda d, t, r: calls.append(d))
    assert calls == [5, 6] and _numbers(resumed) == _numbers(full)
    with pytest.raises(CheckpointError, match="was written for inits"):
        initdiag.sweep_fn(fn, params, x, inits=["he_normal"], seeds=[0, 1, 2], checkpoint=path)
    with pytest.raises(CheckpointError, match="was written for input_sha256"):
        initdiag.sweep_fn(fn, params, x + 1, **kw, checkpoint=path)

    seeds_path = tmp_path / "s.jsonl"
    given = probe_seeds(fn, params, x, [0, 1], name="mlp")
    with pytest.raises(KeyboardInterrupt):
        probe_seeds(fn, params, x, [0, 1], name="mlp", checkpoint=seeds_path, progress=Stop(1))
    calls = []
    again = probe_seeds(fn, params, x, [0, 1], name="mlp", checkpoint=seeds_path,
                        progress=lambda d, t, r: calls.append(d))
    assert calls == [2] and _numbers(again) == _numbers(given)
    with pytest.raises(CheckpointError, match="was written for params_sha256"):
        probe_seeds(fn, [(w * 2, b) for w, b in params], x, [0, 1], name="mlp",
                    checkpoint=seeds_path)


# --- sharded ------------------------------------------------------------------------------------

SHARDED = r"""
import json, sys, importlib
import jax, initdiag
from initdiag import checkpoint
probe = importlib.import_module("initdiag.probe")
assert jax.device_count() == 4, jax.devices()
path, kw = sys.argv[1], json.loads(sys.argv[2])
calls = []
def stop(done, total, r):
    calls.append(done)
    if len(calls) == 2:
        raise KeyboardInterrupt
try:
    initdiag.sweep(checkpoint=path, progress=stop, **kw)
except KeyboardInterrupt:
    pass
kept = checkpoint.count(path)[0]
prepared, real = [], probe.prepare
probe.prepare = lambda c, s, **o: (prepared.append(1), real(c, s, **o))[1]
initdiag.sweep(checkpoint=path, **kw).to_json(sys.argv[3])
print(json.dumps({"kept": kept, "prepared": len(prepared)}))
"""


def test_sharded_sweep_resumes_only_what_is_missing(tmp_path, uninterrupted):
    """On 4 host devices: interrupted in the first step of 4 probes, resumed, equal to one
    device."""
    kw = {**KW, "activations": ["tanh"]}
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               JAX_PLATFORMS="cpu")
    p = subprocess.run([sys.executable, "-c", SHARDED, str(tmp_path / "s.jsonl"), json.dumps(kw),
                        str(tmp_path / "r.json")], capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["kept"] == 2 and out["prepared"] == 4
    resumed = initdiag.load(tmp_path / "r.json")
    assert_same_numbers(resumed, uninterrupted.select(activation="tanh"))
    assert len({r.meta["device"] for r in resumed}) == 4


# --- the command line ---------------------------------------------------------------------------

#: ``initdiag report`` as ``python -m initdiag`` runs it, with each probe slowed by 0.3 s so that
#: a signal sent once the first probe is in the checkpoint lands before the sweep is over.
SLOW_CLI = r"""
import sys, time, importlib
probe = importlib.import_module("initdiag.probe")
run_job = probe.run_job
probe.run_job = lambda job: (time.sleep(0.3), run_job(job))[1]
from initdiag.cli import main
raise SystemExit(main(sys.argv[1:]))
"""
#: A small sweep; with a norm, the report has no theory figures to compute (a faster test).
ARGS = ["--activations", "tanh", "--inits", "he_normal,orthogonal", "--depth", "3", "--width", "8",
        "--batch", "8", "--seeds", "0,1", "--norm", "layernorm"]
N = 4


def _start_slow_report(out):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.Popen([sys.executable, "-c", SLOW_CLI, "report", *ARGS, "--out", str(out),
                             "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, start_new_session=True)  # its own group


def _wait_for_a_record(proc, path, timeout=120):
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        assert proc.poll() is None, proc.communicate()
        if path.is_file() and path.read_bytes().count(b"\n") >= 2:  # header + one record
            return
        time.sleep(0.005)
    raise AssertionError(f"no record in {path} after {timeout} s")


def test_report_killed_then_resumed_equals_an_uninterrupted_sweep(tmp_path, capsys, monkeypatch):
    import importlib

    out = tmp_path / "out"
    ckpt = out / ".initdiag-work" / "checkpoint.jsonl"
    proc = _start_slow_report(out)
    _wait_for_a_record(proc, ckpt)
    proc.kill()  # SIGKILL
    proc.communicate()
    k, n = checkpoint.count(ckpt)
    assert 1 <= k < N and n == N
    assert not (out / "index.html").exists()
    # without --resume: refused, saying what is there and how to go on
    assert cli.main(["report", *ARGS, "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err == (f"initdiag: error: {ckpt} holds {k} of {N} probes of an interrupted run; pass "
                   f"--resume to continue it, or delete {ckpt.parent} (or use another --out) to "
                   f"start over\n")
    # --resume runs only the missing probes
    probe = importlib.import_module("initdiag.probe")
    ran, real = [], probe.run_job
    monkeypatch.setattr(probe, "run_job", lambda job: (ran.append(1), real(job))[1])
    assert cli.main(["report", *ARGS, "--out", str(out), "--resume"]) == 0
    captured = capsys.readouterr()
    assert f"initdiag: resuming: {k} of {N} probes already done ({ckpt})" in captured.err
    assert len(ran) == N - k
    assert (out / "index.html").is_file() and not (out / ".initdiag-work").exists()
    monkeypatch.undo()
    fresh = initdiag.sweep(activations=["tanh"], inits=["he_normal", "orthogonal"], depths=[3],
                           widths=[8], batch=8, seeds=[0, 1], norm="layernorm", histograms=True)
    assert_same_numbers(initdiag.load(out / "results.json"), fresh)


def test_report_sigterm_exits_130_with_one_line(tmp_path):
    out = tmp_path / "out"
    ckpt = out / ".initdiag-work" / "checkpoint.jsonl"
    proc = _start_slow_report(out)
    _wait_for_a_record(proc, ckpt)
    proc.terminate()  # SIGTERM
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    k, _ = checkpoint.count(ckpt)
    assert k >= 1
    command = "initdiag report " + " ".join(ARGS) + f" --out {out} --quiet --resume"
    assert err.splitlines() == [f"initdiag: interrupted; no report written; {k} of {N} probes "
                                f"kept in {ckpt}; resume with: {command}"]
    assert sorted(p.name for p in out.iterdir()) == [".initdiag-work"]
    assert [p.name for p in ckpt.parent.iterdir()] == ["checkpoint.jsonl"]
    with pytest.raises(ProcessLookupError):  # its figure worker was ended with it
        os.killpg(proc.pid, 0)


def test_an_interrupt_inside_a_finalizer_is_raised_after_the_next_probe():
    """A KeyboardInterrupt raised in a gc callback or __del__ is dropped by Python ("Exception
    ignored in ..."): the handler records it there and the progress callback raises it."""
    import gc

    from initdiag.cli.report import Interrupts, Terminated

    state = Interrupts()
    seen = []

    def callback(phase, info):  # stands in for jax's _xla_gc_callback
        if phase == "start" and not seen:
            seen.append(1)
            state.handler(signal.SIGINT, sys._getframe())  # must not raise here

    gc.callbacks.append(callback)
    try:
        gc.collect()
    finally:
        gc.callbacks.remove(callback)
    assert seen and state.received == signal.SIGINT
    with pytest.raises(KeyboardInterrupt):
        state.check()

    class Finalized:
        def __del__(self):
            term.handler(signal.SIGTERM, sys._getframe())

    term = Interrupts()
    Finalized()  # __del__ runs at once (refcount 0): nothing raised, nothing printed
    with pytest.raises(Terminated):
        term.check()
    # anywhere else the handler raises at once, and a state with no signal never raises
    with pytest.raises(KeyboardInterrupt):
        Interrupts().handler(signal.SIGINT, sys._getframe())
    Interrupts().check()


MODEL_FILE = '''
import jax, jax.numpy as jnp

def make_model():
    k1, k2 = jax.random.split(jax.random.key(0))
    params = {"dense": jax.random.normal(k1, (4, 8)) / 2.0,
              "head": jax.random.normal(k2, (8, 2)) / 3.0}
    def fn(p, x):
        return jnp.tanh(x @ p["dense"]) @ p["head"]
    return fn, params, jax.random.normal(jax.random.key(1), (8, 4))
'''


def test_model_report_interrupted_then_resumed(tmp_path, capsys, monkeypatch):
    from initdiag.cli.report import probe_model
    from initdiag.model import api
    from initdiag.model.loader import load_model

    (tmp_path / "models.py").write_text(textwrap.dedent(MODEL_FILE))
    spec = f"{tmp_path / 'models.py'}:make_model"
    out = tmp_path / "out"
    args = ["report", "--model", spec, "--inits", "he_normal,orthogonal", "--seeds", "0,1",
            "--out", str(out), "--quiet"]
    real, calls = api._result, []

    def interrupt_third(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(api, "_result", interrupt_third)
    handler = signal.getsignal(signal.SIGTERM)
    assert cli.main(args) == 130
    assert signal.getsignal(signal.SIGTERM) is handler  # the CLI's SIGTERM handler is gone
    err = capsys.readouterr().err
    ckpt = out / ".initdiag-work" / "checkpoint.jsonl"
    assert err.startswith(f"initdiag: interrupted; no report written; 2 of 4 probes kept in "
                          f"{ckpt}; resume with: ") and err.endswith(" --resume\n")
    assert err.count("\n") == 1
    del calls[:]
    assert cli.main(args + ["--resume"]) == 0
    assert len(calls) == 2 and not (out / ".initdiag-work").exists()
    monkeypatch.undo()
    fresh = probe_model(load_model(spec), ["he_normal", "orthogonal"], [0, 1])
    assert _numbers(initdiag.load(out / "results.json")) == _numbers(fresh)
