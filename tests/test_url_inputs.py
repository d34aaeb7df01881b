"""Image URLs as inputs (http(s):// and file://), in the Python API and the CLI: bounded in size and time, one clear
error each when the download fails."""
from __future__ import annotations

import csv
import json
import time

import numpy as np
import pytest
from conftest import QuietHandler, draw_face, local_http_server
from PIL import Image

import facemtl.image as image_mod
from facemtl.cli.__main__ import main
from facemtl.errors import InvalidInputError
from facemtl.image import load_image


@pytest.fixture
def site(tmp_path):
    """A loopback HTTP server over tmp_path/site with face.png, notes.txt and a slow route."""
    root = tmp_path / "site"
    root.mkdir()
    Image.fromarray(draw_face(96, seed=4)).save(root / "face.png")
    (root / "notes.txt").write_text("not an image")

    class Handler(QuietHandler):
        def do_GET(self):
            if self.path.startswith("/slow"):
                time.sleep(3)
            return super().do_GET()

    with local_http_server(root, Handler) as url:
        yield url, root


def test_load_image_from_http_and_file_urls(site):
    url, root = site
    local = load_image(root / "face.png")
    assert np.array_equal(load_image(f"{url}/face.png"), local)
    assert np.array_equal(load_image((root / "face.png").as_uri()), local)


def test_url_failures_are_one_clear_error(site, monkeypatch):
    url, root = site
    with pytest.raises(InvalidInputError, match=r"cannot download .*/missing\.png: HTTP 404"):
        load_image(f"{url}/missing.png")
    with pytest.raises(InvalidInputError, match=r"not a readable image .*notes\.txt"):
        load_image(f"{url}/notes.txt")
    monkeypatch.setattr(image_mod, "URL_MAX_BYTES", 100)
    with pytest.raises(InvalidInputError, match=r"above the 0 MB limit|more than the 0 MB limit"):
        image_mod.fetch_url(f"{url}/face.png", max_bytes=100)
    t0 = time.perf_counter()
    with pytest.raises(InvalidInputError, match=r"cannot download .*timeout 1 s"):
        image_mod.fetch_url(f"{url}/slow/face.png", timeout=1)
    assert time.perf_counter() - t0 < 2.5
    with pytest.raises(InvalidInputError, match="cannot download http://127.0.0.1:9/"):
        load_image("http://127.0.0.1:9/x.jpg")  # nothing listens on port 9


def test_cli_predict_and_batch_take_image_urls(site, tmp_path, capsys):
    url, _ = site
    assert main(["predict", f"{url}/face.png", "--detector", "none", "--json", "--save-dir", str(tmp_path / "o")]) == 0
    doc = json.loads(capsys.readouterr().out.strip().splitlines()[0])
    assert doc["source"] == f"{url}/face.png" and len(doc["faces"]) == 1
    assert list((tmp_path / "o").rglob("face.jpg"))  # drawn under the URL's host/path
    out = tmp_path / "r.csv"
    assert main(["-q", "batch", f"{url}/face.png", f"{url}/missing.png", "--detector", "none", "--out", str(out)]) == 3
    rows = {r["file"]: r for r in csv.DictReader(open(out, newline=""))}
    assert rows[f"{url}/face.png"]["age"] and "HTTP 404" in rows[f"{url}/missing.png"]["error"]
