"""needle.data.ImageFolder: aspect-kept resize and centre crop, random crop and flip against
a per-image reference, channels that follow the images, held-out images, and one-line
DataFileErrors naming the folder or file."""
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

import needle as ndl
from needle.data import DataFileError, DataLoader, ImageFolder
from needle.data.image_folder import load_size_for, match_channels, random_crop_flip


def save(path, array, mode=None):
    Image.fromarray(np.asarray(array, dtype=np.uint8), mode=mode).save(path)
    return path


def checkerboard(width, height, cell):
    rows, cols = np.indices((height, width)) // cell
    return np.where((rows + cols) % 2 == 0, 0, 255).astype(np.uint8)


def png_bytes(array):
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


# ---- resize and crop ----------------------------------------------------------------------
def test_test_mode_keeps_the_aspect_ratio_and_crops_the_centre(tmp_path):
    # 80 x 40 with 10-pixel cells -> shorter side 20: 5-pixel cells, 40 wide; the centre
    # 20 columns start at column 10, two cells in. Squashing to a square would give cells
    # 2.5 pixels wide.
    save(tmp_path / "board.png", checkerboard(80, 40, 10))
    image = ImageFolder(str(tmp_path), 20, train=False)[0]
    assert image.shape == (1, 20, 20) and image.dtype == np.float32
    centres = image[0, 2::5, 2::5]  # the middle pixel of each 5 x 5 cell
    rows, cols = np.indices((4, 4))
    expected = np.where((rows + cols + 2) % 2 == 0, -1.0, 1.0)
    np.testing.assert_allclose(centres, expected, atol=0.05)


def test_portrait_images_are_cropped_vertically(tmp_path):
    tall = np.zeros((60, 20), np.uint8)
    tall[:20], tall[40:] = 255, 255  # white top and bottom thirds, black middle
    save(tmp_path / "tall.png", tall)
    image = ImageFolder(str(tmp_path), 10, train=False)[0][0]
    np.testing.assert_allclose(image[2:8], -1.0, atol=0.05)  # only the middle third is kept


def test_load_size_scales_pytorch_cyclegans_286_for_256():
    assert load_size_for(256) == 286 and load_size_for(28) == 31 and load_size_for(64) == 72


def test_training_batches_are_random_crops_and_flips(tmp_path):
    rng = np.random.RandomState(0)
    for i in range(6):
        save(tmp_path / f"{i}.png", rng.randint(0, 256, (30, 40, 3)))
    train = ImageFolder(str(tmp_path), 8, load_size=12)
    assert len(train) == 6 and train.channels == 3
    stored = train._images  # (6, 3, 12, 12): shorter side 12, centre square
    assert stored.shape == (6, 3, 12, 12)
    index = np.array([5, 0, 3, 3])
    np.random.seed(7)
    batch = train[index]
    # Reference: the same draws, then one slice per image.
    draws = np.random.RandomState(7)
    dy, dx = draws.randint(0, 5, 4), draws.randint(0, 5, 4)
    flips = draws.rand(4) < 0.5
    for k, i in enumerate(index):
        crop = stored[i, :, dy[k]:dy[k] + 8, dx[k]:dx[k] + 8]
        crop = crop[:, :, ::-1] if flips[k] else crop
        np.testing.assert_array_equal(batch[k], crop.astype(np.float32) / 127.5 - 1)
    assert batch.dtype == np.float32 and batch.min() >= -1 and batch.max() <= 1
    np.random.seed(7)
    np.testing.assert_array_equal(train[index], batch)  # seeded: the same batch again


def test_random_crop_flip_flips_about_half():
    images = np.arange(2000 * 4 * 4).reshape(2000, 1, 4, 4)
    out = random_crop_flip(images, 4, np.random.RandomState(1))
    flipped = (out == images[:, :, :, ::-1]).all(axis=(1, 2, 3))
    assert (flipped | (out == images).all(axis=(1, 2, 3))).all()  # size 4 of 4: no shift
    assert 0.45 < flipped.mean() < 0.55


def test_the_data_loader_fetches_whole_batches(tmp_path):
    for i in range(5):
        save(tmp_path / f"{i}.png", np.full((16, 16), 40 * i))
    batches = list(DataLoader(ImageFolder(str(tmp_path), 8), batch_size=2, shuffle=True))
    assert [b[0].shape for b in batches] == [(2, 1, 8, 8), (2, 1, 8, 8), (1, 1, 8, 8)]
    assert isinstance(batches[0][0], ndl.Tensor) and batches[0][0].dtype == "float32"


