"""Sample grids as pictures (Pillow): tiles, a title above them, a label left of each row.

    save_grid(images, "run/samples/step_00000500.png", rows=10,
              title="train_cgan  step 500  epoch 1", row_labels=[str(d) for d in range(10)])

The format follows the extension (.png, or .jpg/.jpeg for JPEG); `metadata` goes into PNG
text chunks (a JPEG gets it as its comment). Files are written through needle.fileio's
atomic writer, so a full disk or a kill never leaves a half-written picture.

save_grid is grid_picture (the Pillow image) then save_picture (the atomic write);
side_by_side puts several such pictures in one row under one title (gan.samples.Panels).
"""
import math
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

from needle.fileio import atomic_writer

__all__ = ["to_uint8", "grid_shape", "make_grid", "save_grid", "grid_picture", "side_by_side",
           "save_picture", "image_format", "FORMATS"]

#: File extension -> Pillow format name.
FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}
_INK, _PAPER = 0, 255  # text and background (the tiles' padding is _PAPER too)


def to_uint8(images):
    """NCHW floats in [-1, 1] -> NHWC uint8 in [0, 255]."""
    images = np.clip((np.asarray(images, dtype=np.float64) + 1.0) * 127.5, 0, 255)
    return np.round(images).astype(np.uint8).transpose(0, 2, 3, 1)


def grid_shape(count, rows=None):
    """(rows, cols) of a grid of `count` tiles: `rows` rows, or a near-square grid."""
    rows = rows or int(math.ceil(math.sqrt(count)))
    return rows, int(math.ceil(count / rows))


def make_grid(images, rows=None, padding=2, fill=_PAPER):
    """Tile NCHW images in [-1, 1] into one (H, W, C) uint8 picture, `rows` rows."""
    tiles = to_uint8(images)
    n, h, w, c = tiles.shape
    rows, cols = grid_shape(n, rows)
    grid = np.full((rows * (h + padding) + padding, cols * (w + padding) + padding, c), fill,
                   dtype=np.uint8)
    for index in range(n):  # one copy per tile (at most a few hundred), not per pixel
        r, col = divmod(index, cols)
        top, left = padding + r * (h + padding), padding + col * (w + padding)
        grid[top:top + h, left:left + w] = tiles[index]
    return grid


def image_format(path):
    """The Pillow format for `path`'s extension; ValueError naming the file otherwise."""
    extension = os.path.splitext(str(path))[1].lower()
    if extension not in FORMATS:
        raise ValueError(f"cannot tell the image format of {str(path)!r} from its extension "
                         f"{extension or '(none)'!r}; use one of {', '.join(FORMATS)}")
    return FORMATS[extension]


def _annotate(picture, scale, title, rows, cols):
    """`picture` on a larger canvas: `title` above it, then the column labels, and the row
    labels at its left. rows / cols: [(label, centre)], the centre being the y (x) of the
    row's (column's) middle in `picture`."""
    font = ImageFont.load_default(size=7 * scale)  # Pillow's own font: no font files needed
    title_font = ImageFont.load_default(size=8 * scale)
    measure = ImageDraw.Draw(picture).textbbox
    gap = 3 * scale
    row_boxes = [measure((0, 0), label, font=font) for label, _ in rows]
    col_boxes = [measure((0, 0), label, font=font) for label, _ in cols]
    title_box = measure((0, 0), title, font=title_font) if title else (0, 0, 0, 0)
    left = max(box[2] for box in row_boxes) + 2 * gap if rows else 0
    title_height = title_box[3] + 2 * gap if title else 0
    top = title_height + (max(box[3] for box in col_boxes) + gap if cols else 0)
    width = max(left + picture.width, title_box[2] + 2 * gap)
    ink = (_INK,) * len(picture.getbands())
    canvas = Image.new(picture.mode, (width, top + picture.height),
                       (_PAPER,) * len(picture.getbands()))
    canvas.paste(picture, (left, top))
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((gap, gap), title, fill=ink, font=title_font)
    for (label, centre), box in zip(rows, row_boxes):  # right-aligned against the grid
        draw.text((left - gap - box[2], top + centre - (box[1] + box[3]) / 2), label,
                  fill=ink, font=font)
    for (label, centre), box in zip(cols, col_boxes):  # centred over its column
        draw.text((left + centre - box[2] / 2, title_height), label, fill=ink, font=font)
    return canvas


