"""ImageResult.plot()/save() without keep_image=True: the image passed, else the kept one, else the source file
read again; with none of them, one clear FacemtlError saying what to do."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from facemtl.analyzer import AnalyzerOptions, FaceAnalyzer
from facemtl.errors import FacemtlError


@pytest.fixture
def analyzer(tiny_model, fake_detector):
    return FaceAnalyzer(tiny_model, fake_detector, 64)  # keep_image off: the default


@pytest.fixture
def reference(tiny_model, fake_detector, face_image):
    """The drawing of a result that kept its image: what every other way must give."""
    res = FaceAnalyzer(tiny_model, fake_detector, 64, options=AnalyzerOptions(keep_image=True))(face_image)
    return res.plot()


def test_no_pixels_anywhere_is_one_clear_error(analyzer, face_image, tmp_path):
    res = analyzer(face_image)  # an array source: nothing to read again
    assert res.image is None
    for call in (res.plot, lambda: res.save(tmp_path / "x.png")):
        with pytest.raises(FacemtlError, match=r"no image to draw on for '<array 64x64x3>'.*pass the image "
                                               r"\(plot\(image=\.\.\.\).*keep_image=True"):
            call()
    assert not (tmp_path / "x.png").exists()


def test_image_passed_in(analyzer, face_image, reference, tmp_path):
    res = analyzer(face_image)
    assert np.array_equal(res.plot(face_image), reference)
    assert np.array_equal(res.plot(image=Image.fromarray(face_image)), reference)  # anything analyze takes
    assert np.array_equal(res.plot(np.ascontiguousarray(face_image[:, :, ::-1]), channels="bgr"), reference)
    out = res.save(tmp_path / "drawn" / "x.png", image=face_image)
    assert np.array_equal(np.asarray(Image.open(out)), reference)
    with pytest.raises(FacemtlError, match=r"the image passed is 32x48 \(HxW\) but '<array 64x64x3>' was "
                                           r"analysed at 64x64"):
        res.plot(np.zeros((32, 48, 3), np.uint8))


def test_source_file_is_read_again(analyzer, face_image, reference, tmp_path):
    path = tmp_path / "face.png"
    Image.fromarray(face_image).save(path)
    res = analyzer(str(path))
    assert res.image is None
    assert np.array_equal(res.plot(), reference)
    assert np.array_equal(np.asarray(Image.open(res.save(tmp_path / "out.png"))), reference)
    Image.fromarray(np.zeros((10, 20, 3), np.uint8)).save(path)  # changed since: the boxes would not fit
    with pytest.raises(FacemtlError, match=r"face.png \(read again\) is 10x20 \(HxW\) but .* analysed at 64x64"):
        res.plot()
    path.unlink()  # gone: the plain advice again
    with pytest.raises(FacemtlError, match=r"its source is not a file to read again; pass the image"):
        res.plot()


def test_kept_image_still_wins(tiny_model, fake_detector, face_image, reference):
    res = FaceAnalyzer(tiny_model, fake_detector, 64, options=AnalyzerOptions(keep_image=True))(face_image)
    assert np.array_equal(res.plot(), reference)
