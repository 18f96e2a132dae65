"""apps.translate applies a trained CycleGAN to a folder of new images: PNGs with the inputs'
names, the test-time resize and centre crop, G or F by direction, the model's channels, and
one-line errors that leave --out_dir untouched."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import needle as ndl
from apps import translate
from gan.checkpoint import save_checkpoint
from gan.images import to_uint8
from gan.models.cyclegan import ResnetGenerator
from gan.models.dcgan import Generator
from needle.fileio import TEMP_NAME
from tests.support.images import centre_crop_by_hand

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def cyclegan_run(folder, channels=1, image_size=16):
    np.random.seed(0)
    G, F = ResnetGenerator(channels, 4, 1), ResnetGenerator(channels, 4, 1)
    save_checkpoint(str(folder / "checkpoints"), 3, {"G": G, "F": F}, info={})
    with open(folder / "run.json", "w") as f:
        json.dump({"app": "train_cyclegan", "args": {"image_size": image_size}}, f)
    return G.eval(), F.eval()


def inputs(folder):
    folder.mkdir()
    rng = np.random.RandomState(1)
    Image.fromarray(rng.randint(0, 256, (20, 30), np.uint8)).save(folder / "a.png")
    Image.fromarray(rng.randint(0, 256, (24, 24, 3), np.uint8)).save(folder / "b.jpg")
    (folder / "notes.txt").write_text("not an image")
    return folder


def png(path):
    with Image.open(path) as picture:
        return picture.mode, np.asarray(picture)


def run_app(*argv):
    return subprocess.run([sys.executable, "-m", "apps.translate", *argv], cwd=ROOT,
                          capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, PYTHONPATH=ROOT, PYTHONWARNINGS="error"))


@pytest.mark.parametrize("direction", ["AtoB", "BtoA"])
def test_translates_every_image_with_g_or_f(tmp_path, capsys, direction):
    run = tmp_path / "run"
    G, F = cyclegan_run(run)
    source, out = inputs(tmp_path / "in"), tmp_path / "out"
    paths = translate.main(["--checkpoint", str(run), "--input_dir", str(source), "--out_dir",
                            str(out), "--direction", direction])
    assert sorted(os.listdir(out)) == ["a.png", "b.png"] and len(paths) == 2
    model = G if direction == "AtoB" else F
    with ndl.no_grad():
        for name in ("a.png", "b.jpg"):
            # a colour input to a grayscale model: its luma (as Pillow's convert("L"))
            x = centre_crop_by_hand(source / name, 16, "L")[None]
            expected = to_uint8(model(ndl.Tensor(x)).numpy())[0, :, :, 0]
            mode, written = png(out / (os.path.splitext(name)[0] + ".png"))
            assert mode == "L" and written.shape == (16, 16)
            assert np.abs(written.astype(int) - expected).max() <= 1
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"translate: 2 images of {source} translated {direction} by "
                           f"{'G' if direction == 'AtoB' else 'F'} of {run} (step 3) at 16x16")
    assert line.endswith(f"PNGs in {out}")


def test_a_colour_model_writes_rgb_and_takes_another_size(tmp_path):
    run = tmp_path / "run"
    G, _ = cyclegan_run(run, channels=3)
    source, out = inputs(tmp_path / "in"), tmp_path / "out"
    translate.main(["--checkpoint", str(run), "--input_dir", str(source), "--out_dir", str(out),
                    "--image_size", "12"])
    mode, written = png(out / "a.png")  # a grayscale file: its band repeated
    assert mode == "RGB" and written.shape == (12, 12, 3)
    with ndl.no_grad():
        expected = to_uint8(G(ndl.Tensor(centre_crop_by_hand(source / "a.png", 12)[None])).numpy())[0]
    assert np.abs(written.astype(int) - expected).max() <= 1
    assert not [n for n in os.listdir(out) if TEMP_NAME.match(n)]


def test_the_app_translates_what_train_cyclegan_writes(tmp_path):
    run = tmp_path / "run"
    trained = subprocess.run([sys.executable, "-m", "apps.train_cyclegan", "--dry_run",
                              "--no_progress", "--out_dir", str(run)], cwd=ROOT,
                             capture_output=True, text=True, timeout=600,
                             env=dict(os.environ, PYTHONPATH=ROOT))
    assert trained.returncode == 0, trained.stderr[-2000:]
    source = inputs(tmp_path / "in")
    result = run_app("--checkpoint", str(run), "--input_dir", str(source), "--out_dir",
                     str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(tmp_path / "out")) == ["a.png", "b.png"]
    assert png(tmp_path / "out" / "a.png")[1].shape == (28, 28)


def test_an_rgb_train_cyclegan_run_translates_to_rgb(tmp_path):
    run = tmp_path / "run"
    trained = subprocess.run([sys.executable, "-m", "apps.train_cyclegan", "--dry_run",
                              "--channels", "3", "--image_size", "16", "--width", "4",
                              "--n_blocks", "1", "--d_width", "4", "--no_progress",
                              "--out_dir", str(run)], cwd=ROOT, capture_output=True,
                             text=True, timeout=600, env=dict(os.environ, PYTHONPATH=ROOT))
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert json.loads((run / "run.json").read_text())["args"]["channels"] == 3
    source, out = inputs(tmp_path / "in"), tmp_path / "out"
    translate.main(["--checkpoint", str(run), "--input_dir", str(source), "--out_dir",
                    str(out), "--direction", "BtoA"])
    F = translate.load_translator(translate.open_run(str(run)), "BtoA")
    assert F.channels == 3
    for name in ("a.png", "b.jpg"):  # a grayscale and a colour input, both to RGB at 16
        mode, written = png(out / (os.path.splitext(name)[0] + ".png"))
        with ndl.no_grad():
            expected = to_uint8(F(ndl.Tensor(centre_crop_by_hand(source / name, 16)[None])).numpy())[0]
        assert mode == "RGB" and written.shape == (16, 16, 3)
        assert np.abs(written.astype(int) - expected).max() <= 1


def _corrupt(tmp_path):
    source = inputs(tmp_path / "in")
    (source / "c.png").write_bytes(b"not a png at all")
    return source


def _clash(tmp_path):
    source = inputs(tmp_path / "in")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(source / "a.jpg")
    return source


@pytest.mark.parametrize("case, pattern", [
    ("missing", r"translate: image folder '\S*nowhere' does not exist or is not a folder"),
    ("corrupt", r"translate: cannot read image '\S*c\.png' \(16 bytes\): "),
    ("no images", r"translate: image folder '\S*' has no image files"),
    ("dcgan run", r"translate: \S+ is a train_dcgan run; translating images takes a "
                  r"train_cyclegan run"),
    ("same folder", r"translate: --out_dir '\S+' is the input folder"),
    ("clash", r"translate: 'a\.jpg' and 'a\.png' would both be written to '\S*a\.png'"),
])
def test_mistakes_are_one_line_and_write_nothing(tmp_path, case, pattern):
    run = tmp_path / "run"
    if case == "dcgan run":
        np.random.seed(0)
        save_checkpoint(str(run / "checkpoints"), 3, {"generator": Generator(8, width=4)},
                        info={})
        with open(run / "run.json", "w") as f:
            json.dump({"app": "train_dcgan", "args": {}}, f)
    else:
        cyclegan_run(run)
    source = {"missing": lambda: tmp_path / "nowhere", "corrupt": lambda: _corrupt(tmp_path),
              "clash": lambda: _clash(tmp_path)}.get(case, lambda: inputs(tmp_path / "in"))()
    if case == "no images":
        for name in ("a.png", "b.jpg"):
            os.remove(source / name)
    out = source if case == "same folder" else tmp_path / "out"
    before = sorted(os.listdir(source)) if os.path.isdir(source) else None
    result = run_app("--checkpoint", str(run), "--input_dir", str(source), "--out_dir",
                     str(out))
    assert result.returncode == 1 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and re.match(pattern, lines[0]), result.stderr
    assert (sorted(os.listdir(source)) if os.path.isdir(source) else None) == before
    assert case == "same folder" or not out.exists()


@pytest.mark.parametrize("argv, message", [
    (["--image_size", "30"], "must be a multiple of 4, got 30"),
    (["--batch_size", "0"], "must be an integer >= 1, got 0"),
    (["--direction", "sideways"], "invalid choice"),
])
def test_bad_options_are_refused_at_parse_time(tmp_path, argv, message):
    result = run_app("--checkpoint", str(tmp_path), "--input_dir", str(tmp_path), "--out_dir",
                     str(tmp_path / "out"), *argv)
    assert result.returncode == 2 and message in result.stderr
    assert result.stderr.startswith("python -m apps.translate: error: ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