def save_grid(images, path, rows=None, scale=2, metadata=None, title=None, row_labels=None,
              col_labels=None):
    """Write NCHW images in [-1, 1] as a grid picture at `path` (format from the extension),
    atomically; returns `path`.

    rows: rows of tiles (default near-square); scale: pixel magnification (nearest);
    metadata: {str: value} stored as PNG text (a JPEG's comment); title: a line drawn above
    the grid; row_labels: one string per row, drawn at its left; col_labels: one string per
    column ("" for none), drawn above it.
    """
    image_format(path)  # an unknown extension is an error before any drawing
    picture = grid_picture(images, rows, scale, title, row_labels, col_labels,
                           where=f" of {path}")
    return save_picture(picture, path, metadata=metadata, title=title)


def grid_picture(images, rows=None, scale=2, title=None, row_labels=None, col_labels=None,
                 where=""):
    """The Pillow image save_grid writes (same arguments); `where` ends a label-count error."""
    count = len(images)
    rows, cols = grid_shape(count, rows)
    for name, labels, expected in (("row", row_labels, rows), ("column", col_labels, cols)):
        if labels is not None and len(labels) != expected:
            raise ValueError(f"save_grid: {len(labels)} {name} labels for {expected} "
                             f"{name}s{where}")
    grid = make_grid(images, rows=rows)
    picture = Image.fromarray(grid[:, :, 0] if grid.shape[2] == 1 else grid)
    if scale != 1:
        picture = picture.resize((picture.width * scale, picture.height * scale),
                                 Image.NEAREST)
    if title or row_labels or col_labels:
        height, width, padding = np.shape(images)[2], np.shape(images)[3], 2  # make_grid's
        picture = _annotate(
            picture, scale, title,
            [(str(label), scale * (padding + r * (height + padding) + height / 2))
             for r, label in enumerate(row_labels or ())],
            [(str(label), scale * (padding + c * (width + padding) + width / 2))
             for c, label in enumerate(col_labels or ())])
    return picture


def side_by_side(pictures, title=None, scale=2):
    """Pillow images in one row, top-aligned, on paper, `title` drawn above them all."""
    mode = "L" if all(p.mode == "L" for p in pictures) else "RGB"
    pictures = [p.convert(mode) for p in pictures]
    gap = 6 * scale
    width = sum(p.width for p in pictures) + gap * (len(pictures) - 1)
    canvas = Image.new(mode, (width, max(p.height for p in pictures)),
                       _PAPER if mode == "L" else (_PAPER,) * 3)
    left = 0
    for picture in pictures:
        canvas.paste(picture, (left, 0))
        left += picture.width + gap
    return _annotate(canvas, scale, title, [], []) if title else canvas


def save_picture(picture, path, metadata=None, title=None):
    """Write a Pillow image at `path` (format from the extension) through the atomic writer,
    `metadata` (and `title`) as PNG text or a JPEG's comment; returns `path`."""
    fmt = image_format(path)
    text = {str(key): str(value) for key, value in (metadata or {}).items()}
    if title:
        text.setdefault("title", title)
    options = {}
    if fmt == "PNG":
        info = PngImagePlugin.PngInfo()
        for key, value in text.items():
            info.add_text(key, value)
        options["pnginfo"] = info
    else:
        options["quality"] = 95
        if text:
            options["comment"] = "; ".join(f"{k}={v}" for k, v in text.items())
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_writer(path) as f:
        picture.save(f, format=fmt, **options)
    return path
