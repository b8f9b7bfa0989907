r"""Tick labels of log axes as plain text: ``10⁻⁵``, ``2×10⁻³``, not mathtext.

Matplotlib labels a log axis with mathtext (``$\mathdefault{10^{-5}}$``), which it parses (with
pyparsing) for every distinct label, font size and figure size: in the report that was ~2 s of
the ~7 s its figures took. :class:`PlainLogFormatter` gives the same labels (the same ticks, the
same choice of minor labels) written with Unicode superscripts, which the report's font (DejaVu
Sans) has, so they are laid out as ordinary text; :func:`log_scale` sets a log scale labelled with
it. The digits look a little different from mathtext's raised small digits (the font's own
superscript glyphs).

This module imports matplotlib; import it where a figure is drawn.
"""

from __future__ import annotations

import re

from matplotlib.ticker import LogFormatterSciNotation

#: Unicode superscripts of the characters of an integer exponent.
SUPERSCRIPTS = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")
#: The minus sign matplotlib draws (U+2212, not the hyphen).
MINUS = "\N{MINUS SIGN}"
_MATH = re.compile(r"\$\\mathdefault\{(.*)\}\$")
_POWER = re.compile(r"(?:([-0-9.e+]+)\\times)?([0-9.]+)\^\{(-?[0-9]+)\}")
_NUMBER = re.compile(r"-?[0-9.]+(?:e[-+][0-9]+)?")


def plain_math(label: str) -> str:
    r"""A log-axis label of matplotlib (``$\mathdefault{10^{-5}}$``,
    ``$\mathdefault{2\times10^{-3}}$``, ``$\mathdefault{1}$``) as plain text (``10⁻⁵``,
    ``2×10⁻³``, ``1``); any other label unchanged."""
    m = _MATH.fullmatch(label)
    if m is None:
        return label
    body, sign = m.group(1), ""
    if body.startswith("-"):
        body, sign = body[1:], MINUS
    p = _POWER.fullmatch(body)
    if p is not None:
        coeff, base, exp = p.groups()
        return sign + (f"{coeff}×" if coeff else "") + base + exp.translate(SUPERSCRIPTS)
    if _NUMBER.fullmatch(body):
        return sign + body.replace("-", MINUS)
    return label


class PlainLogFormatter(LogFormatterSciNotation):
    """:class:`matplotlib.ticker.LogFormatterSciNotation` (the default of a log axis) writing
    its labels as plain text (:func:`plain_math`): the same labels, no mathtext."""

    def __call__(self, x, pos=None):
        return plain_math(super().__call__(x, pos))


def log_scale(ax, axis: str = "y") -> None:
    """Put ``axis`` ("x" or "y") of ``ax`` on a log scale (base 10) labelled by
    :class:`PlainLogFormatter`: major and minor labels as matplotlib's defaults would be."""
    getattr(ax, f"set_{axis}scale")("log")
    which = getattr(ax, f"{axis}axis")
    which.set_major_formatter(PlainLogFormatter(10.0))
    which.set_minor_formatter(PlainLogFormatter(10.0, labelOnlyBase=False))
