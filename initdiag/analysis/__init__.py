"""Analyses of probe results and stacks: the diagnosis (verdicts) and Jacobian spectra.

Imports the results model, :mod:`initdiag.nn`, :mod:`initdiag.engine` and :mod:`initdiag.theory`.
"""
