"""What every picture test asks of a PNG: valid, decodable, of sensible size, not blank."""

from __future__ import annotations

import io

import numpy as np

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def decode_png(data: bytes) -> np.ndarray:
    """Decode PNG bytes with matplotlib (an independent check of the file we wrote)."""
    from matplotlib.image import imread

    assert data[:8] == PNG_MAGIC, f"not a PNG: starts with {data[:8]!r}"
    return imread(io.BytesIO(data), format="png")


def assert_picture(
    data: bytes, *, min_size: tuple[int, int] = (400, 300), max_size: tuple[int, int] = (2400, 2400)
) -> np.ndarray:
    """A valid PNG whose (width, height) lies in the bounds and which shows something."""
    pixels = decode_png(data)
    height, width = pixels.shape[:2]
    assert min_size[0] <= width <= max_size[0] and min_size[1] <= height <= max_size[1], (width, height)
    rgb = pixels[..., :3]
    assert rgb.std() > 0.05, f"picture looks blank (pixel std {rgb.std():.4f})"
    assert (rgb.max(axis=2) - rgb.min(axis=2)).max() > 0.2, "picture has no colour at all"
    return pixels
