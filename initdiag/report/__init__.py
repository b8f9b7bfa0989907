"""Reports: plot panels (:mod:`.plots`), figures (:mod:`.figures`), the HTML page (:mod:`.html`)
and the whole report written into a folder (:mod:`.build`: :func:`.build.build_report`), which
the ``initdiag report`` command (:mod:`initdiag.cli.report`) runs.

This package imports matplotlib and seaborn; the core of initdiag never imports it. It does not
import :mod:`initdiag.cli`.
"""
