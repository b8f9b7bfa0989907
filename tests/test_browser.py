"""The HTML report in real headless Chromium (Debian's ``chromium``, installed by .ci/run).

Checked through the DevTools protocol (tests/cdp.py): every image decodes, no console error, no
network request, user text renders as text; a full-page screenshot is kept in tests/artifacts/.
A control page with a remote image, a console error and a broken image shows that each check
can fail. Without chromium the tests fail under CI (CI=true) and skip elsewhere.
"""

import os
from pathlib import Path

import pytest

from cdp import Browser, find_chromium

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).parent / "artifacts"
TITLE = "<script>alert(1)</script> deep & narrow"


@pytest.fixture(scope="module")
def browser():
    missing = []
    if find_chromium() is None:
        missing.append("chromium (apt-get install chromium)")
    try:
        import websocket  # noqa: F401
    except ImportError:
        missing.append("websocket-client (pip install initdiag[test])")
    if missing:
        msg = "browser test needs " + " and ".join(missing)
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    with Browser() as b:
        yield b


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    from initdiag.report import build

    out = tmp_path_factory.mktemp("report")
    _, _, paths = build.build_report(
        dict(activations=["tanh", "relu"], inits=["he_normal", "glorot_normal", "zeros"],
             depths=[10], widths=[16], batch=8, seeds=[0, 1]), out, title=TITLE)
    return paths


def test_report_renders_offline_without_errors(browser, report):
    browser.load(str(report["html"]))
    images = browser.evaluate(
        "Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
    from initdiag.report.figures import FIGURES

    n_png = len([p for k, p in report.items() if str(p).endswith(".png")])
    assert len(images) == n_png == len(FIGURES) == 8
    assert all(done and w > 0 and h > 0 for done, w, h in images), images
    assert browser.console_errors() == []
    assert browser.network_requests() == []
    # The user's title is text on the page, not markup.
    assert browser.evaluate("document.querySelector('h1').textContent") == TITLE
    assert browser.evaluate("document.title") == TITLE
    assert browser.evaluate("document.scripts.length") == 0
    cells = browser.evaluate("Array.from(document.querySelectorAll('table.verdicts td'))"
                             ".map(td => td.className)")
    assert len(cells) == 6 and all(c.startswith("v-") for c in cells)
    shot = browser.screenshot(ARTIFACTS / "report.png")
    from PIL import Image

    with Image.open(shot) as im:
        assert im.size[0] == 1400 and im.size[1] > 2000


def test_checks_catch_remote_requests_console_errors_and_broken_images(browser, tmp_path):
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><html><body><img src="http://127.0.0.1:9/x.png">'
                    '<img src="data:image/png;base64,AAAA">'
                    "<script>console.error('boom')</script></body></html>")
    browser.load(str(page))
    assert browser.network_requests() == ["http://127.0.0.1:9/x.png"]
    assert any("boom" in e for e in browser.console_errors())
    widths = browser.evaluate("Array.from(document.images).map(i => i.naturalWidth)")
    assert widths == [0, 0]
