"""Headless Chromium on the real pages: the web service's page (upload, boxes, bars, Grad-CAM; its layout with 1, 7
and 30 faces, with screenshots) and the HTML report.

Runs the checks of ``scripts/browser_check.py`` and ``scripts/report_check.py`` on the tiny random model; skipped
when no Chromium binary is found (``apt-get install chromium``, or set ``$CHROMIUM``).
"""
from __future__ import annotations

import io
import re
import sys
from pathlib import Path

import pytest
from conftest import FakeDetector, calibrated_copy, draw_face
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from browser_check import MAX_CARD_PX, check_page, chromium, grid_faces
from report_check import check_report
from test_report import tiny_report  # noqa: F401 - the report of an untrained tiny model, with samples

from facemtl.report.html import write_report

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


@pytest.fixture(scope="module")
def calibrated_tiny(tmp_path_factory):
    """The tiny model as a checkpoint with a stored calibration: its ages come with intervals."""
    import torch

    from facemtl.models import create_model, save_checkpoint
    from facemtl.tasks import list_tasks

    root = tmp_path_factory.mktemp("crowd")
    torch.manual_seed(0)
    ckpt = save_checkpoint(root / "tiny.pt", create_model("tiny", tasks=list_tasks()).eval())
    return calibrated_copy(ckpt, root / "tiny_calibrated.pt")


@pytest.mark.timeout(400)
@pytest.mark.parametrize("n", [1, 7, 30])
def test_web_page_layout_with_1_7_and_30_faces(n, calibrated_tiny, tmp_path):
    """A synthetic crowd of n faces (a stand-in detector returns their boxes): a compact card per face, every box
    label touching its own box inside the photo with none covering another, the age interval and the unsure
    flag on the cards, a readable Grad-CAM view; screenshots in tmp_path (page-<n>faces.png)."""
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    from facemtl.analyzer import FaceAnalyzer

    photo, dets = grid_faces(n, seed=n)
    analyzer = FaceAnalyzer.from_checkpoint(calibrated_tiny, detector=FakeDetector(dets), flip_tta=False)
    png = tmp_path / f"page-{n}faces.png"
    checks = check_page(analyzer, photo, png, budget_ms=60000, faces=n, close_cam=n > 1)
    assert not _failed(checks), _failed(checks)
    names = " ".join(checks)
    for what in ("a card per face", f"at most {MAX_CARD_PX} px tall", "labels touch their own box",
                 "none covering another", "age interval shown", "unsure", "Grad-CAM view readable"):
        assert what in names, what
    assert png.stat().st_size > 10_000


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
def test_docs_render_offline_in_chromium(tiny_model, fake_detector, tmp_path):
    """Swagger UI draws the API's operations with no network but the service's own (its assets are local)."""
    pytest.importorskip("fastapi")
    from browser_check import headless, png_std, serving

    from facemtl.analyzer import FaceAnalyzer
    from facemtl.serve.app import create_app

    shot = tmp_path / "docs.png"
    with serving(create_app(FaceAnalyzer(tiny_model, fake_detector, 64))) as url:
        dom = headless(chromium(), f"{url}/docs", budget_ms=20000).stdout
        headless(chromium(), f"{url}/docs", screenshot=shot, budget_ms=20000)
    assert "swagger-ui" in dom and "opblock" in dom, dom[:500]  # operations rendered by the bundled script
    assert "/predict/batch" in dom and "/explain" in dom
    assert png_std(shot) > 5.0  # the screenshot shows the rendered page, not a blank one
