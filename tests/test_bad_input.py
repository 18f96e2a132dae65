"""The bad-input catalogue: every way a user can hand needle and gan something broken.

Each case in CATALOGUE is (category, name, action, expected error, message pattern): the
action must raise that error, whose message names the file or op and the values involved,
and leave no partial output behind (no temporary file anywhere under the test's folder, and
any file the action was writing is absent or unchanged). Below the table, hypothesis fuzzes
the loaders with random byte mutations and truncations: they return intact data or raise
their named error, never anything else, and never hang.

    python -m tests.test_bad_input      prints the number of cases per category
"""
import errno
import gzip
import io
import json
import os
import sys
from collections import Counter
from typing import Callable, NamedTuple, Optional

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import needle as ndl
from gan import (Adversarial, DiscriminatorOutputError, GANSetupError, ImageShapeError,
                 LabelError, RunFolderError, Trainer, TrainerConfig, TrainingDataError,
                 TrainingDiverged)
from gan.checkpoint import (CheckpointWriteError, load_checkpoint, save_checkpoint)
from gan.models.conditional import ConditionalDiscriminator
from gan.models.dcgan import Discriminator, Generator
from gan.objectives import NonSaturating
from needle.data import ImageFolder, load_mnist
from needle.data.idx import DataFileError, read_idx
from needle.serialization import CheckpointError

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
ROOT_SKIP = "running as root: permission bits do not stop root from reading or writing"


class Case(NamedTuple):
    category: str
    name: str
    action: Callable          # action(tmp_path) must raise `error`
    error: type
    match: str                # regex the message must contain
    check: Optional[Callable] = None   # check(tmp_path) after the error: no partial output
    skip: Optional[str] = None


# ---- builders --------------------------------------------------------------------------
def models(latent=8):
    np.random.seed(0)
    return Generator(latent_dim=latent, width=4), Discriminator(width=4)


def images(n=16, channels=1, size=28, dtype=np.float32):
    return np.random.RandomState(0).uniform(-1, 1, (n, channels, size, size)).astype(dtype)


def make_trainer(out_dir, data=None, objective=None, **config):
    G, D = models()
    adv = Adversarial(D, objective or NonSaturating(), ndl.optim.Adam(D.parameters(), lr=1e-3))
    settings_ = dict(out_dir=str(out_dir), epochs=1, batch_size=8, latent_dim=8,
                     num_samples=4, checkpoint_every=2, log_every=1, progress=False)
    settings_.update(config)
    return Trainer(G, adv, ndl.optim.Adam(G.parameters(), lr=1e-3),
                   images() if data is None else data, TrainerConfig(**settings_))


def idx_bytes(array):
    header = (0x0800 | array.ndim).to_bytes(4, "big") + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_mnist(folder, images_raw=None, labels_raw=None, count=20):
    """A tiny MNIST training set; either file's bytes can be replaced (then gzipped)."""
    folder.mkdir(exist_ok=True)
    rng = np.random.RandomState(0)
    images_raw = idx_bytes(rng.randint(0, 256, (count, 28, 28))) if images_raw is None \
        else images_raw
    labels_raw = idx_bytes(rng.randint(0, 10, count)) if labels_raw is None else labels_raw
    (folder / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(images_raw, mtime=0))
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(labels_raw, mtime=0))
    return folder


def mnist_with_gz(tmp_path, damage):
    """Write MNIST, then replace the images file's gzip bytes with damage(bytes)."""
    folder = write_mnist(tmp_path / "mnist")
    path = folder / "train-images-idx3-ubyte.gz"
    path.write_bytes(damage(path.read_bytes()))
    return load_mnist(str(folder))


def mnist_with_idx(tmp_path, raw):
    return load_mnist(str(write_mnist(tmp_path / "mnist", images_raw=raw)))


def saved_file(tmp_path, metadata=None):
    path = tmp_path / "ckpt.safetensors"
    ndl.save({"w": np.arange(12, dtype=np.float32).reshape(3, 4), "t": 3}, path,
             metadata=metadata or {"epoch": "1"})
    return path


def damaged_safetensors(tmp_path, damage):
    path = saved_file(tmp_path)
    path.write_bytes(damage(path.read_bytes()))
    return ndl.load(path)


def trainer_checkpoint(tmp_path):
    """A real Trainer checkpoint (2 steps; trained once per folder: the folder then holds
    that run)."""
    path = tmp_path / "run" / "checkpoints" / "step_00000002.safetensors"
    if not path.exists():
        make_trainer(tmp_path / "run", max_steps=2).train()
    return path


def components(width=4):
    np.random.seed(1)
    G, D = Generator(latent_dim=8, width=width), Discriminator(width=width)
    adv = Adversarial(D, NonSaturating(), ndl.optim.Adam(D.parameters(), lr=1e-3))
    return {"generator": G, "adversarial": adv,
            "g_optimizer": ndl.optim.Adam(G.parameters(), lr=1e-3)}


def checkpoint_with_info(tmp_path, info_text, drop=()):
    """A checkpoint whose arrays are real but whose JSON state is `info_text` (valid digest:
    only the JSON is wrong)."""
    path = trainer_checkpoint(tmp_path)
    state = ndl.load(path)
    for key in drop:
        state.pop(key)
    bad = tmp_path / "bad.safetensors"
    ndl.save(state, bad, metadata={"gan.trainer": info_text})
    return load_checkpoint(str(bad), components())


def real_info(tmp_path):
    from needle.serialization import load_metadata
    return json.loads(load_metadata(trainer_checkpoint(tmp_path))["gan.trainer"])


def with_info(tmp_path, change):
    info = real_info(tmp_path)
    change(info)
    return checkpoint_with_info(tmp_path, json.dumps(info))


def load_wrong_width(tmp_path):
    path = trainer_checkpoint(tmp_path)
    parts = components(width=8)
    before = {name: c.state_dict() for name, c in parts.items()}
    try:
        load_checkpoint(str(path), parts)
    finally:  # nothing half-loaded: every component is as it was
        for name, component in parts.items():
            after = component.state_dict()
            assert all(np.array_equal(after[k], before[name][k]) for k in after), name


