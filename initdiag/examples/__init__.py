"""Small, runnable example models to probe, each in several frameworks.

Each module builds one small architecture and has a ``make_model(framework=..., **options)``
(``deep_cnn``: plain JAX only) returning either ``(fn, params, x)`` for plain JAX or ``(model,
x)`` for a framework, in a form that :func:`initdiag.model.frameworks.adapt` accepts:
``adapt((fn, params), x)``, ``adapt(model, x)``. Once compiled, a forward pass of any default
takes milliseconds on a CPU; in a fresh process, building and compiling one takes 2-5 s of CPU,
most of it XLA compiling the random draws of the initialization (once per shape and process).

===============  =============================================================  ================
module           model                                                          frameworks
===============  =============================================================  ================
``mlp``          tanh or relu MLP, depth 6, width 64, batch 64                  jax, linen, nnx,
                                                                                equinox, haiku
``resnet``       conv + batchnorm + residual blocks (3 blocks, 16 channels,     jax, linen, nnx,
                 8x8 images, batch 16), global average pool, linear head        equinox
``transformer``  pre-LN transformer stack (2 layers, d_model 32, 4 heads, seq   jax, linen, nnx,
                 16, batch 8); ``scan=True`` runs stacked layers in a scan      equinox
``deep_cnn``     Xiao et al. 2018: vanilla tanh CNN, depth 1000, in ``lax.scan``  jax
                 over a stacked kernel, delta-orthogonal or Gaussian at
                 tanh's critical point
===============  =============================================================  ================

Nothing in initdiag's core imports these modules; the plain JAX models need neither Flax nor
Equinox nor Haiku, which are imported only by the function that builds a model in them.
"""

EXAMPLES = ("mlp", "resnet", "transformer", "deep_cnn")
