"""Image loading at the boundary: every accepted input becomes an RGB uint8 (H, W, 3) array.

Arrays are taken as **RGB** by default, in (H, W, 3), (H, W, 4) or (H, W) layout: frames from OpenCV
(``cv2.imread``, ``cv2.VideoCapture``) are **BGR** and need ``channels="bgr"``. uint8, uint16 and float
images in [0, 1] are accepted (other float ranges are refused, not guessed). Files honour EXIF orientation.
Grayscale, palette, RGBA, CMYK and 16-bit images are converted; images above ``max_pixels`` are refused
(decompression bombs).
"""
from __future__ import annotations

import errno
import io
import os
import re
import warnings
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InvalidInputError, unknown_name

__all__ = ["ImageInput", "load_image", "is_url", "fetch_url", "URL_MAX_BYTES", "URL_TIMEOUT_S", "IMAGE_EXTENSIONS",
           "DEFAULT_MAX_PIXELS", "CHANNEL_ORDERS", "check_channels", "to_rgb"]

ImageInput = str | os.PathLike | bytes | bytearray | np.ndarray | Image.Image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm")
DEFAULT_MAX_PIXELS = 80_000_000  # a 100-megapixel photo is refused unless the caller raises the limit
CHANNEL_ORDERS = ("rgb", "bgr")  # of numpy arrays: "rgb" (PIL, imageio, matplotlib) or "bgr" (OpenCV)
# Float images must lie in [0, 1]; values within one grey level outside it (rounding, resampling) are clipped.
_FLOAT_TOLERANCE = 1.0 / 255.0


def check_channels(channels: str) -> str:
    """Validate a channel order for array inputs: "rgb" or "bgr" (any case); returns it in lower case.

    Raises:
        UnknownNameError: any other value, with the valid choices.
    """
    value = channels.lower() if isinstance(channels, str) else channels
    if value not in CHANNEL_ORDERS:
        raise unknown_name("channel order", channels, CHANNEL_ORDERS)
    return value


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode (L, LA, P, RGBA, CMYK, I;16, I, F) to RGB; alpha is composited on white."""
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr = np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    return img.convert("RGB")


def _from_array(arr: np.ndarray, channels: str = "rgb") -> np.ndarray:
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise InvalidInputError(
            f"array of shape {arr.shape} is not an image; expected (H, W), (H, W, 3) RGB or (H, W, 4) RGBA"
        )
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise InvalidInputError(f"array of shape {arr.shape} is empty")
    if arr.dtype == np.uint8:
        out = arr
    elif arr.dtype == np.uint16:
        out = (arr.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise InvalidInputError("float image contains NaN or infinity")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < -_FLOAT_TOLERANCE or hi > 1.0 + _FLOAT_TOLERANCE:
            raise InvalidInputError(
                f"float images must be in [0, 1]; got values {lo:.6g}..{hi:.6g}; "
                + ("divide by 255 or pass uint8" if hi <= 255.0 + _FLOAT_TOLERANCE and lo >= -_FLOAT_TOLERANCE
                   else "rescale to [0, 1] or pass uint8")
            )
        out = (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    else:
        raise InvalidInputError(
            f"array dtype {arr.dtype} is not supported; use uint8, uint16 or float in [0, 1]"
        )
    if out.ndim == 3 and channels == "bgr":  # BGR(A) -> RGB(A); alpha stays last
        out = out[:, :, [2, 1, 0, 3][: out.shape[2]]]
    if out.ndim == 2:
        out = np.repeat(out[:, :, None], 3, axis=2)
    elif out.shape[2] == 4:
        alpha = out[:, :, 3:4].astype(np.float32) / 255.0
        out = (out[:, :, :3].astype(np.float32) * alpha + 255.0 * (1 - alpha) + 0.5).astype(np.uint8)
    return np.ascontiguousarray(out)


URL_MAX_BYTES = 50 * 2**20  # an image URL larger than this is refused (read in chunks, never whole first)
URL_TIMEOUT_S = 15.0         # connect and read timeout of an image URL
_URL = re.compile(r"(?i)^(https?|file)://")


def is_url(source: Any) -> TypeGuard[str]:
    """Whether ``source`` is an ``http(s)://`` or ``file://`` URL string (image inputs accept them)."""
    return isinstance(source, str) and _URL.match(source) is not None


