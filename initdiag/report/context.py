"""What the figures of one sweep share: :class:`Context`.

The palette (one colour per initializer, :func:`initdiag.report.style.init_palette`), the tidy
frame, the mean-field predictions and the Jacobian spectra of the sweep, each computed once, when
a figure first needs it (:mod:`.data`, :mod:`.theory_data`).
"""

from __future__ import annotations

import functools

from initdiag.report import style
from initdiag.report.data import inits
from initdiag.report.theory_data import predictions, report_spectra
from initdiag.results import SweepResult


class Context:
    """What the figures of one sweep share: the palette, the tidy frame, the mean-field
    predictions and the Jacobian spectra (each computed once, when first needed)."""

    def __init__(self, sweep: SweepResult, palette: dict | None = None):
        self.sweep = sweep
        self.palette = palette or style.init_palette(inits(sweep))

    @functools.cached_property
    def frame(self):
        """The tidy frame (:meth:`initdiag.SweepResult.to_frame`)."""
        return self.sweep.to_frame()

    @functools.cached_property
    def predictions(self) -> dict:
        """:func:`initdiag.report.theory_data.predictions` of the sweep."""
        return predictions(self.sweep)

    @functools.cached_property
    def spectra(self) -> tuple[dict, dict]:
        """:func:`initdiag.report.theory_data.report_spectra` of the sweep: (spectra, skipped)."""
        return report_spectra(self.sweep)