def png_bytes(size=(6, 6)):
    from PIL import Image
    buffer = io.BytesIO()
    Image.fromarray(np.full(size, 128, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_bytes():
    from PIL import Image
    buffer = io.BytesIO()
    Image.fromarray(np.full((16, 16), 99, np.uint8)).save(buffer, format="JPEG")
    return buffer.getvalue()


def image_folder(tmp_path, name, content):
    folder = tmp_path / "images"
    folder.mkdir(exist_ok=True)
    (folder / "a_good.png").write_bytes(png_bytes())
    (folder / name).write_bytes(content)
    return ImageFolder(str(folder), 8)


def huge_png_header():
    """A PNG whose IHDR claims 100000 x 100000 pixels (CRC fixed, so only the size is odd)."""
    import struct
    import zlib
    raw = bytearray(png_bytes())
    raw[16:24] = struct.pack(">II", 100000, 100000)
    raw[29:33] = struct.pack(">I", zlib.crc32(bytes(raw[12:29])))
    return bytes(raw)


def unreadable(path):
    os.chmod(path, 0)
    return path


# ---- disk full: writers that fail with ENOSPC half-way ---------------------------------
class _HalfWriter:
    """A file object that writes half of what it is given, then runs out of space."""

    def __init__(self, f):
        self.f = f

    def write(self, data):
        self.f.write(data[:len(data) // 2])
        self.f.flush()
        raise OSError(errno.ENOSPC, "No space left on device")

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


class _FullDiskOS:
    """`os` for one module, whose fdopen hands out _HalfWriters."""

    def __init__(self, real):
        self._real = real

    def fdopen(self, *args, **kwargs):
        return _HalfWriter(self._real.fdopen(*args, **kwargs))

    def __getattr__(self, name):
        return getattr(self._real, name)


class full_disk:
    """Context manager: needle's one atomic writer (so every save and checkpoint) hits ENOSPC."""

    def __enter__(self):
        import needle.fileio as fileio
        self.module, self.real = fileio, fileio.os
        fileio.os = _FullDiskOS(self.real)

    def __exit__(self, *exc):
        self.module.os = self.real


def save_on_full_disk(tmp_path):
    path = saved_file(tmp_path)
    with full_disk():
        ndl.save({"w": np.zeros(1000, np.float32)}, path)


def checkpoint_on_full_disk(tmp_path):
    folder = tmp_path / "checkpoints"
    G, D = models()
    parts = {"generator": G}
    save_checkpoint(str(folder), 2, parts, {"epoch": 0, "position": 2})
    with full_disk():
        save_checkpoint(str(folder), 4, parts, {"epoch": 0, "position": 4})


def trainer_on_full_disk(tmp_path):
    trainer = make_trainer(tmp_path / "run", checkpoint_every=2, epochs=3)
    real_save = ndl.save
    calls = {"n": 0}

    def save_then_fill(*args, **kwargs):  # the second checkpoint finds the disk full
        calls["n"] += 1
        if calls["n"] == 2:
            with full_disk():
                return real_save(*args, **kwargs)
        return real_save(*args, **kwargs)

    import gan.checkpoint
    gan.checkpoint.ndl.save, original = save_then_fill, gan.checkpoint.ndl.save
    try:
        trainer.train()
    finally:
        gan.checkpoint.ndl.save = original


def grid_on_full_disk(tmp_path):
    from PIL import Image

    from gan.images import save_grid
    path = tmp_path / "grid.png"
    save_grid(images(4), str(path))
    real = Image.Image.save

    def half_then_enospc(self, fp, *args, **kwargs):  # fp: needle.fileio's temporary file
        real(self, fp, *args, **kwargs)
        fp.truncate(fp.tell() // 2)
        raise OSError(errno.ENOSPC, "No space left on device")

    Image.Image.save = half_then_enospc
    try:
        save_grid(images(4, size=32), str(path))
    finally:
        Image.Image.save = real


class _FsyncFailsOS(_FullDiskOS):
    """`os` for one module, whose fsync finds the disk full (where delayed allocation
    failures surface)."""

    def fdopen(self, *args, **kwargs):
        return self._real.fdopen(*args, **kwargs)

    def fsync(self, fd):
        raise OSError(errno.ENOSPC, "No space left on device")


def manifest_on_full_disk(tmp_path):
    import needle.fileio as fileio
    from gan import runfiles
    path = tmp_path / "run.json"
    runfiles.write_json_atomic(str(path), {"old": True})
    real = fileio.os
    fileio.os = _FsyncFailsOS(real)  # run.json goes through the one atomic writer
    try:
        runfiles.write_json_atomic(str(path), {"new": True})
    finally:
        fileio.os = real


# ---- checks after the error ------------------------------------------------------------
def unchanged_checkpoint(tmp_path):
    loaded = ndl.load(tmp_path / "ckpt.safetensors")
    np.testing.assert_array_equal(loaded["w"], np.arange(12, dtype=np.float32).reshape(3, 4))


def only_step_2(tmp_path):
    folder = tmp_path / "checkpoints"
    assert sorted(os.listdir(folder)) == ["step_00000002.safetensors"]
    ndl.load(folder / "step_00000002.safetensors")


def trainer_kept_last_checkpoint(tmp_path):
    folder = tmp_path / "run" / "checkpoints"
    assert sorted(os.listdir(folder)) == ["step_00000002.safetensors"]
    ndl.load(folder / "step_00000002.safetensors")
    manifest = json.loads((tmp_path / "run" / "run.json").read_text())
    assert [c["step"] for c in manifest["checkpoints"]] == [2]


def old_grid(tmp_path):
    from PIL import Image
    with Image.open(tmp_path / "grid.png") as grid:
        assert grid.size == (2 * (2 * 30 + 2), 2 * (2 * 30 + 2))  # the 28x28 grid, intact


def old_manifest(tmp_path):
    assert json.loads((tmp_path / "run.json").read_text()) == {"old": True}


def nothing_written(tmp_path):
    run = tmp_path / "run"
    assert not run.exists() or not any(run.rglob("*.safetensors"))


def expect(condition):
    def check(tmp_path):
        assert condition(tmp_path)
    return check


def raise_(error):
    raise error


class UsageError(Exception):
    """An app's parse-time error (exit 2), carrying the one line it printed."""


def usage_error(app, argv):
    """Run apps.<app>.main(argv); a parse-time error becomes UsageError(its stderr line)."""
    import contextlib
    import importlib

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            importlib.import_module(f"apps.{app}").main(argv)
        except SystemExit as stop:
            lines = err.getvalue().splitlines()
            if stop.code == 2 and len(lines) == 1:
                raise UsageError(lines[0]) from None
            raise


def nan_after(calls):
    class NaNAfter(NonSaturating):
        def __init__(self):
            self.calls = calls

        def discriminator_loss(self, real, fake):
            self.calls -= 1
            loss = super().discriminator_loss(real, fake)
            return loss * float("nan") if self.calls < 0 else loss
    return NaNAfter()


def two_class_d():
    from needle import nn, ops

    class TwoClass(nn.Module):
        def __init__(self):
            super().__init__()
            self.trunk = Discriminator(width=4)
            self.w = nn.Parameter(np.ones((1, 2), np.float32))

        def forward(self, x):
            return ops.reshape(self.trunk(x), (x.shape[0], 1)) @ self.w
    return TwoClass()


def adversarial_step(D, real, fake):
    adv = Adversarial(D, NonSaturating(), ndl.optim.Adam(D.parameters(), lr=1e-3))
    return adv.discriminator_step(ndl.Tensor(real), ndl.Tensor(fake))


def t(array, device=None):
    return ndl.Tensor(np.asarray(array), device=device)


def run_in(folder, **config):
    """A finished 2-step Trainer run in `folder`."""
    make_trainer(folder, max_steps=2, **config).train()
    return folder


def damaged_only_checkpoint(tmp_path):
    run = run_in(tmp_path / "run")
    path = run / "checkpoints" / "step_00000002.safetensors"
    path.write_bytes(path.read_bytes()[:500])
    make_trainer(run, resume=True).train()


def mixed_runs(tmp_path):
    run_in(tmp_path / "run")
    other = run_in(tmp_path / "other")
    os.replace(other / "checkpoints" / "step_00000002.safetensors",
               tmp_path / "run" / "checkpoints" / "step_00000002.safetensors")
    make_trainer(tmp_path / "run", resume=True).train()


def nan_weights_in_d(tmp_path):
    """D's learning rate NaN: its weights turn NaN in the first D step."""
    G, D = models()
    adv = Adversarial(D, NonSaturating(), ndl.optim.Adam(D.parameters(), lr=float("nan")))
    Trainer(G, adv, ndl.optim.Adam(G.parameters(), lr=1e-3), images(),
            TrainerConfig(out_dir=str(tmp_path / "run"), batch_size=8, latent_dim=8,
                          num_samples=4, progress=False)).train()


def app_main(app, argv):
    import importlib
    return importlib.import_module(f"apps.{app}").main(argv)


def tiny_app_run(tmp_path, *extra):
    from tests.gan.test_kill_resume import write_tiny_mnist
    data = tmp_path / "data"
    data_dir = str(data) if data.exists() else write_tiny_mnist(data)
    return ["--data_dir", data_dir, "--limit", "32", "--batch_size", "8", "--width", "4",
            "--latent_dim", "8", "--no_progress", "--out_dir", str(tmp_path / "run"), *extra]


def one_checkpoint(tmp_path):
    return sorted(os.listdir(tmp_path / "run" / "checkpoints")) == \
        ["step_00000002.safetensors"]


CPU, CPU_NUMPY = ndl.cpu(), ndl.cpu_numpy()
GOOD_IDX = idx_bytes(np.random.RandomState(0).randint(0, 256, (20, 28, 28)))


# ---- the catalogue ---------------------------------------------------------------------
CATALOGUE = [
    # -- wrong shapes
    Case("shapes", "matmul (2, 3) @ (4, 5)",
         lambda p: ndl.matmul(t(np.ones((2, 3))), t(np.ones((4, 5)))), ValueError,
         r"matmul.*\(2, 3\).*\(4, 5\)"),
    Case("shapes", "add without broadcasting", lambda p: t(np.ones((2, 3))) + t(np.ones((3, 2))),
         ValueError, r"add.*\(2, 3\).*\(3, 2\)"),
    Case("shapes", "Conv on a 3-d input", lambda p: ndl.nn.Conv(1, 2, 3)(t(np.zeros(
        (1, 28, 28), np.float32))), ValueError, r"Conv\(1, 2.*expected input \(N, 1, H, W\), "
                                                r"got shape \(1, 28, 28\)"),
    Case("shapes", "Generator z of the wrong width", lambda p: models()[0](t(np.zeros(
        (4, 5), np.float32))), ValueError, r"Generator: expected z of shape \(N, 8\), got "
                                           r"\(4, 5\)"),
    Case("shapes", "Discriminator on 32x32 images", lambda p: models()[1](t(images(2, size=32))),
         ValueError, r"Discriminator: expected images of shape \(N, 1, 28, 28\), got "
                     r"\(2, 1, 32, 32\)"),
    Case("shapes", "Trainer on flat (N, 784) images", lambda p: make_trainer(
        p / "run", images().reshape(16, 784)), ImageShapeError, r"NCHW.*\(16, 784\)",
         nothing_written),
    Case("shapes", "Trainer: RGB data, grayscale models", lambda p: make_trainer(
        p / "run", images(channels=3)), ImageShapeError, r"1-channel.*grayscale.*3 channels "
                                                         r"\(RGB", nothing_written),
    Case("shapes", "Trainer: 32x32 data, 28x28 models", lambda p: make_trainer(
        p / "run", images(size=32)), ImageShapeError, r"size \(28, 28\) but the data are "
                                                      r"\(32, 32\)", nothing_written),
    Case("shapes", "D with (N, 2) logits", lambda p: adversarial_step(
        two_class_d(), images(4), images(4)), DiscriminatorOutputError,
         r"TwoClass returned scores of shape \(4, 2\) for a batch of 4"),
    Case("shapes", "conditional labels of the wrong count", lambda p: ConditionalDiscriminator(
        3, width=4)(t(images(4)), np.zeros(3, np.float32)), LabelError,
         r"ConditionalDiscriminator: expected labels of shape \(4,\), got \(3,\)"),
    Case("shapes", "conditional labels out of range", lambda p: ConditionalDiscriminator(
        3, width=4)(t(images(4)), np.array([0, 1, 5, 9], np.float32)), LabelError,
         r"class ids in \[0, 3\); got \[5\.0, 9\.0\]"),
    # -- wrong dtypes
    Case("dtypes", "float32 + float64", lambda p: t(np.ones(3, np.float32))
         + ndl.Tensor(np.ones(3), dtype="float64"), TypeError,
         r"float32.*float64|float64.*float32"),
    Case("dtypes", "Trainer on uint8 pixels", lambda p: make_trainer(
        p / "run", (images() * 100 + 100).astype(np.uint8)), TrainingDataError,
         r"dtype uint8; expected floats in \[-1, 1\]", nothing_written),
    Case("dtypes", "Trainer on float64 images, float32 models", lambda p: make_trainer(
        p / "run", images(dtype=np.float64)), TrainingDataError,
         r"dtype float64 but Generator's parameters are float32", nothing_written),
    Case("dtypes", "save an object array", lambda p: ndl.save(
        {"w": np.array([{}, 1], dtype=object)}, p / "x.safetensors"), TypeError,
         r"save: value of 'w' is an object array", expect(lambda p: not os.listdir(p))),
    Case("dtypes", "save a string value", lambda p: ndl.save({"w": "text"}, p / "x.safetensors"),
         TypeError, r"save: value of 'w' is a str", expect(lambda p: not os.listdir(p))),
    Case("dtypes", "save non-string metadata", lambda p: ndl.save(
        {"w": np.ones(2)}, p / "x.safetensors", metadata={"epoch": 3}), TypeError,
         r"metadata must map str to str, got 'epoch': 3", expect(lambda p: not os.listdir(p))),
    # -- wrong devices
    Case("devices", "add across devices", lambda p: t(np.ones(3), CPU_NUMPY) + t(np.ones(3), CPU),
         ValueError, r"cpu_numpy\(\).*cpu\(\)|cpu\(\).*cpu_numpy\(\)"),
    Case("devices", "Linear on cpu(), input on cpu_numpy()", lambda p: ndl.nn.Linear(
        3, 2, device=CPU)(t(np.zeros((1, 3), np.float32), CPU_NUMPY)), ValueError,
         r"MatMul: inputs on different devices: cpu_numpy\(\) and cpu\(\)"),
    Case("devices", "a tensor on cuda() without a GPU", lambda p: t(np.zeros(3), ndl.cuda()),
         RuntimeError, r"cuda\(\) is not available: install CuPy",
         skip="CUDA is available here" if ndl.cuda().enabled() else None),
    Case("devices", "--device cuda without a GPU", lambda p: __import__(
        "apps.common", fromlist=["resolve_device"]).resolve_device("cuda"), SystemExit,
         r"--device cuda: not available on this machine",
         skip="CUDA is available here" if ndl.cuda().enabled() else None),
    # -- NaN / Inf
    Case("nan_inf", "log of a negative (detect_anomaly)", lambda p: _anomaly(
        lambda: ndl.log(t(np.array([-1.0, 2.0], np.float32)))), FloatingPointError,
         r"Log produced NaN in its forward \(input shapes: \(2,\)\)"),
    Case("nan_inf", "sqrt's gradient at 0 (detect_anomaly)", lambda p: _anomaly(
        lambda: ndl.ops.summation(ndl.ops.sqrt(ndl.Tensor(np.array([0.0, 4.0], np.float32),
                                                          requires_grad=True))).backward()),
         FloatingPointError, r"in the gradient of Sqrt \(input shapes: \(2,\)\)"),
    Case("nan_inf", "division by zero (detect_anomaly)", lambda p: _anomaly(
        lambda: t(np.ones(2, np.float32)) / t(np.zeros(2, np.float32))), FloatingPointError,
         r"EWiseDiv produced (Inf|NaN)"),
    Case("nan_inf", "NaN and Inf in the training images", lambda p: make_trainer(
        p / "run", _with_nan(images())), TrainingDataError,
         r"2 of 16 images hold NaN or Inf values \(first at index 3\)", nothing_written),
    Case("nan_inf", "D's loss turns NaN mid-run", lambda p: make_trainer(
        p / "run", objective=nan_after(3), epochs=3).train(), TrainingDiverged,
         r"step 4: d_loss is nan; last good checkpoint: .*step_00000002\.safetensors",
         expect(lambda p: sorted(os.listdir(p / "run" / "checkpoints"))
                == ["step_00000002.safetensors"])),
    # -- empty batches
    Case("empty", "Trainer with no images", lambda p: make_trainer(p / "run", images(0)),
         GANSetupError, r"0 images is fewer than one batch of 8", nothing_written),
    Case("empty", "D on an empty batch", lambda p: models()[1](t(images(0))), ValueError,
         r"conv: empty input of shape \(0, 28, 28, 1\) \(an empty batch\?\)"),
    Case("empty", "G on empty noise", lambda p: models()[0](t(np.zeros((0, 8), np.float32))),
         ValueError, r"conv_transpose: empty input of shape \(0, 1, 1, 8\)"),
    Case("empty", "an empty MNIST file", lambda p: mnist_with_gz(p, lambda raw: b""),
         DataFileError, r"train-images-idx3-ubyte\.gz: not a gzip file .*an empty file"),
    Case("empty", "an image folder without images", lambda p: _empty_image_folder(p),
         DataFileError, r"has no image files"),
    Case("empty", "sample diversity of one image", lambda p: __import__(
        "gan.health", fromlist=["x"]).mean_pairwise_distance(images(1)), ValueError,
         r"mean_pairwise_distance: need at least 2 images, got 1"),
    # -- corrupt, truncated, oversized MNIST files
    Case("mnist_files", "not gzip data", lambda p: mnist_with_gz(p, lambda raw: b"PK\x03\x04"
                                                                 + raw), DataFileError,
         r"train-images-idx3-ubyte\.gz: not a gzip file \(expected magic bytes 1f 8b, got "
         r"50 4b\)"),
    Case("mnist_files", "gzip stream cut short", lambda p: mnist_with_gz(
        p, lambda raw: raw[:len(raw) // 2]), DataFileError,
         r"train-images-idx3-ubyte\.gz: corrupt or truncated gzip data"),
    Case("mnist_files", "gzip CRC mismatch", lambda p: mnist_with_gz(
        p, lambda raw: raw[:-8] + bytes([raw[-8] ^ 0xFF]) + raw[-7:]), DataFileError,
         r"corrupt or truncated gzip data"),
    Case("mnist_files", "bad IDX magic", lambda p: mnist_with_idx(p, b"\x00\x00\x08\x01"
                                                                  + GOOD_IDX[4:]),
         DataFileError, r"bad magic number 0x00000801, expected 0x00000803"),
    Case("mnist_files", "truncated IDX data", lambda p: mnist_with_idx(p, GOOD_IDX[:-100]),
         DataFileError, r"header says shape \(20, 28, 28\), i\.e\. 15696 bytes, but the file "
                        r"has 15596 \(truncated\)"),
    Case("mnist_files", "oversized: trailing bytes", lambda p: mnist_with_idx(
        p, GOOD_IDX + b"\x00" * 7), DataFileError, r"15703 \(trailing bytes\)"),
    Case("mnist_files", "header claims 4 billion images", lambda p: mnist_with_idx(
        p, GOOD_IDX[:4] + b"\xff\xff\xff\xff" + GOOD_IDX[8:]), DataFileError,
         r"header says shape \(4294967295, 28, 28\)"),
    Case("mnist_files", "header too short", lambda p: mnist_with_idx(p, GOOD_IDX[:10]),
         DataFileError, r"10 bytes, too short for the 16-byte header of a 3-d IDX file"),
    Case("mnist_files", "images and labels disagree", lambda p: load_mnist(str(write_mnist(
        p / "mnist", labels_raw=idx_bytes(np.zeros(19))))), DataFileError,
         r"has 20 images but .*train-labels-idx1-ubyte\.gz has 19 labels"),
    Case("mnist_files", "checksum mismatch", lambda p: _mnist_with_checksum(p), DataFileError,
         r"sha256 of the uncompressed bytes is [0-9a-f]{64}, but .*CHECKSUMS\.txt expects "
         r"0{64}"),
    Case("mnist_files", "missing file", lambda p: load_mnist(str(p / "nowhere")),
         FileNotFoundError, r"nowhere.*train-images-idx3-ubyte\.gz"),
    # -- corrupt safetensors
    Case("safetensors", "truncated to half", lambda p: damaged_safetensors(
        p, lambda raw: raw[:len(raw) // 2]), CheckpointError, r"ckpt\.safetensors: .*"
                                                             r"(truncated|not a valid)"),
    Case("safetensors", "5 bytes", lambda p: damaged_safetensors(p, lambda raw: raw[:5]),
         CheckpointError, r"ckpt\.safetensors: 5 bytes, too short"),
    Case("safetensors", "empty file", lambda p: damaged_safetensors(p, lambda raw: b""),
         CheckpointError, r"0 bytes, too short for a safetensors file"),
    Case("safetensors", "a text file", lambda p: damaged_safetensors(
        p, lambda raw: b"just some text, not a checkpoint\n"), CheckpointError,
         r"header claims \d+ bytes but the file has only"),
    Case("safetensors", "header not JSON", lambda p: damaged_safetensors(
        p, lambda raw: raw[:8] + b"[" + raw[9:]), CheckpointError, r"header is not valid JSON"),
    Case("safetensors", "header a JSON list", lambda p: damaged_safetensors(
        p, lambda raw: (2).to_bytes(8, "little") + b"[]"), CheckpointError,
         r"header is not a JSON object"),
    Case("safetensors", "a flipped data byte", lambda p: damaged_safetensors(
        p, lambda raw: raw[:-1] + bytes([raw[-1] ^ 1])), CheckpointError,
         r"do not match the saved SHA-256 .*the file is corrupt"),
    Case("safetensors", "an extra byte", lambda p: damaged_safetensors(
        p, lambda raw: raw + b"\x00"), CheckpointError, r"not a valid safetensors file"),
    Case("safetensors", "no digest (another tool's file)", lambda p: _foreign_file(p),
         CheckpointError, r"no 'needle\.sha256' digest .*verify=False"),
    # -- corrupt checkpoint JSON state
    Case("checkpoint_json", "state is not JSON", lambda p: checkpoint_with_info(
        p, "{step: 2,"), CheckpointError, r"bad\.safetensors: the 'gan\.trainer' metadata is "
                                           r"not valid JSON"),
    Case("checkpoint_json", "state without a step", lambda p: with_info(
        p, lambda info: info.pop("step")), CheckpointError, r"metadata lacks \['step'\]"),
    Case("checkpoint_json", "state is a JSON list", lambda p: checkpoint_with_info(p, "[1, 2]"),
         CheckpointError, r"metadata lacks \['step', 'rng'\]"),
    Case("checkpoint_json", "RNG state incomplete", lambda p: with_info(
        p, lambda info: info["rng"].pop("pos")), CheckpointError,
         r"saved RNG state .* is incomplete"),
    Case("checkpoint_json", "RNG state of the wrong kind", lambda p: with_info(
        p, lambda info: info["rng"].update(name="PCG64")), CheckpointError,
         r"saved RNG state does not load"),
    Case("checkpoint_json", "no training state at all", lambda p: load_checkpoint(
        str(saved_file(p)), components()), CheckpointError,
         r"ckpt\.safetensors: not a training checkpoint \(no 'gan\.trainer' metadata\)"),
    Case("checkpoint_json", "no RNG keys", lambda p: checkpoint_with_info(
        p, json.dumps(real_info(p)), drop=("rng.keys",)), CheckpointError,
         r"no 'rng\.keys' array"),
    Case("checkpoint_json", "a checkpoint of another model size", load_wrong_width,
         CheckpointError, r"step_00000002\.safetensors does not fit the models being trained: "
                          r"generator: .*shape mismatch"),
    # -- corrupt / truncated image files for the CycleGAN folder loader
    Case("image_files", "text named .png", lambda p: image_folder(
        p, "b_text.png", b"this is not a PNG"), DataFileError,
         r"cannot read image '.*b_text\.png' \(17 bytes\)"),
    Case("image_files", "zero-byte .png", lambda p: image_folder(p, "b_empty.png", b""),
         DataFileError, r"cannot read image '.*b_empty\.png' \(0 bytes\)"),
    Case("image_files", "truncated PNG", lambda p: image_folder(
        p, "b_cut.png", png_bytes((64, 64))[:60]), DataFileError,
         r"cannot read image '.*b_cut\.png' \(60 bytes\)"),
    Case("image_files", "truncated JPEG", lambda p: image_folder(
        p, "b_cut.jpg", jpeg_bytes()[:200]), DataFileError, r"cannot read image '.*b_cut\.jpg'"),
    Case("image_files", "PNG claiming 10^10 pixels", lambda p: image_folder(
        p, "b_huge.png", huge_png_header()), DataFileError,
         r"cannot read image '.*b_huge\.png'.*(100000 x 100000|DecompressionBomb)"),
    Case("image_files", "PNG with a corrupt chunk", lambda p: image_folder(
        p, "b_crc.png", _corrupt_idat(png_bytes((32, 32)))), DataFileError,
         r"cannot read image '.*b_crc\.png'"),
    # -- unreadable folders
    Case("folders", "missing folder", lambda p: ImageFolder(str(p / "missing"), 8),
         DataFileError, r"image folder '.*missing' does not exist or is not a folder"),
    Case("folders", "a file where the folder should be", lambda p: ImageFolder(
        str(saved_file(p)), 8), DataFileError,
         r"ckpt\.safetensors' does not exist or is not a folder"),
    Case("folders", "--domain_a without --domain_b", lambda p: usage_error(
        "train_cyclegan", ["--domain_a", str(p), "--out_dir", str(p / "run")]),
         UsageError, r"^python -m apps\.train_cyclegan: error: give both --domain_a and "
                     r"--domain_b", nothing_written),
    Case("folders", "folder with mode 000", lambda p: ImageFolder(str(unreadable(
        _empty_dir(p))), 8), DataFileError, r"cannot be read: Permission denied",
         skip=ROOT_SKIP if IS_ROOT else None),
    Case("folders", "image file with mode 000", lambda p: _unreadable_image(p), DataFileError,
         r"cannot read image '.*b\.png'.*Permission denied",
         skip=ROOT_SKIP if IS_ROOT else None),
    Case("folders", "MNIST folder with mode 000", lambda p: load_mnist(str(unreadable(
        write_mnist(p / "mnist")))), PermissionError, r"Permission denied: .*mnist",
         skip=ROOT_SKIP if IS_ROOT else None),
    # -- unwritable output folders
    Case("output_folders", "run folder is a file", lambda p: make_trainer(
        _a_file(p / "run")).train(), OSError, r"cannot use '.*run' as the run folder: it is "
                                              r"a file; give --out_dir a folder",
         expect(lambda p: (p / "run").is_file())),
    Case("output_folders", "run folder under a file", lambda p: make_trainer(
        _a_file(p / "parent") / "run").train(), OSError, r"cannot use '.*parent/run' as the "
                                                         r"run folder"),
    Case("output_folders", "save into a missing folder", lambda p: ndl.save(
        {"w": np.ones(2)}, p / "missing" / "x.safetensors"), FileNotFoundError,
         r"save: cannot write .*missing/x\.safetensors \(\d+ bytes\)"),
    Case("output_folders", "checkpoint folder is a file", lambda p: save_checkpoint(
        str(_a_file(p / "checkpoints")), 2, {"generator": models()[0]}, {}),
         CheckpointWriteError, r"could not write .*checkpoints/step_00000002\.safetensors "
                               r"for step 2"),
    Case("output_folders", "read-only run folder", lambda p: make_trainer(
        _read_only(p / "run")).train(), OSError, r"cannot use '.*run' as the run folder",
         skip=ROOT_SKIP if IS_ROOT else None),
    # -- a full disk (ENOSPC half-way through a write)
    Case("disk_full", "needle.save", save_on_full_disk, OSError,
         r"save: cannot write .*ckpt\.safetensors \(\d+ bytes\): No space left on device",
         unchanged_checkpoint),
    Case("disk_full", "save_checkpoint", checkpoint_on_full_disk, CheckpointWriteError,
         r"step_00000004\.safetensors for step 4 \(.*No space left on device.*\); nothing "
         r"was written, the previous checkpoint .*step_00000002\.safetensors is intact",
         only_step_2),
    Case("disk_full", "Trainer mid-run", trainer_on_full_disk, CheckpointWriteError,
         r"\[Errno 28\].*step_00000004\.safetensors", trainer_kept_last_checkpoint),
    Case("disk_full", "sample grid PNG", grid_on_full_disk, OSError,
         r"No space left on device", old_grid),
    Case("disk_full", "run.json manifest", manifest_on_full_disk, OSError,
         r"No space left on device", old_manifest),
    # -- run folders: one run each (gan.runfolder)
    Case("run_folders", "a new run where a run is", lambda p: make_trainer(
        run_in(p / "run"), max_steps=4).train(), RunFolderError,
         r"run already holds a gan\.Trainer run \(run \w{8}, step 2 of 2\); continue it with "
         r"--resume, or start afresh with --overwrite", expect(one_checkpoint)),
    Case("run_folders", "resume another app's run", lambda p: make_trainer(
        run_in(p / "run", app="train_cgan"), app="train_dcgan", resume=True).train(),
         RunFolderError, r"holds a train_cgan run .*not a train_dcgan run; resume it with "
                         r"python -m apps\.train_cgan --resume", expect(one_checkpoint)),
    Case("run_folders", "resume where no run is", lambda p: make_trainer(
        p / "run", resume=True).train(), RunFolderError,
         r"nothing to resume in .*run: there is no such folder",
         expect(lambda p: not (p / "run").exists())),
    Case("run_folders", "resume with only a damaged checkpoint", damaged_only_checkpoint,
         RunFolderError, r"has no intact checkpoint \(stopped before its first one\?\); "
                         r"start afresh with --overwrite",
         expect(lambda p: os.listdir(p / "run" / "checkpoints")
                == ["step_00000002.safetensors.corrupt"])),
    Case("run_folders", "a checkpoint of another run", mixed_runs, RunFolderError,
         r"step_00000002\.safetensors belongs to run \w+, not to run \w+ .*the folder mixes "
         r"two runs"),
    Case("run_folders", "the app: old run, new run", lambda p: app_main(
        "train_dcgan", tiny_app_run(p, "--max_steps", "2")) and app_main(
        "train_dcgan", tiny_app_run(p, "--max_steps", "4")), SystemExit,
         r"^train_dcgan: .*run already holds a train_dcgan run", expect(one_checkpoint)),
    # -- options rejected at parse time (exit 2, one line)
    Case("options", "--lr nan", lambda p: usage_error("train_dcgan", ["--lr", "nan"]),
         UsageError, r"argument --lr: a learning rate must be a finite number > 0, got nan"),
    Case("options", "--lr -1", lambda p: usage_error("train_cgan", ["--lr", "-1"]),
         UsageError, r"argument --lr: a learning rate must be a finite number > 0, got -1"),
    Case("options", "--beta1 1.5", lambda p: usage_error("train_dcgan", ["--beta1", "1.5"]),
         UsageError, r"argument --beta1: an Adam beta must be in \[0, 1\), got 1\.5"),
    Case("options", "--gp_weight -10", lambda p: usage_error(
        "train_wgan_gp", ["--gp_weight", "-10"]), UsageError,
         r"argument --gp_weight/--gp-weight: must be a finite number >= 0, got -10"),
    Case("options", "--batch_size 0", lambda p: usage_error(
        "train_dcgan", ["--batch_size", "0"]), UsageError,
         r"argument --batch_size/--batch-size: must be an integer >= 1, got 0"),
    Case("options", "--checkpoint_every 0", lambda p: usage_error(
        "train_cyclegan", ["--checkpoint_every", "0"]), UsageError,
         r"argument --checkpoint_every/--checkpoint-every: must be an integer >= 1, got 0"),
    Case("options", "--log_every 0", lambda p: usage_error("train_wgan_gp", ["--log_every", "0"]),
         UsageError, r"argument --log_every/--log-every: must be an integer >= 1, got 0"),
    Case("options", "--width 0", lambda p: usage_error("train_dcgan", ["--width", "0"]),
         UsageError, r"argument --width: must be an integer >= 1, got 0"),
    Case("options", "--epochs 0", lambda p: usage_error("train_cgan", ["--epochs", "0"]),
         UsageError, r"argument --epochs: must be an integer >= 1, got 0"),
    Case("options", "--resume --overwrite", lambda p: usage_error(
        "train_dcgan", ["--resume", "--overwrite"]), UsageError,
         r"--resume continues the run in --out_dir and --overwrite moves it aside"),
    # -- divergence is always TrainingDiverged
    Case("nan_inf", "D's weights NaN (not a graph-hygiene error)", nan_weights_in_d,
         TrainingDiverged, r"step 1: g_loss is nan; no checkpoint was written yet"),
    Case("nan_inf", "the app with --lr 1e30", lambda p: app_main(
        "train_dcgan", tiny_app_run(p, "--lr", "1e30")), SystemExit,
         r"^train_dcgan: training stopped at step 1: g_loss is nan",
         expect(lambda p: json.loads((p / "run" / "run.json").read_text())["status"]
                == "diverged")),
]


def _anomaly(fn):
    with ndl.detect_anomaly():
        fn()


def _with_nan(data):
    data = data.copy()
    data[3, 0, 1, 1] = np.nan
    data[7, 0, 2, 2] = -np.inf
    return data


def _empty_dir(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    return folder


def _empty_image_folder(tmp_path):
    folder = _empty_dir(tmp_path)
    (folder / "notes.txt").write_text("no images")
    return ImageFolder(str(folder), 8)


def _mnist_with_checksum(tmp_path):
    folder = write_mnist(tmp_path / "mnist")
    (folder / "CHECKSUMS.txt").write_text(
        "train-images-idx3-ubyte.gz  uncompressed_bytes=15696  uncompressed_sha256="
        + "0" * 64 + "\n")
    return load_mnist(str(folder))


def _foreign_file(tmp_path):
    import safetensors.numpy
    path = tmp_path / "foreign.safetensors"
    path.write_bytes(safetensors.numpy.save({"w": np.arange(3.0)}))
    return ndl.load(path)


def _corrupt_idat(raw):
    start = raw.index(b"IDAT") + 4
    return raw[:start + 5] + bytes(b ^ 0x5A for b in raw[start + 5:start + 30]) + \
        raw[start + 30:]


def _a_file(path):
    path.write_text("a file, not a folder")
    return path


def _read_only(path):
    path.mkdir()
    os.chmod(path, 0o555)
    return path


def _unreadable_image(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "a.png").write_bytes(png_bytes())
    (folder / "b.png").write_bytes(png_bytes())
    unreadable(folder / "b.png")
    return ImageFolder(str(folder), 8)


def _no_temp_files(tmp_path):
    leftovers = [str(p) for p in tmp_path.rglob("*") if ".tmp" in p.name]
    assert leftovers == [], f"temporary files left behind: {leftovers}"


@pytest.mark.parametrize("case", CATALOGUE, ids=[f"{c.category}: {c.name}" for c in CATALOGUE])
def test_bad_input_raises_a_named_error_and_leaves_no_partial_output(case, tmp_path):
    if case.skip:
        pytest.skip(case.skip)
    with pytest.raises(case.error, match=case.match):
        case.action(tmp_path)
    _no_temp_files(tmp_path)
    if case.check is not None:
        case.check(tmp_path)


MINIMUM_PER_CATEGORY = {"shapes": 8, "dtypes": 4, "devices": 2, "nan_inf": 6, "empty": 4,
                        "mnist_files": 8, "safetensors": 8, "checkpoint_json": 6,
                        "image_files": 5, "folders": 3, "output_folders": 4, "disk_full": 5,
                        "run_folders": 6, "options": 10}


def catalogue_counts():
    return Counter(case.category for case in CATALOGUE)


def test_catalogue_covers_every_category():
    counts = catalogue_counts()
    assert set(counts) == set(MINIMUM_PER_CATEGORY)
    short = {c: (counts[c], n) for c, n in MINIMUM_PER_CATEGORY.items() if counts[c] < n}
    assert short == {}, f"categories below their minimum (have, need): {short}"
    names = [(c.category, c.name) for c in CATALOGUE]
    assert len(names) == len(set(names))


# ---- fuzzing the loaders ---------------------------------------------------------------
FUZZ = settings(max_examples=100, deadline=3000, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
mutations = st.lists(st.tuples(st.integers(0, 10 ** 6), st.integers(0, 255)), min_size=0,
                     max_size=6)
cuts = st.none() | st.integers(0, 10 ** 6)


def mutate(original, changes, cut):
    raw = bytearray(original)
    for position, value in changes:
        if raw:
            raw[position % len(raw)] = value
    if cut is not None:
        raw = raw[:cut % (len(raw) + 1)]
    return bytes(raw)


SMALL_IDX = idx_bytes(np.random.RandomState(1).randint(0, 256, (3, 5, 4)))


@FUZZ
@given(changes=mutations, cut=cuts, compressed=st.booleans())
def test_fuzzed_idx_files_load_intact_or_raise_data_file_error(tmp_path, changes, cut,
                                                               compressed):
    original = gzip.compress(SMALL_IDX, mtime=0) if compressed else SMALL_IDX
    path = tmp_path / ("fuzz.idx.gz" if compressed else "fuzz.idx")
    path.write_bytes(mutate(original, changes, cut))
    try:
        array = read_idx(str(path), ndim=3)
    except DataFileError as error:
        assert str(path) in str(error)
        return
    assert array.dtype == np.uint8 and array.ndim == 3  # whatever loads is well formed


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz_checkpoint")
    return trainer_checkpoint(folder).read_bytes()


@FUZZ
@given(changes=mutations, cut=cuts)
def test_fuzzed_checkpoints_load_intact_or_raise_checkpoint_error(tmp_path, small_checkpoint,
                                                                  changes, cut):
    path = tmp_path / "step_00000002.safetensors"
    raw = mutate(small_checkpoint, changes, cut)
    path.write_bytes(raw)
    parts = components()
    try:
        info, _ = load_checkpoint(str(path), parts)
    except CheckpointError as error:
        assert str(path) in str(error)
        return
    assert raw == small_checkpoint or info["step"] == 2  # loads only when intact


@FUZZ
@given(changes=mutations, cut=cuts)
def test_fuzzed_safetensors_load_intact_or_raise_checkpoint_error(tmp_path, changes, cut):
    path = saved_file(tmp_path)
    original = path.read_bytes()
    path.write_bytes(mutate(original, changes, cut))
    try:
        state = ndl.load(path)
    except CheckpointError as error:
        assert str(path) in str(error)
        return
    np.testing.assert_array_equal(state["w"], np.arange(12, dtype=np.float32).reshape(3, 4))


GOOD_IMAGES = {"png": png_bytes((12, 10)), "jpg": jpeg_bytes()}


@FUZZ
@given(changes=mutations, cut=cuts, kind=st.sampled_from(sorted(GOOD_IMAGES)))
def test_fuzzed_image_files_load_or_raise_data_file_error(tmp_path, changes, cut, kind):
    folder = tmp_path / "images"
    folder.mkdir(exist_ok=True)
    for old in folder.iterdir():
        old.unlink()
    (folder / f"fuzz.{kind}").write_bytes(mutate(GOOD_IMAGES[kind], changes, cut))
    try:
        dataset = ImageFolder(str(folder), 8)
    except DataFileError as error:
        assert "fuzz." in str(error)
        return
    loaded = dataset[np.arange(len(dataset))]  # a random crop and flip of the 9x9 resize
    assert loaded.shape in ((1, 1, 8, 8), (1, 3, 8, 8)) and np.isfinite(loaded).all()
    assert -1 <= loaded.min() and loaded.max() <= 1


if __name__ == "__main__":
    counts = catalogue_counts()
    width = max(map(len, counts))
    for category in MINIMUM_PER_CATEGORY:
        print(f"{category:<{width}}  {counts[category]:3d}")
    print(f"{'total':<{width}}  {sum(counts.values()):3d}")
    skipped = sum(1 for c in CATALOGUE if c.skip)
    print(f"({skipped} skipped on this machine: {ROOT_SKIP if IS_ROOT else 'CUDA present'})"
          if skipped else "", file=sys.stdout)
