"""The probe engine: scaled float32 arithmetic, per-layer reductions, the compiled scan over
layers, the memory plan, multi-device sharding and the BLAS thread limit.

Imports :mod:`initdiag.nn` and :mod:`initdiag.base`, nothing above them.
"""