# ---- channels -------------------------------------------------------------------------------
def test_channels_follow_the_images(tmp_path):
    gray = tmp_path / "gray"
    gray.mkdir()
    save(gray / "a.png", np.full((8, 8), 10))
    save(gray / "b.png", np.stack([np.full((8, 8), 200)] * 3, axis=2))  # RGB, equal bands
    folder = ImageFolder(str(gray), 8, train=False)
    assert folder.channels == 1
    np.testing.assert_allclose(folder[np.arange(2)][:, 0, 0, 0], [10 / 127.5 - 1,
                                                                 200 / 127.5 - 1])
    save(gray / "c.png", np.stack([np.full((8, 8), v) for v in (255, 0, 0)], axis=2))
    colour = ImageFolder(str(gray), 8, train=False)
    assert colour.channels == 3 and colour[0].shape == (3, 8, 8)
    np.testing.assert_allclose(colour[0], 10 / 127.5 - 1)  # the grayscale file, 3 bands
    forced = ImageFolder(str(gray), 8, train=False, channels=1)
    with Image.open(gray / "c.png") as red:
        luma = np.asarray(red.convert("L"))[0, 0]
    assert abs((forced[2][0, 0, 0] + 1) * 127.5 - luma) <= 1
    with pytest.raises(ValueError, match="channels must be 1, 3 or None"):
        ImageFolder(str(gray), 8, channels=2)


def test_two_domains_get_one_layout(tmp_path):
    for name, image in (("gray", np.full((8, 8), 30)), ("colour", np.full((8, 8, 3), 90))):
        (tmp_path / name).mkdir()
        save(tmp_path / name / "a.png", image)
        save(tmp_path / name / "b.png", image)
    colour = np.array(np.full((8, 8, 3), 90))
    colour[..., 2] = 10
    save(tmp_path / "colour" / "b.png", colour)
    gray = ImageFolder(str(tmp_path / "gray"), 8, hold_out=1)
    rgb = ImageFolder(str(tmp_path / "colour"), 8, hold_out=1)
    assert (gray.channels, rgb.channels) == (1, 3)
    assert match_channels(gray, rgb) == 3 and gray.channels == 3
    assert gray[np.arange(1)].shape == (1, 3, 8, 8) and gray.held_out.shape == (1, 3, 8, 8)
    np.testing.assert_allclose(gray.held_out, 30 / 127.5 - 1)


# ---- held out images ------------------------------------------------------------------------
def test_held_out_images_are_spread_and_never_trained_on(tmp_path):
    for i in range(10):
        save(tmp_path / f"img_{i}.png", np.full((12, 12), 20 * i))
    folder = ImageFolder(str(tmp_path), 8, hold_out=3)
    assert folder.held_out_names == ["img_0.png", "img_4.png", "img_9.png"]
    assert not set(folder.held_out_names) & set(folder.names) and len(folder) == 7
    assert folder.held_out.shape == (3, 1, 8, 8)
    np.testing.assert_allclose(folder.held_out[:, 0, 0, 0], np.array([0, 80, 180]) / 127.5 - 1)
    assert len(ImageFolder(str(tmp_path), 8, hold_out=3, limit=4)) == 4
    with pytest.raises(DataFileError, match=r"has 10 images; holding out 10 for the samples "
                                            r"leaves none to train on"):
        ImageFolder(str(tmp_path), 8, hold_out=10)


# ---- bad folders and files ------------------------------------------------------------------
def huge_png_header():
    """A PNG whose IHDR claims 100000 x 100000 pixels (CRC fixed, so only the size is odd)."""
    raw = bytearray(png_bytes(np.zeros((4, 4))))
    raw[16:24] = struct.pack(">II", 100000, 100000)
    raw[29:33] = struct.pack(">I", zlib.crc32(bytes(raw[12:29])))
    return bytes(raw)


@pytest.mark.parametrize("name, content, pattern", [
    ("b_text.png", b"this is not a PNG", r"cannot read image '.*b_text\.png' \(17 bytes\)"),
    ("b_empty.png", b"", r"cannot read image '.*b_empty\.png' \(0 bytes\)"),
    ("b_cut.png", png_bytes(np.arange(64 * 64).reshape(64, 64) % 251)[:60],
     r"cannot read image '.*b_cut\.png' \(60 bytes\)"),
    ("b_huge.png", huge_png_header(),
     r"cannot read image '.*b_huge\.png'.*(100000 x 100000|DecompressionBomb)"),
])
def test_a_bad_image_is_one_line_naming_the_file(tmp_path, name, content, pattern):
    save(tmp_path / "a_good.png", np.zeros((8, 8)))
    (tmp_path / name).write_bytes(content)
    with pytest.raises(DataFileError, match=pattern) as caught:
        ImageFolder(str(tmp_path), 8)
    assert "\n" not in str(caught.value)


def test_bad_folders_are_named(tmp_path):
    with pytest.raises(DataFileError, match=r"image folder '.*nowhere' does not exist"):
        ImageFolder(str(tmp_path / "nowhere"), 8)
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(DataFileError, match=r"image folder '.*' has no image files"):
        ImageFolder(str(tmp_path), 8)
    with pytest.raises(DataFileError, match=r"does not exist or is not a folder"):
        ImageFolder(str(tmp_path / "notes.txt"), 8)


def test_files_that_are_not_images_by_name_are_skipped(tmp_path):
    save(tmp_path / "a.png", np.zeros((8, 8)))
    (tmp_path / "README.txt").write_text("about these images")
    (tmp_path / ".hidden.png").write_bytes(b"editor backup")
    assert ImageFolder(str(tmp_path), 8).names == ["a.png"]
