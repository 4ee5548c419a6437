"""Turning whatever a person uploads into a clean, upright RGB picture, and framing it.

Each failure is one plain sentence (``BadImage``); nothing here lets a hostile file take
the server down: the pixel count is checked from the header before any decoding.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from studio.errors import BadImage

MAX_PIXELS = 40_000_000  # about 8000x5000; larger uploads are refused before decoding
MIN_SIDE = 16
BACKGROUND = (255, 255, 255)  # transparent pixels become white, predictably


def load_image(source: str | Path | Image.Image) -> Image.Image:
    """Open an upload: first frame of animations, EXIF rotation applied, flattened to RGB."""
    if isinstance(source, Image.Image):
        image = source
    else:
        path = Path(source)
        if not path.is_file() or path.stat().st_size == 0:
            raise BadImage("The uploaded file is empty. Please choose a photo (PNG, JPEG or WebP).")
        try:
            with warnings.catch_warnings():
                # Our own pixel limit (below PIL's) is checked from the header right after open.
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image = Image.open(path)
                _check_size(image)
                image.seek(0)  # animated GIF/WebP/APNG: use the first frame
                image.load()
        except BadImage:
            raise
        except Image.DecompressionBombError as exc:
            found = re.search(r"\((\d+) pixels\)", str(exc))
            size = f" ({int(found.group(1)) // 1_000_000} megapixels)" if found else ""
            raise BadImage(
                f"The image{size} is too large to process safely (limit {MAX_PIXELS // 1_000_000} "
                "megapixels). Please use a smaller image."
            ) from exc
        except UnidentifiedImageError as exc:
            raise BadImage(
                "The uploaded file is not an image this studio can read. Please use PNG, JPEG or WebP."
            ) from exc
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise BadImage(
                "The image file is damaged or incomplete (it could not be fully read). Please upload it again."
            ) from exc
    _check_size(image)
    try:
        image = ImageOps.exif_transpose(image) or image
    except Exception:  # a broken EXIF block should not cost the person their photo
        pass
    return _to_rgb(image)


def _check_size(image: Image.Image) -> None:
    w, h = image.size
    if w * h > MAX_PIXELS:
        raise BadImage(
            f"The image is {w}x{h} pixels, which is too large to process safely "
            f"(limit {MAX_PIXELS // 1_000_000} megapixels). Please use a smaller image."
        )
    if min(w, h) < MIN_SIDE:
        raise BadImage(f"The image is only {w}x{h} pixels; each side needs at least {MIN_SIDE} pixels.")


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode.startswith("I") or image.mode == "F":
        image = _to_8bit(image)
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode in ("RGB", "L") and "transparency" in image.info):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, BACKGROUND)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return image.convert("RGB")


def _to_8bit(image: Image.Image) -> Image.Image:
    """16-bit, 32-bit and float greyscale to 8 bits by scaling, not by clipping at 255."""
    import numpy as np

    data = np.asarray(image, dtype=np.float64)
    top = 65535.0 if image.mode.startswith("I;16") else max(float(data.max()), 255.0)
    if image.mode == "F":
        top = max(float(data.max()), 1.0)
    return Image.fromarray(np.clip(data / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")


def fit_size(size: tuple[int, int], box: tuple[int, int], multiple: int = 64) -> tuple[int, int]:
    """The largest size with the photo's aspect ratio inside ``box``, in multiples of ``multiple``."""
    w, h = size
    bw, bh = box
    scale = min(bw / w, bh / h)
    fw = max(multiple, int(w * scale) // multiple * multiple)
    fh = max(multiple, int(h * scale) // multiple * multiple)
    return fw, fh


def frame(image: Image.Image, size: tuple[int, int], mode: str) -> Image.Image:
    """Resize to exactly ``size``: 'crop' fills it and trims the centre; 'fit' stretches the
    (already aspect-matched) photo by at most one rounding step."""
    if mode == "crop":
        return ImageOps.fit(image, size, Image.Resampling.LANCZOS, centering=(0.5, 0.5))
    return image.resize(size, Image.Resampling.LANCZOS)
