"""The initializers' numbers, pinned bit for bit.

Two kinds of pins:

* against jax itself: ``initializer(name)`` must return exactly what the corresponding
  ``jax.nn.initializers`` call returns for the same key (any jax version);
* against the numbers of the implementation before the initializers became one record per scheme
  (commit eaead1a): SHA-256 digests of the raw float32 bytes of direct draws, bias draws, the
  stack drawing (``init_stack``, the compiled forms), variances and LSUV probes. Those depend on
  jax's random bits and XLA's kernels, so they are checked with the jax they were made with
  (``PINNED_JAX``) and skipped, with that reason, under another. To re-make them after a
  deliberate change: ``python tests/test_initializer_pins.py``.
"""

import hashlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.nn import initializers as jinit

import initdiag
from initdiag.nn.stacks import init_stack, make_spec

KEY_SEED = 11
SHAPES = ((24, 40), (40, 24))


def _key():
    return jax.random.key(KEY_SEED)


def _same_bits(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    assert a.tobytes() == b.tobytes(), np.max(np.abs(a.astype(np.float64) - b))


# label -> jax initializer drawing the same numbers (jax's named initializers where jax has one)
JAX_EQUIVALENT = {
    "zeros": jinit.zeros,
    "constant": jinit.constant(0.1),
    "constant(value=-0.3, gain=2.0)": jinit.constant(-0.6),
    "normal": jinit.normal(0.01),
    "normal(std=0.3, gain=1.7)": jinit.normal(0.3 * 1.7),
    "truncated_normal": jinit.truncated_normal(0.01),
    "truncated_normal(std=0.2)": jinit.truncated_normal(0.2),
    "glorot_uniform": jinit.glorot_uniform(),
    "glorot_normal": jinit.glorot_normal(),
    "he_uniform": jinit.he_uniform(),
    "he_normal": jinit.he_normal(),
    "he_normal(gain=1.2)": jinit.variance_scaling(2.0 * 1.2**2, "fan_in", "truncated_normal"),
    "lecun_uniform": jinit.lecun_uniform(),
    "lecun_normal": jinit.lecun_normal(),
    "orthogonal": jinit.orthogonal(),
    "orthogonal(gain=1.5)": jinit.orthogonal(1.5),
    "torch_default": jinit.variance_scaling(1.0 / 3.0, "fan_in", "uniform"),
    "variance_scaling": jinit.variance_scaling(1.0, "fan_in", "truncated_normal"),
    "variance_scaling(scale=2.0, mode=fan_avg, distribution=normal)":
        jinit.variance_scaling(2.0, "fan_avg", "normal"),
    "variance_scaling(scale=0.5, mode=fan_geo_avg, distribution=uniform)":
        jinit.variance_scaling(0.5, "fan_geo_avg", "uniform"),
}


@pytest.mark.parametrize("label", sorted(JAX_EQUIVALENT))
@pytest.mark.parametrize("shape", SHAPES)
def test_draws_are_jax_initializers_bit_for_bit(label, shape):
    _same_bits(initdiag.initializer(label)(_key(), shape, jnp.float32),
               JAX_EQUIVALENT[label](_key(), shape, jnp.float32))


def test_symmetric_uniform_is_jax_random_uniform_bit_for_bit():
    # jax's own initializers.uniform samples [0, s); the registry's is symmetric.
    for label, s in (("uniform", 0.05), ("uniform(scale=0.2, gain=0.5)", 0.1)):
        _same_bits(initdiag.initializer(label)(_key(), (24, 40)),
                   jax.random.uniform(_key(), (24, 40), jnp.float32, minval=-s, maxval=s))


# ---- numbers of the implementation before the refactor ---------------------------------------

PINNED_JAX = "0.10.2"

LABELS = sorted(JAX_EQUIVALENT) + ["uniform", "uniform(scale=0.2, gain=0.5)",
                                   "glorot_uniform(gain=1.3)", "torch_default(gain=2.0)",
                                   "variance_scaling(scale=3.0, mode=fan_out)"]


def _digest(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(np.asarray(a))
        h.update(str((a.dtype, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:20]


def _initializer_digest(label: str) -> str:
    init = initdiag.initializer(label)
    draws = [init(_key(), shape, jnp.float32) for shape in SHAPES]
    bias = init.bias(_key(), 24, 40, jnp.float32)
    variances = np.array([[init.weight_variance(*s), init.bias_variance(*s)] for s in SHAPES])
    return _digest(*draws, bias, variances, *_stack(label, "normal(std=0.1)"))


def _stack(init: str, bias_init: str) -> list:
    """The drawing of a stack (one compilation per bias initializer and segment shape)."""
    spec = make_spec(init=init, bias_init=bias_init, depth=3, width=[24, 24, 16], input_width=40)
    return [a for layer in init_stack(7, spec) for a in layer]


# bias initializers drawn inside the compiled stack drawing (one of each kind of bias rule)
BIAS_LABELS = ["he_normal(gain=1.2)", "orthogonal(gain=1.5)", "torch_default", "uniform",
               "constant(value=-0.3, gain=2.0)"]


PROBES = {
    "tanh lsuv": dict(activation="tanh", init="lsuv", bias_init="normal(std=0.1)"),
    "sigmoid lsuv(gain=1.5, tol=0.01)": dict(activation="sigmoid",
                                            init="lsuv(gain=1.5, tol=0.01)"),
    # weights drawn inside the probe's scan (engine/scan.py), not upfront
    "tanh glorot_normal(gain=1.1) in_scan": dict(activation="tanh", init="glorot_normal(gain=1.1)",
                                                 bias_init="orthogonal", draw_weights="in_scan"),
}
OTHER = ["lsuv start", "lsuv jacobian"]


def _probe_digest(name: str) -> str:
    if name == "lsuv jacobian":
        from initdiag.analysis.jacobian import jacobian_spectrum
        s = jacobian_spectrum("tanh", "lsuv", depth=3, width=16, seed=1, batch=32)
        return _digest(s.singular_values, s.weights)
    if name == "lsuv start":  # the weights LSUV starts from
        return _digest(*_stack("lsuv(gain=1.5)", "zeros"))
    r = initdiag.probe(depth=4, width=32, batch=16, seed=2, **PROBES[name])
    return _digest(*[r[m] for m in sorted(r.metrics)])


def fingerprints() -> dict[str, str]:
    out = {label: _initializer_digest(label) for label in LABELS}
    out.update({"bias: " + label: _digest(*_stack("he_normal", label)) for label in BIAS_LABELS})
    for name in list(PROBES) + OTHER:
        out["probe: " + name] = _probe_digest(name)
    return out


PINNED = {  # made with the implementation of commit eaead1a, jax 0.10.2
    'constant': 'af63f15d2c46d5ea2ab9',
    'constant(value=-0.3, gain=2.0)': '90e81be73d31a46884cb',
    'glorot_normal': '81dd164f95cd51e06228',
    'glorot_uniform': '1965d939d065c6767ba6',
    'he_normal': 'c122ef413062af14cada',
    'he_normal(gain=1.2)': 'f854176acea09df0a8a4',
    'he_uniform': '429c025716c4726d2041',
    'lecun_normal': 'a33083e021cea30ce0cd',
    'lecun_uniform': 'f1c967d77c6e3dbc923d',
    'normal': '295e564fa3afbdf0a8a9',
    'normal(std=0.3, gain=1.7)': '09678ff8b20bdb42614c',
    'orthogonal': 'c0df38eb614e15a20f04',
    'orthogonal(gain=1.5)': 'd0b8e4ddf0ddc26065ad',
    'torch_default': '612fb87a3bc429070965',
    'truncated_normal': '599e722657f13715ad23',
    'truncated_normal(std=0.2)': '1ac6e9d8e986bf88232f',
    'variance_scaling': 'a33083e021cea30ce0cd',
    'variance_scaling(scale=0.5, mode=fan_geo_avg, distribution=uniform)': '36d0128af48ace406bdd',
    'variance_scaling(scale=2.0, mode=fan_avg, distribution=normal)': '23f331641994d8e8a4cd',
    'zeros': '6879714626554c1e0030',
    'uniform': '39ae896da652eed6aa50',
    'uniform(scale=0.2, gain=0.5)': 'bacfe359e802c91151f5',
    'glorot_uniform(gain=1.3)': '79c7ac6e1ca77c258814',
    'torch_default(gain=2.0)': '5775788f4b6757c2c3c4',
    'variance_scaling(scale=3.0, mode=fan_out)': 'c585fabcffef49377dc6',
    'bias: he_normal(gain=1.2)': 'f1da24d9914dee20e283',
    'bias: orthogonal(gain=1.5)': 'c672fbe279cff41708b6',
    'bias: torch_default': '9c72f96cb2e2bf5db50e',
    'bias: uniform': '52ca5685a73f139f513e',
    'bias: constant(value=-0.3, gain=2.0)': '8634e4ef7ebef87ec60c',
    'probe: tanh lsuv': '2caeb8b18f5f62f17b7a',
    'probe: sigmoid lsuv(gain=1.5, tol=0.01)': 'b0df4314e1ec0e6a461e',
    'probe: tanh glorot_normal(gain=1.1) in_scan': '4388eba8389072fb449b',
    'probe: lsuv start': '107b0c2f8d1eb0d2d6e3',
    'probe: lsuv jacobian': 'bd0fb44ca583646383d7',
}

needs_pinned_jax = pytest.mark.skipif(
    jax.__version__ != PINNED_JAX,
    reason=f"digests pinned with jax {PINNED_JAX}; this is jax {jax.__version__}")


@needs_pinned_jax
@pytest.mark.parametrize("label", LABELS)
def test_initializer_numbers_are_unchanged(label):
    assert _initializer_digest(label) == PINNED[label]


@needs_pinned_jax
@pytest.mark.parametrize("label", BIAS_LABELS)
def test_bias_numbers_in_the_stack_drawing_are_unchanged(label):
    assert _digest(*_stack("he_normal", label)) == PINNED["bias: " + label]


@needs_pinned_jax
@pytest.mark.parametrize("name", list(PROBES) + OTHER)
def test_probe_and_lsuv_numbers_are_unchanged(name):
    assert _probe_digest(name) == PINNED["probe: " + name]


if __name__ == "__main__":
    for k, v in fingerprints().items():
        print(f"    {k!r}: {v!r},")
    sys.exit(0)
