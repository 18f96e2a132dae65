"""gan.images: grid layout, the title and row labels, formats from the extension, atomic writes."""
import errno
import os
import pathlib

import numpy as np
import pytest
from PIL import Image

from gan.images import grid_shape, image_format, make_grid, save_grid


def ramp(count, channels=1, size=8):
    """NCHW images in [-1, 1], tile i a constant -1 + 2 i / count (so each tile is known)."""
    values = -1 + 2 * np.arange(count) / count
    return np.broadcast_to(values[:, None, None, None], (count, channels, size, size)).copy()


def expected_grid(images, rows, padding=2):
    """The grid built by hand: white paper, tile (r, c) at padding + r (size + padding)."""
    n, c, h, w = images.shape
    cols = -(-n // rows)
    grid = np.full((rows * (h + padding) + padding, cols * (w + padding) + padding, c), 255,
                   np.uint8)
    pixels = np.round(np.clip((images + 1) * 127.5, 0, 255)).astype(np.uint8)
    for i in range(n):
        r, col = divmod(i, cols)
        y, x = padding + r * (h + padding), padding + col * (w + padding)
        grid[y:y + h, x:x + w] = pixels[i].transpose(1, 2, 0)
    return grid


def read(path):
    with Image.open(path) as picture:
        return np.asarray(picture.convert("L")), picture.format, dict(picture.info)


@pytest.mark.parametrize("count, rows", [(10, None), (10, 2), (7, 3), (1, None)])
def test_make_grid_places_each_tile(count, rows):
    images = ramp(count)
    expected_rows = rows or int(np.ceil(np.sqrt(count)))
    assert grid_shape(count, rows) == (expected_rows, -(-count // expected_rows))
    np.testing.assert_array_equal(make_grid(images, rows=rows),
                                  expected_grid(images, expected_rows))


def test_untitled_grid_is_the_scaled_grid(tmp_path):
    images = ramp(6)
    path = save_grid(images, str(tmp_path / "g.png"), rows=2, scale=3,
                     metadata={"step": 40, "epoch": 1})
    pixels, fmt, info = read(path)
    scaled = expected_grid(images, 2)[:, :, 0].repeat(3, axis=0).repeat(3, axis=1)
    np.testing.assert_array_equal(pixels, scaled)
    assert fmt == "PNG" and info["step"] == "40" and info["epoch"] == "1"


def test_title_goes_above_and_labels_left_of_their_rows(tmp_path):
    images = ramp(6, size=12)
    scale = 2
    plain = save_grid(images, str(tmp_path / "plain.png"), rows=3, scale=scale)
    labelled = save_grid(images, str(tmp_path / "labelled.png"), rows=3, scale=scale,
                         title="train_cgan  step 500  epoch 1", row_labels=["0", "1", "2"])
    grid, _, _ = read(plain)
    picture, _, info = read(labelled)
    assert info["title"] == "train_cgan  step 500  epoch 1"
    # the grid sits unchanged at the bottom, under the title band and right of the labels
    top = picture.shape[0] - grid.shape[0]
    left = next(x for x in range(picture.shape[1] - grid.shape[1] + 1)
                if np.array_equal(picture[top:, x:x + grid.shape[1]], grid))
    assert top > 0 and left > 0
    assert (picture[:top] < 128).any(), "no title drawn"
    # each row's label is drawn within that row's height, in the label column
    tile, padding = 12 * scale, 2 * scale
    for row in range(3):
        y0 = top + padding + row * (tile + padding)
        band = picture[y0:y0 + tile, :left]
        assert (band < 128).any(), f"no label at row {row}"
    gaps = [top + row * (tile + padding) for row in range(4)]  # the padding between rows
    for y in gaps:
        assert (picture[y:y + padding, :left] > 200).all()


def test_column_labels_go_over_their_columns(tmp_path):
    images = ramp(8, size=12)
    grid, _, _ = read(save_grid(images, str(tmp_path / "plain.png"), rows=2))
    picture, _, _ = read(save_grid(images, str(tmp_path / "g.png"), rows=2,
                                   col_labels=["", "", "", "mean"]))
    top = picture.shape[0] - grid.shape[0]
    assert picture.shape[1] == grid.shape[1] and top > 0
    np.testing.assert_array_equal(picture[top:], grid)
    column = (12 + 2) * 2
    inked = [(picture[:top, 4 + c * column:4 + c * column + 24] < 128).any() for c in range(4)]
    assert inked == [False, False, False, True]
    with pytest.raises(ValueError, match=r"save_grid: 3 column labels for 4 columns"):
        save_grid(images, str(tmp_path / "g.png"), rows=2, col_labels=["a", "b", "c"])


def test_a_long_title_widens_the_picture_on_white(tmp_path):
    images = ramp(2, channels=3, size=4)
    path = save_grid(images, str(tmp_path / "g.png"), rows=1, scale=1,
                     title="a title much wider than two tiny tiles")
    with Image.open(path) as picture:
        rgb = np.asarray(picture)
    assert rgb.shape[1] > 2 * (4 + 2) + 2 and rgb.shape[2] == 3
    np.testing.assert_array_equal(rgb[0, 0], [255, 255, 255])  # paper, in every channel
    np.testing.assert_array_equal(rgb[-1, -1], [255, 255, 255])


def test_row_labels_must_match_the_rows(tmp_path):
    with pytest.raises(ValueError, match=r"save_grid: 2 row labels for 3 rows"):
        save_grid(ramp(6), str(tmp_path / "g.png"), rows=3, row_labels=["a", "b"])
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize("name, fmt", [("g.jpg", "JPEG"), ("g.JPEG", "JPEG"), ("g.png", "PNG")])
def test_the_format_follows_the_extension(tmp_path, name, fmt):
    images = ramp(4)
    path = save_grid(images, str(tmp_path / name), metadata={"step": 7}, title="t")
    pixels, found, info = read(path)
    assert found == fmt == image_format(path)
    if fmt == "JPEG":
        assert info["comment"] == b"step=7; title=t"
        plain = save_grid(images, str(tmp_path / "plain.jpg"), rows=2, scale=2)
        # lossy, but close: the flat tiles differ from the exact grid by a few levels
        exact = expected_grid(images, 2)[:, :, 0].repeat(2, axis=0).repeat(2, axis=1)
        assert np.abs(read(plain)[0].astype(int) - exact).mean() < 3


def test_an_unknown_extension_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"'.*g\.gif'.*'\.gif'.*\.png, \.jpg, \.jpeg"):
        save_grid(ramp(4), str(tmp_path / "g.gif"))
    with pytest.raises(ValueError, match=r"'\(none\)'"):
        image_format("grid")
    assert not os.listdir(tmp_path)


def test_an_interrupted_save_keeps_the_old_picture_and_no_temporary(tmp_path, monkeypatch):
    path = save_grid(ramp(4), str(tmp_path / "g.png"))
    before = pathlib.Path(path).read_bytes()
    real = Image.Image.save

    def interrupted(self, fp, *args, **kwargs):
        real(self, fp, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_grid(ramp(9), path)

    def disk_full(self, fp, *args, **kwargs):
        fp.write(b"\x89PNG half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", disk_full)
    with pytest.raises(OSError, match=r"cannot write .*g\.png: No space left on device"):
        save_grid(ramp(9), path)
    assert pathlib.Path(path).read_bytes() == before
    assert os.listdir(tmp_path) == ["g.png"]
