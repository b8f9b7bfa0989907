"""Probe the user's own model: any JAX function, Flax, Equinox or Haiku (issue 11).

Layering: this package sits beside :mod:`initdiag.probe` (above the engine and the nn core); the
core never imports it, and it imports no framework at module level.
"""
