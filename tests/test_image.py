"""load_image on every accepted input and the rejected ones; the canonical crop."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facemtl.crop import CropGeometry, crop_face, crop_transform
from facemtl.errors import InvalidInputError, UnknownNameError
from facemtl.image import load_image


def _check_rgb(arr: np.ndarray, hw: tuple[int, int]) -> None:
    assert isinstance(arr, np.ndarray) and arr.dtype == np.uint8 and arr.shape == (*hw, 3)


def _encode(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


# -- accepted inputs ----------------------------------------------------------------------------------------

def test_path_as_str_and_path_with_a_space(tmp_path, face_image):
    p = tmp_path / "my face photo.png"
    Image.fromarray(face_image).save(p)
    for src in (p, str(p)):
        out = load_image(src)
        _check_rgb(out, (64, 64))
        assert np.array_equal(out, face_image)  # PNG is lossless and already RGB


def test_jpeg_path(tmp_path, face_image):
    p = tmp_path / "face.jpg"
    Image.fromarray(face_image).save(p, quality=95, subsampling=0)
    out = load_image(p)
    _check_rgb(out, (64, 64))
    assert np.abs(out.astype(int) - face_image).mean() < 4  # lossy, but the same picture in RGB order


def test_bytes_bytearray_and_pil(face_image):
    data = _encode(Image.fromarray(face_image))
    for src in (data, bytearray(data), Image.fromarray(face_image)):
        assert np.array_equal(load_image(src), face_image)


@pytest.mark.parametrize("shape", [(20, 30), (20, 30, 1)])
def test_grayscale_array_becomes_three_equal_channels(shape):
    arr = np.arange(600, dtype=np.uint8).reshape(shape)
    out = load_image(arr)
    _check_rgb(out, (20, 30))
    assert np.array_equal(out[:, :, 0], arr.reshape(20, 30)) and (out == out[:, :, :1]).all()


def test_rgb_array_is_taken_as_rgb_unchanged(face_image):
    out = load_image(face_image)
    assert np.array_equal(out, face_image)
    # a non-contiguous view is accepted and returned contiguous
    view = face_image[:, ::-1]
    out = load_image(view)
    assert out.flags.c_contiguous and np.array_equal(out, view)


def test_rgba_array_is_composited_on_white():
    arr = np.zeros((4, 4, 4), dtype=np.uint8)
    arr[..., 0] = 200  # red
    arr[0, 0, 3] = 255  # opaque
    arr[0, 1, 3] = 0  # transparent -> white
    out = load_image(arr)
    _check_rgb(out, (4, 4))
    assert out[0, 0].tolist() == [200, 0, 0]
    assert out[0, 1].tolist() == [255, 255, 255]


def test_uint16_and_float_arrays_are_scaled():
    u16 = np.array([[0, 65535], [257 * 128, 257]], dtype=np.uint16)
    assert load_image(u16)[:, :, 0].tolist() == [[0, 255], [128, 1]]
    f = np.array([[0.0, 1.0], [0.5, 1.002]], dtype=np.float32)  # within a grey level above 1: clipped
    assert load_image(f)[:, :, 0].tolist() == [[0, 255], [128, 255]]
    assert load_image(np.array([[-0.002, 0.5]]))[:, :, 0].tolist() == [[0, 128]]
    f3 = np.full((3, 5, 3), 0.25, dtype=np.float64)
    out = load_image(f3)
    _check_rgb(out, (3, 5))
    assert (out == 64).all()


def test_float_array_outside_0_1_is_refused_not_guessed(face_image):
    # A 0-255 float image used to be clipped to white and silently find no faces.
    f255 = face_image.astype(np.float32)
    with pytest.raises(InvalidInputError, match=r"float images must be in \[0, 1\]; got values \d+\.\.\d+; "
                                                r"divide by 255 or pass uint8"):
        load_image(f255)
    assert np.array_equal(load_image(f255 / 255.0), face_image)  # what the message says to do works
    with pytest.raises(InvalidInputError, match=r"got values -1\.\.1; rescale to \[0, 1\]"):
        load_image(np.array([[-1.0, 1.0]]))  # a [-1, 1] normalised tensor


def test_bgr_array_with_channels_bgr_loads_as_the_rgb_array(face_image):
    bgr = np.ascontiguousarray(face_image[:, :, ::-1])  # what cv2.imread gives for the same picture
    assert not np.array_equal(load_image(bgr), face_image)  # the default is RGB: BGR is read as swapped colours
    for channels in ("bgr", "BGR"):
        assert np.array_equal(load_image(bgr, channels=channels), face_image)
    assert np.array_equal(load_image(face_image, channels="rgb"), face_image)
    # BGRA (cv2.IMREAD_UNCHANGED), 16-bit and float BGR: the same pixels as their RGB forms
    alpha = np.full((64, 64, 1), 128, np.uint8)
    assert np.array_equal(load_image(np.concatenate([bgr, alpha], 2), channels="bgr"),
                          load_image(np.concatenate([face_image, alpha], 2)))
    assert np.array_equal(load_image(bgr.astype(np.uint16) * 257, channels="bgr"), face_image)
    assert np.array_equal(load_image(bgr / 255.0, channels="bgr"), face_image)
    gray = face_image[:, :, 0]
    assert np.array_equal(load_image(gray, channels="bgr"), load_image(gray))  # one channel: no order


def test_bad_channels_value_names_it_and_the_choices(face_image):
    with pytest.raises(UnknownNameError, match=r"unknown channel order 'rbg'; valid: bgr, rgb \(did you mean"):
        load_image(face_image, channels="rbg")


def test_channels_bgr_with_a_decoded_source_is_refused(tmp_path, face_image):
    p = tmp_path / "face.png"
    Image.fromarray(face_image).save(p)
    for src in (p, str(p), p.read_bytes(), Image.fromarray(face_image)):
        with pytest.raises(InvalidInputError, match=r"channels='bgr' applies to numpy arrays only"):
            load_image(src, channels="bgr")
        assert np.array_equal(load_image(src, channels="rgb"), face_image)


def test_exif_orientation_is_honoured(tmp_path):
    img = np.zeros((20, 40, 3), dtype=np.uint8)  # landscape 40 wide, 20 high
    img[:, :20] = (255, 0, 0)  # left half red
    pil = Image.fromarray(img)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    p = tmp_path / "rotated.jpg"
    pil.save(p, exif=exif.tobytes(), quality=95)
    with Image.open(p) as stored:
        assert stored.size == (40, 20)
    out = load_image(p)
    _check_rgb(out, (40, 20))  # shown as portrait
    # rotating clockwise puts the left (red) half on top
    assert out[:20, :, 0].mean() > 200 and out[20:, :, 0].mean() < 50
    # the same from bytes and from an opened PIL image
    assert load_image(p.read_bytes()).shape == (40, 20, 3)
    with Image.open(p) as opened:
        assert load_image(opened).shape == (40, 20, 3)


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "I;16", "I", "F", "1"])
def test_any_pil_mode_file_becomes_rgb(tmp_path, face_image, mode):
    base = Image.fromarray(face_image)
    if mode == "I;16":
        img = Image.fromarray(np.asarray(base.convert("L")).astype(np.uint16) * 257)
        assert img.mode == "I;16"
        fmt, ext = "PNG", "png"
    elif mode in ("I", "F"):
        img = base.convert("L").convert(mode)
        fmt, ext = "TIFF", "tif"
    elif mode == "CMYK":
        img = base.convert("CMYK")
        fmt, ext = "JPEG", "jpg"
    else:
        img = base.convert(mode)
        fmt, ext = "PNG", "png"
    p = tmp_path / f"img_{mode.replace(';', '')}.{ext}"
    img.save(p, fmt)
    out = load_image(p)
    _check_rgb(out, (64, 64))
    if mode in ("L", "I;16", "I", "F"):
        gray = np.asarray(base.convert("L")).astype(int)
        assert (out == out[:, :, :1]).all()
        assert np.abs(out[:, :, 0].astype(int) - gray).max() <= 1  # 16-bit is scaled down, not clipped to 255
    if mode == "CMYK":
        assert np.abs(out.astype(int) - face_image).mean() < 12


def test_transparent_png_is_composited_on_white(tmp_path):
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    p = tmp_path / "clear.png"
    Image.fromarray(rgba, "RGBA").save(p)
    assert (load_image(p) == 255).all()


# -- rejected inputs ----------------------------------------------------------------------------------------

def test_truncated_jpeg(tmp_path, face_image):
    data = _encode(Image.fromarray(np.repeat(np.repeat(face_image, 4, 0), 4, 1)), "JPEG", quality=95)
    p = tmp_path / "cut off.jpg"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidInputError, match="cut off.jpg"):
        load_image(p)


def test_zero_byte_file(tmp_path):
    p = tmp_path / "empty.jpg"
    p.touch()
    with pytest.raises(InvalidInputError, match="empty.jpg"):
        load_image(p)
    with pytest.raises(InvalidInputError, match="empty"):
        load_image(b"")


def test_non_image_file(tmp_path):
    p = tmp_path / "notes.jpg"
    p.write_text("hello, I am not a picture\n" * 10)
    with pytest.raises(InvalidInputError, match="notes.jpg"):
        load_image(p)
    with pytest.raises(InvalidInputError):
        load_image(b"\x00\x01garbage bytes")


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(InvalidInputError, match="nowhere.jpg") as exc:
        load_image(tmp_path / "nowhere.jpg")
    assert "not found" in str(exc.value)
    with pytest.raises(InvalidInputError, match="directory"):
        load_image(tmp_path)


@pytest.mark.parametrize("arr", [
    np.zeros((4, 4), dtype=np.int32),
    np.zeros((4, 4, 3), dtype=bool),
    np.zeros((4, 4, 3), dtype=np.complex64),
    np.zeros((4, 4, 2), dtype=np.uint8),
    np.zeros((4, 4, 5), dtype=np.uint8),
    np.zeros((16,), dtype=np.uint8),
    np.zeros((2, 4, 4, 3), dtype=np.uint8),
    np.zeros((0, 4, 3), dtype=np.uint8),
    np.full((4, 4), np.nan, dtype=np.float32),
], ids=["int32", "bool", "complex", "2ch", "5ch", "1d", "4d", "empty", "nan"])
def test_bad_arrays(arr):
    with pytest.raises(InvalidInputError):
        load_image(arr)


@pytest.mark.parametrize("obj", [None, 42, [1, 2, 3], {"path": "x.jpg"}])
def test_unsupported_types(obj):
    with pytest.raises(InvalidInputError, match=type(obj).__name__):
        load_image(obj)


def test_max_pixels(tmp_path, face_image):
    p = tmp_path / "big.png"
    Image.fromarray(face_image).save(p)
    for src in (p, face_image, p.read_bytes(), Image.fromarray(face_image)):
        with pytest.raises(InvalidInputError, match="megapixels"):
            load_image(src, max_pixels=1000)
    assert load_image(p, max_pixels=64 * 64).shape == (64, 64, 3)
    assert load_image(p, max_pixels=None).shape == (64, 64, 3)


def test_images_pil_refuses_to_open_get_the_pixel_limit_message(tmp_path, monkeypatch):
    p = tmp_path / "bomb.png"
    Image.new("L", (1000, 1000)).save(p)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300_000)  # PIL refuses past 600,000 px, before our check
    with pytest.raises(InvalidInputError, match=r"bomb\.png: 1\.0 megapixels is above the limit of 0\.6 megapixels"):
        load_image(p)
    with pytest.raises(InvalidInputError, match=r"above the limit of 0\.5 megapixels; downscale it"):
        load_image(p, max_pixels=500_000)  # the smaller of ours and PIL's is the one that applied
    with pytest.raises(InvalidInputError, match=r"above the limit of 0\.6 megapixels"):
        load_image(p, max_pixels=None)  # our check off: PIL's still holds


def test_errors_are_value_errors_too(tmp_path):
    with pytest.raises(ValueError):
        load_image(tmp_path / "nope.png")


# -- the canonical crop -------------------------------------------------------------------------------------

def test_crop_with_a_box(face_image):
    out = crop_face(face_image, (8, 4, 56, 60), size=32)
    _check_rgb(out, (32, 32))
    big = crop_face(face_image, (8, 4, 56, 60), size=112)
    _check_rgb(big, (112, 112))


def test_crop_of_a_large_image_is_not_aliased():
    img = np.zeros((2000, 2000, 3), dtype=np.uint8)
    img[::2] = 255  # one-pixel stripes: aliasing would give strong bands instead of flat grey
    out = crop_face(img, (200, 200, 1800, 1800), size=56, geometry=CropGeometry(align=False))
    _check_rgb(out, (56, 56))
    assert 90 < out.mean() < 165 and out.std() < 30


@pytest.mark.parametrize("hw", [(40, 80), (80, 40), (50, 50), (112, 112), (300, 200)])
def test_crop_without_a_box_makes_any_image_square(hw):
    img = np.random.default_rng(0).integers(0, 256, (*hw, 3), dtype=np.uint8)
    out = crop_face(img, None, size=112)
    _check_rgb(out, (112, 112))
    if hw == (112, 112):
        assert np.array_equal(out, img)


def test_crop_without_a_box_keeps_the_face_centred():
    img = np.zeros((40, 80, 3), dtype=np.uint8)
    img[:, 30:50] = 255  # a bright vertical band in the middle
    out = crop_face(img, None, size=80)
    cols = out[:, :, 0].mean(0)
    assert cols[30:50].min() > 200 and cols[:25].max() < 30 and cols[55:].max() < 30


def test_crop_transform_maps_the_box_centre_to_the_crop_centre():
    g = CropGeometry(scale=1.0, shift_y=0.0, align=False)
    m = crop_transform((10, 20, 50, 60), None, 64, g)
    cx, cy = m @ np.array([30.0, 40.0, 1.0])
    assert (cx, cy) == pytest.approx((32.0, 32.0))
    x1, y1 = m @ np.array([10.0, 20.0, 1.0])
    assert (x1, y1) == pytest.approx((0.0, 0.0))  # scale 1: the box fills the crop


def test_alignment_levels_the_eyes_and_keeps_the_shape(face_image):
    left, right = np.array([20.0, 30.0]), np.array([40.0, 18.0])  # tilted eyes
    lm = np.array([left, right, [30.0, 35.0], [25, 45], [35, 45]])
    m = crop_transform((8, 4, 56, 60), lm, 64)
    (lx, ly), (rx, ry) = m @ np.append(left, 1.0), m @ np.append(right, 1.0)
    assert ly == pytest.approx(ry, abs=1e-6) and rx > lx
    # the distance between the eyes is scaled, not changed otherwise
    s = 64 / (max(48, 56) * CropGeometry().scale)
    assert rx - lx == pytest.approx(np.hypot(*(right - left)) * s, rel=1e-6)
    out = crop_face(face_image, (8, 4, 56, 60), lm, size=64)
    _check_rgb(out, (64, 64))
    unaligned = crop_face(face_image, (8, 4, 56, 60), lm, size=64, geometry=CropGeometry(align=False))
    assert not np.array_equal(out, unaligned)
    assert np.array_equal(unaligned, crop_face(face_image, (8, 4, 56, 60), None, size=64))


def test_path_like_objects(tmp_path, face_image):
    class P:  # any os.PathLike
        def __fspath__(self):
            return str(tmp_path / "x y.png")

    Image.fromarray(face_image).save(Path(P().__fspath__()))
    assert np.array_equal(load_image(P()), face_image)
