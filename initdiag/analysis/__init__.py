"""Analyses of probe results and stacks: the diagnosis (verdicts), Jacobian spectra and LSUV.

Imports the results model, :mod:`initdiag.nn`, :mod:`initdiag.engine` and :mod:`initdiag.theory`.
"""
