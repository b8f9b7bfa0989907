"""The networks initdiag probes, as pure functions: activations, initializers and stacks.

Imports nothing above it (only :mod:`initdiag.base`); everything else builds on it.
"""
