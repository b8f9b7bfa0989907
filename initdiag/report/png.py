"""PNG files of report figures: a 256-colour palette image (quantized, no dithering).

:func:`png_bytes` renders a figure once with Agg at :data:`initdiag.report.layout.DPI`, without a
tight bounding box (the layout already fits the text), takes the canvas's pixels as they are (no
intermediate PNG written and read back) and reduces them to a 256-colour palette (octree, no
dithering): line plots and colour maps look the same and the files are ~3.5x smaller (the
example report's PNGs: 1.06 MB as RGBA), which matters for a page that embeds them all and is
mailed around. The file is compressed at :data:`COMPRESS_LEVEL`; it holds no metadata (no
software, no time, no resolution), so equal figures give equal bytes.
"""

from __future__ import annotations

import io

from initdiag.report.layout import DPI

#: zlib level of the PNG (PIL's ``compress_level``). The default report's 8 figures: 310 kB in
#: 0.05 s at 6; 298 kB in 0.14 s at 8; 282 kB in 0.34 s at 9 or with ``optimize=True`` (the
#: same bytes for these palette images).
COMPRESS_LEVEL = 6


def png_bytes(fig) -> bytes:
    """The figure as a 256-colour PNG at :data:`~initdiag.report.layout.DPI` (module
    docstring); the file holds no metadata, so equal figures give equal bytes."""
    from PIL import Image

    small = rendered_rgb(fig).quantize(colors=256, method=Image.Quantize.FASTOCTREE,
                                       dither=Image.Dither.NONE)
    out = io.BytesIO()
    small.save(out, format="PNG", compress_level=COMPRESS_LEVEL)
    return out.getvalue()


def rendered_rgb(fig):
    """The figure drawn by Agg at :data:`~initdiag.report.layout.DPI`: a PIL RGB image of the
    canvas's pixels (what ``savefig(format="png")`` would encode, without its alpha)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image

    if fig.dpi != DPI or not isinstance(fig.canvas, FigureCanvasAgg):
        buf = io.BytesIO()  # another resolution or backend: let savefig switch, then read back
        fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
        buf.seek(0)
        with Image.open(buf) as im:
            return im.convert("RGB")
    canvas = fig.canvas
    FigureCanvasAgg.draw(canvas)
    w, h = canvas.get_width_height(physical=True)
    # convert() copies the pixels out of the canvas's buffer, which the next draw reuses
    return Image.frombuffer("RGBA", (w, h), canvas.buffer_rgba(), "raw", "RGBA", 0, 1
                            ).convert("RGB")
