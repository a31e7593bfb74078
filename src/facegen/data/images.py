"""The one image loader: every photo reaches a model the way an image viewer shows it.

Used by ``prepare`` (training data) and by the ``facegen`` command (your photos), so the two can
never disagree about what a file looks like. What "as a viewer shows it" means, case by case:

* **EXIF orientation** (phone photos) is applied (``ImageOps.exif_transpose``): upright, not sideways.
* **16-bit greyscale** (PNG/TIFF mode ``I;16*`` or ``I``) is scaled 0..65535 -> 0..255. Pillow's own
  ``convert("RGB")`` clips such values at 255, which turns a normal 16-bit photo all white.
* **32-bit float** (mode ``F``) is read as [0, 1] when its maximum is <= 1, else as 0..255.
* **Palette** images are expanded (with their transparency, if any); **alpha** (RGBA, LA, PA) is
  composited on :data:`BACKGROUND` (white, what browsers and viewers show behind a transparent
  photo), never dropped: dropping alpha shows whatever colour the hidden pixels happen to hold.
* **CMYK** JPEGs (including Adobe's inverted ones, which Pillow detects) are converted by Pillow's
  CMYK -> RGB conversion; an embedded ICC profile is not applied.
* **Decompression bombs**: images over :data:`MAX_PIXELS` are refused from the header, before any
  pixel is decoded, in one line naming the limit.

Every failure is an :class:`ImageError` (a :class:`facegen.errors.DataError`) with a one-line message;
:data:`UNREADABLE` is what ``prepare`` catches to skip a corrupt file (max_corrupt_fraction).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from facegen.errors import DataError

#: Largest image decoded, in pixels: Pillow's own decompression-bomb threshold (89.5 MP, e.g.
#: 11000 x 8000), which is larger than any camera photo and far larger than any face needs.
MAX_PIXELS: int = Image.MAX_IMAGE_PIXELS or 89_478_485
#: RGB that transparent pixels are composited on: white, as viewers and browsers show them.
BACKGROUND: tuple[int, int, int] = (255, 255, 255)
# EXIF orientations 5..8 swap width and height (a 90-degree turn): the draft size must swap too.
_TRANSPOSED = {5, 6, 7, 8}
_ORIENTATION = 0x0112


class ImageError(DataError):
    """A file that is not an image we can decode, or one too large to decode safely."""


#: What a decode can raise for an unreadable file: skip it (prepare) or report it (CLI).
UNREADABLE = (ImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def _to_rgb(im: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB as a viewer shows it (see the module doc for each mode)."""
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit data (PNG opens as I;16 or I). Values above 65535 can only come from a genuine
        # 32-bit file; they are clipped rather than rescaling the whole image by its maximum.
        a = np.asarray(im, dtype=np.float64)
        grey = np.clip(np.rint(a / 257.0), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if im.mode == "F":
        a = np.nan_to_num(np.asarray(im, dtype=np.float64))
        scale = 255.0 if a.size and a.max() <= 1.0 else 1.0
        return Image.fromarray(np.clip(np.rint(a * scale), 0, 255).astype(np.uint8), "L").convert("RGB")
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif im.mode == "PA":
        im = im.convert("RGBA")
    elif im.mode == "L" and "transparency" in im.info:
        im = im.convert("LA")
    if im.mode in ("RGBA", "LA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*background, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return im.convert("RGB") if im.mode != "RGB" else im


def _resize_target(w: int, h: int, size: int) -> tuple[int, int]:
    """torchvision's Resize(int): short side -> size, long side -> int(size * long / short)."""
    return (size, int(size * h / w)) if w <= h else (int(size * w / h), size)


def _too_large(path: Path, size: str, max_pixels: int) -> ImageError:
    return ImageError(f"{path} is {size}, over the {max_pixels:,} px ({max_pixels / 1e6:.1f} MP) decompression-bomb "
                      "limit facegen decodes; downscale it (e.g. to 4000 px on the long side) and retry")


def _decode(path: Path, short_side: int | None, background: tuple[int, int, int],
            max_pixels: int | None) -> tuple[Image.Image, tuple[int, int]]:
    """(upright RGB image, its full-resolution upright (width, height)); see :func:`read_image`."""
    max_pixels = MAX_PIXELS if max_pixels is None else max_pixels
    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h > max_pixels:
                raise _too_large(path, f"{w}x{h} ({w * h:,} px)", max_pixels)
            orientation = im.getexif().get(_ORIENTATION, 1)
            turned = orientation in _TRANSPOSED
            upright_size = (h, w) if turned else (w, h)
            if short_side is not None and im.format == "JPEG":
                # libjpeg's DCT-domain downscale (never below the target): most of prepare's speed.
                dw, dh = _resize_target(*upright_size, short_side)
                im.draft("RGB", (dh, dw) if turned else (dw, dh))  # the draft sees stored pixels
            # Only transpose when needed: exif_transpose copies the image even when upright.
            upright = ImageOps.exif_transpose(im) if orientation != 1 else im
            rgb = _to_rgb(upright, background)
            rgb.load()  # decode while the file is open (an RGB JPEG is returned as opened)
            return rgb, upright_size
    except Image.DecompressionBombError:  # Pillow's own check on open (over 2x Image.MAX_IMAGE_PIXELS)
        raise _too_large(path, "larger than Pillow's decompression-bomb limit", max_pixels) from None
    except ImageError:
        raise
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageError(f"{path} is not an image Pillow can read ({type(err).__name__}); "
                         "check the file (re-save or re-download it)") from None


def read_image(path: str | Path, short_side: int | None = None, background: tuple[int, int, int] = BACKGROUND,
               max_pixels: int | None = None) -> Image.Image:
    """Decode ``path`` -> an upright 8-bit RGB ``PIL.Image`` (see the module doc for every conversion).

    ``short_side``: the caller will resize the short side to this, so a JPEG may be decoded at
    1/2..1/8 scale (never below it). Raises :class:`ImageError` (one line: the file, what was
    wrong, what to do) for an unreadable file or one over ``max_pixels`` (default :data:`MAX_PIXELS`).
    """
    return _decode(Path(path), short_side, background, max_pixels)[0]


def read_array(path: str | Path, **kwargs) -> np.ndarray:
    """:func:`read_image` as a uint8 (H, W, 3) array, upright."""
    return np.asarray(read_image(path, **kwargs))


def load_image(path: str | Path, size: int) -> np.ndarray:
    """Decode one image -> uint8 (size, size, 3): resize the short side to ``size``, centre-crop.

    The prepare stage's transform (torchvision's ``Resize(size)`` + ``CenterCrop(size)``, with PIL's
    antialiased bilinear resize), applied to the upright RGB image of :func:`read_image`.
    """
    rgb, (w, h) = _decode(Path(path), size, BACKGROUND, None)
    new_w, new_h = _resize_target(w, h, size)
    rgb = rgb.resize((new_w, new_h), Image.BILINEAR)
    left, top = int(round((new_w - size) / 2.0)), int(round((new_h - size) / 2.0))  # CenterCrop
    return np.asarray(rgb.crop((left, top, left + size, top + size)))
