"""Sample grids as PNG files (Pillow), with the training step in their metadata."""
import math
import os

import numpy as np
from PIL import Image, PngImagePlugin

__all__ = ["to_uint8", "make_grid", "save_grid"]


def to_uint8(images):
    """NCHW floats in [-1, 1] -> NHWC uint8 in [0, 255]."""
    images = np.clip((np.asarray(images, dtype=np.float64) + 1.0) * 127.5, 0, 255)
    return np.round(images).astype(np.uint8).transpose(0, 2, 3, 1)


def make_grid(images, rows=None, padding=2, fill=255):
    """Tile NCHW images in [-1, 1] into one (H, W, C) uint8 picture, `rows` rows."""
    tiles = to_uint8(images)
    n, h, w, c = tiles.shape
    rows = rows or int(math.ceil(math.sqrt(n)))
    cols = int(math.ceil(n / rows))
    grid = np.full((rows * (h + padding) + padding, cols * (w + padding) + padding, c), fill,
                   dtype=np.uint8)
    for index in range(n):  # one copy per tile (at most a few hundred), not per pixel
        r, col = divmod(index, cols)
        top, left = padding + r * (h + padding), padding + col * (w + padding)
        grid[top:top + h, left:left + w] = tiles[index]
    return grid


def save_grid(images, path, rows=None, scale=2, metadata=None):
    """Write a grid PNG atomically; `metadata` ({str: str}) goes into PNG text chunks."""
    grid = make_grid(images, rows=rows)
    picture = Image.fromarray(grid[:, :, 0] if grid.shape[2] == 1 else grid)
    if scale != 1:
        picture = picture.resize((picture.width * scale, picture.height * scale),
                                 Image.NEAREST)
    info = PngImagePlugin.PngInfo()
    for key, value in (metadata or {}).items():
        info.add_text(key, str(value))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    temp = f"{path}.{os.getpid()}.tmp"
    try:
        picture.save(temp, format="PNG", pnginfo=info)
        os.replace(temp, path)
    except BaseException:  # a full disk or a kill signal: no half-written file stays
        if os.path.exists(temp):
            os.remove(temp)
        raise
    return path
