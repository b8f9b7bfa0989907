"""Reports: plot panels (:mod:`.plots`), figures (:mod:`.figures`), the HTML page (:mod:`.html`)
and the ``initdiag report`` command (:mod:`.command`).

This package imports matplotlib and seaborn; the core of initdiag never imports it.
"""