def fetch_url(url: str, max_bytes: int = URL_MAX_BYTES, timeout: float = URL_TIMEOUT_S) -> bytes:
    """The bytes behind an ``http(s)://`` URL, bounded in size and time.

    Raises:
        InvalidInputError: the server does not answer in ``timeout`` seconds, answers with an HTTP error, or
            sends more than ``max_bytes``; the message names the URL and the reason.
    """
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, headers={"User-Agent": "facemtl (+image download)"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # the user's own URL
            length = resp.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > max_bytes:
                raise InvalidInputError(f"cannot download {url}: {int(length) / 2**20:.1f} MB is above the "
                                        f"{max_bytes / 2**20:.0f} MB limit for an image")
            chunks, size = [], 0
            while True:
                chunk = resp.read(1 << 16)
                if not chunk:
                    break
                size += len(chunk)
                if size > max_bytes:
                    raise InvalidInputError(f"cannot download {url}: more than the {max_bytes / 2**20:.0f} MB "
                                            "limit for an image")
                chunks.append(chunk)
    except InvalidInputError:
        raise
    except urllib.error.HTTPError as exc:
        raise InvalidInputError(f"cannot download {url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise InvalidInputError(f"cannot download {url}: {reason} (timeout {timeout:g} s)") from None
    data = b"".join(chunks)
    if not data:
        raise InvalidInputError(f"cannot download {url}: the server sent no data")
    return data


def link_problem(path: str | Path) -> str | None:
    """Why ``path`` is a symbolic link that leads to no file ("dangling symbolic link -> target", "symbolic link
    loop -> target"), or None: the file-expansion helpers keep such links so they become error rows, not silence."""
    try:
        if not os.path.islink(path):
            return None
        target = os.readlink(path)
    except OSError:
        return None
    try:
        os.stat(path)
    except FileNotFoundError:
        return f"dangling symbolic link -> {target}"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return f"symbolic link loop -> {target}"
        return f"symbolic link -> {target}: {exc.strerror or exc}"
    return None


def load_image(source: ImageInput, max_pixels: int | None = DEFAULT_MAX_PIXELS, channels: str = "rgb"
               ) -> np.ndarray:
    """Load any accepted input as an RGB uint8 array of shape (H, W, 3).

    **Numpy arrays are taken as RGB** unless ``channels="bgr"``: pass that for OpenCV images
    (``cv2.imread``, ``cv2.VideoCapture`` frames), whose channels are in BGR(A) order.

    Args:
        source: a path (str or Path), an ``http(s)://`` or ``file://`` URL (downloaded, at most
            :data:`URL_MAX_BYTES` in :data:`URL_TIMEOUT_S` seconds), encoded bytes, a PIL image, or a numpy
            array: (H, W, 3) colour, (H, W, 4) with alpha, or (H, W) grayscale; uint8, uint16, or float in [0, 1].
        max_pixels: refuse larger images (None disables the check).
        channels: channel order of an array source, "rgb" (default) or "bgr". Files, bytes and PIL images
            carry their own colour mode, so only "rgb" (the default) is accepted with them.

    Raises:
        InvalidInputError: missing, empty, truncated or unsupported file; bad array (shape, dtype, a float
            range other than [0, 1]); too many pixels; ``channels="bgr"`` with a source that is not an array.
        UnknownNameError: a ``channels`` value other than "rgb" or "bgr".
    """
    channels = check_channels(channels)
    if isinstance(source, np.ndarray):
        arr = _from_array(source, channels)
        _check_pixels(arr.shape[1], arr.shape[0], max_pixels, "array")
        return arr
    if channels != "rgb":
        raise InvalidInputError(
            f"channels={channels!r} applies to numpy arrays only, got a {type(source).__name__}: files, bytes "
            "and PIL images are decoded from their own colour mode; leave channels at 'rgb' for them"
        )
    if isinstance(source, Image.Image):
        _check_pixels(source.width, source.height, max_pixels, "PIL image")
        return np.asarray(to_rgb(ImageOps.exif_transpose(source)))
    name: str
    if is_url(source):
        if source.lower().startswith("file://"):
            from urllib.parse import unquote, urlparse

            source = unquote(urlparse(source).path)
        else:
            return _decode(io.BytesIO(fetch_url(source)), source, max_pixels)
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise InvalidInputError("empty bytes: no image data")
        fp: io.BytesIO | str = io.BytesIO(bytes(source))
        name = "<bytes>"
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        name = str(source)
        if not path.exists():
            raise InvalidInputError(f"image file not found: {name}")
        if path.is_dir():
            raise InvalidInputError(f"expected an image file, got a directory: {name}")
        if path.stat().st_size == 0:
            raise InvalidInputError(f"image file is empty (0 bytes): {name}")
        fp = str(path)
    else:
        raise InvalidInputError(
            f"cannot load an image from {type(source).__name__}; "
            "pass a path, bytes, a PIL.Image or an (H, W, 3) RGB numpy array"
        )
    return _decode(fp, name, max_pixels)


def _decode(fp: io.BytesIO | str, name: str, max_pixels: int | None) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            # Our own max_pixels check below replaces PIL's warning; PIL still raises past 2x its limit.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(fp) as img:
                _check_pixels(img.width, img.height, max_pixels, name)
                img.load()
                upright = ImageOps.exif_transpose(img)
                return np.asarray(to_rgb(upright))
    except InvalidInputError:
        raise
    except Image.DecompressionBombError as exc:
        raise InvalidInputError(f"{name}: {too_many_pixels_message(exc, max_pixels)}") from None
    except UnidentifiedImageError as exc:
        raise InvalidInputError(f"not a readable image ({exc.__class__.__name__}): {name}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidInputError(f"cannot decode image {name}: {exc}") from None


def too_many_pixels_message(exc: Exception, max_pixels: int | None) -> str:
    """What to say when PIL refuses to open an image (``Image.DecompressionBombError``).

    PIL raises past twice ``Image.MAX_IMAGE_PIXELS`` while reading the header, before our own ``max_pixels``
    check can see the size; its message holds the pixel count, which is repeated here with the limit that applied.
    """
    pil_max = Image.MAX_IMAGE_PIXELS
    # PIL raises DecompressionBombError only while its limit is set (``MAX_IMAGE_PIXELS`` is not None).
    assert pil_max is not None
    pil_limit = 2 * pil_max
    limit = pil_limit if max_pixels is None else min(max_pixels, pil_limit)
    m = re.search(r"\((\d+) pixels\)", str(exc))
    size = f"{int(m.group(1)) / 1e6:.1f} megapixels" if m else "the image"
    return f"{size} is above the limit of {limit / 1e6:.1f} megapixels; downscale it"


def _check_pixels(w: int, h: int, max_pixels: int | None, name: str) -> None:
    if max_pixels is not None and w * h > max_pixels:
        raise InvalidInputError(
            f"{name} has {w}x{h} = {w * h / 1e6:.1f} megapixels, above the limit of "
            f"{max_pixels / 1e6:.1f}; downscale it or raise max_pixels (--max-pixels)"
        )
