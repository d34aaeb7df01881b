"""Headless Chromium on the real pages: the web service's page (upload, boxes, bars, Grad-CAM) and the HTML report.

Runs the checks of ``scripts/browser_check.py`` and ``scripts/report_check.py`` on the tiny random model; skipped
when no Chromium binary is found (``apt-get install chromium``, or set ``$CHROMIUM``).
"""
from __future__ import annotations

import io
import re
import sys
from pathlib import Path

import pytest
from conftest import draw_face
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from browser_check import check_page, chromium
from report_check import check_report
from test_report import tiny_report  # noqa: F401 - the report of an untrained tiny model, with samples

from facemtl.evaluate.report import write_report

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(chromium() is None, reason="no Chromium binary found (apt-get install chromium)")]


def _failed(checks: dict[str, bool]) -> list[str]:
    return [name for name, ok in checks.items() if not ok]


@pytest.mark.timeout(400)
def test_web_page_upload_boxes_bars_and_gradcam(tiny_model, tmp_path):
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    from facemtl.analyzer import AnalyzerOptions, FaceAnalyzer
    from facemtl.detect import create_detector

    # detector "none": the whole photo is one face, so the tiny model always has a card to draw and explain
    analyzer = FaceAnalyzer(tiny_model, create_detector("none"), 64, options=AnalyzerOptions(flip_tta=False))
    buf = io.BytesIO()
    Image.fromarray(draw_face(160, seed=3)).save(buf, format="JPEG", quality=90)
    checks = check_page(analyzer, buf.getvalue(), tmp_path / "page.png", budget_ms=60000)
    assert len(checks) >= 7 and not _failed(checks), _failed(checks)


@pytest.mark.timeout(400)
def test_report_renders_sections_images_and_charts(tiny_report, tmp_path):  # noqa: F811
    write_report(tiny_report["report"], tmp_path / "rep")
    checks = check_report(tmp_path / "rep", tmp_path / "report.png")
    assert len(checks) >= 8 and not _failed(checks), _failed(checks)

    # the checks can fail: one undecodable thumbnail and one zero-size chart are caught, the rest still pass
    index = tmp_path / "rep" / "index.html"
    page = index.read_text(encoding="utf-8")
    page = re.sub(r'src="data:image/jpeg;base64,[^"]*"', 'src="data:image/jpeg;base64,AAAA"', page, count=1)
    page = re.sub(r'<svg ([^>]*)width="\d+" height="\d+"', r'<svg \1width="0" height="0"', page, count=1)
    index.write_text(page, encoding="utf-8")
    broken = check_report(tmp_path / "rep", tmp_path / "broken.png")
    assert _failed(broken) == ["every image loaded", "every chart has a size"], broken


@pytest.mark.timeout(200)
def test_docs_render_offline_in_chromium(tiny_model, fake_detector):
    """Swagger UI draws the API's operations with no network but the service's own (its assets are local)."""
    pytest.importorskip("fastapi")
    from browser_check import headless, serving

    from facemtl.analyzer import FaceAnalyzer
    from facemtl.serve.app import create_app

    with serving(create_app(FaceAnalyzer(tiny_model, fake_detector, 64))) as url:
        dom = headless(chromium(), f"{url}/docs", budget_ms=20000).stdout
    assert "swagger-ui" in dom and "opblock" in dom, dom[:500]  # operations rendered by the bundled script
    assert "/predict/batch" in dom and "/explain" in dom
