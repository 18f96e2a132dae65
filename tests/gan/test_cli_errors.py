"""The mistakes a careless user makes, run as they would run them: `python -m apps.NAME ...` in
a process of its own. Each case checks the exit code (2: an option rejected at parse time, 1:
any other mistake, 0: handled and trained), that stderr is one line and says what it must,
and the state of the run folder afterwards (nothing half-written, nothing lost).

Cases that need an earlier run (an old run in the folder, a dry run then a real run, a damaged
checkpoint) prepare it in this process with the app's main(), which is what the command does.
"""
import importlib
import json
import os
import re
import subprocess
import sys
from typing import Callable, NamedTuple, Optional

import pytest

import needle as ndl
from gan.checkpoint import checkpoint_info

pytestmark = pytest.mark.nd_only  # the GAN apps run on the NDArray flavour

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = ["--limit", "32", "--batch_size", "8", "--width", "4", "--latent_dim", "8",
        "--no_progress", "--log_every", "1"]


class Case(NamedTuple):
    name: str
    app: str
    argv: Callable            # argv(tmp_path) -> the command's arguments
    code: int
    stderr: str               # a regex the (single-line, for codes 1 and 2) stderr must match
    setup: Optional[Callable] = None   # setup(tmp_path): the state before the command
    check: Optional[Callable] = None   # check(tmp_path): the state after it
    skip: Optional[str] = None


def tiny_mnist(tmp_path):
    from tests.gan.test_kill_resume import write_tiny_mnist
    folder = tmp_path / "data"
    return str(folder) if folder.exists() else write_tiny_mnist(folder)


def train(app, tmp_path, *argv):
    """Run apps.<app>.main in this process (a setup step)."""
    module = importlib.import_module(f"apps.{app}")
    return module.main(["--data_dir", tiny_mnist(tmp_path), *TINY, *argv])


def dcgan(*extra):
    """A tiny run's arguments (for train_dcgan and train_cgan) and `extra`."""
    return lambda p: ["--data_dir", tiny_mnist(p), *TINY, "--out_dir", str(p / "run"), *extra]


def opts(*extra):
    """--out_dir and `extra`: for options rejected before anything is read."""
    return lambda p: ["--out_dir", str(p / "run"), *extra]


def snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*")
            if p.is_file()}


# ---- setups and checks -----------------------------------------------------------------------
def old_run(p):
    train("train_dcgan", p, "--out_dir", str(p / "run"), "--max_steps", "2")
    remember(p)


def unchanged(p):
    before = {k: bytes.fromhex(v) for k, v in json.loads(p.joinpath("before.json")
                                                          .read_text()).items()}
    assert snapshot(p / "run") == before


def no_run_folder(p):
    assert not (p / "run").exists()


def cgan_run(p):
    train("train_cgan", p, "--out_dir", str(p / "run"), "--max_steps", "2", "--num_classes",
          "3", "--num_samples", "3")
    remember(p)


def remember(p):
    p.joinpath("before.json").write_text(json.dumps(
        {k: v.hex() for k, v in snapshot(p / "run").items()}))


def dry_run_then_real_run(p):
    cwd = p / "cwd"
    cwd.mkdir()
    dry = subprocess.run(command("train_dcgan", ["--dry_run", "--no_progress", "--width", "4"]),
                         cwd=cwd, env=environment(), capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr
    said = dry.stderr.strip().splitlines()[0]
    assert said.startswith("train_dcgan: dry run: writing to ")
    assert os.path.isdir(said.rsplit(" ", 1)[1]) and not (cwd / "runs").exists()
    train("train_dcgan", p, "--out_dir", str(p / "run"), "--max_steps", "2",
          "--checkpoint_every", "2")


def resumed_to_4(p):
    run = json.loads((p / "run" / "run.json").read_text())
    assert run["step"] == 4 and [r["from_step"] for r in run["resumes"]] == [2]


def two_checkpoints_newest_truncated(p):
    train("train_dcgan", p, "--out_dir", str(p / "run"), "--max_steps", "4",
          "--checkpoint_every", "2")
    path = p / "run" / "checkpoints" / "step_00000004.safetensors"
    path.write_bytes(path.read_bytes()[:1000])


def corrupt_set_aside_older_kept(p):
    folder = p / "run" / "checkpoints"
    assert sorted(os.listdir(folder)) == ["step_00000002.safetensors",
                                          "step_00000004.safetensors",
                                          "step_00000004.safetensors.corrupt"]
    for name in ("step_00000002.safetensors", "step_00000004.safetensors"):
        ndl.load(str(folder / name))
    assert checkpoint_info(str(folder / "step_00000004.safetensors"))["step"] == 4


def only_the_data(p):
    assert sorted(os.listdir(p)) == ["data"]


def a_file(p):
    (p / "run").write_text("notes, not a run folder")


def still_a_file(p):
    assert (p / "run").read_text() == "notes, not a run folder"


def empty_folder(p):
    (p / "empty").mkdir()


def corrupt_mnist(p):
    folder = p / "bad"
    folder.mkdir()
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        (folder / name).write_bytes(b"\x1f\x8b not really gzip")


def image_folders_one_corrupt(p):
    import numpy as np
    from PIL import Image

    for domain in ("a", "b"):
        (p / domain).mkdir()
        for i in range(4):
            Image.fromarray(np.full((12, 12), 40 * i, np.uint8)).save(p / domain / f"{i}.png")
    (p / "b" / "2.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")


def diverged(p):
    run = json.loads((p / "run" / "run.json").read_text())
    assert run["status"] == "diverged"


CUDA = "CUDA is available here" if ndl.cuda().enabled() else None
USAGE = (r"^python -m apps\.{app}: error: argument {option}(?:/--[\w-]+)?: {what} \(see "
         r"python -m apps\.{app} --help\)$")  # argparse names the kebab-case alias too


def usage(app, option, what):
    return USAGE.format(app=app, option=option, what=what)


CASES = [
    # -- options rejected where they enter (exit 2, nothing loaded or written)
    Case("--lr nan", "train_dcgan", opts("--lr", "nan"), 2,
         usage("train_dcgan", "--lr", r"a learning rate must be a finite number > 0, got nan"),
         check=no_run_folder),
    Case("--lr -1", "train_dcgan", opts("--lr", "-1"), 2,
         usage("train_dcgan", "--lr", r"a learning rate must be a finite number > 0, got -1"),
         check=no_run_folder),
    Case("--g_lr inf", "train_cgan", opts("--g_lr", "inf"), 2,
         usage("train_cgan", "--g_lr", r".*finite number > 0, got inf")),
    Case("--beta1 1.5", "train_dcgan", opts("--beta1", "1.5"), 2,
         usage("train_dcgan", "--beta1", r"an Adam beta must be in \[0, 1\), got 1\.5")),
    Case("--gp_weight -10", "train_wgan_gp", opts("--gp_weight", "-10"), 2,
         usage("train_wgan_gp", "--gp_weight", r"must be a finite number >= 0, got -10")),
    Case("--batch_size 0", "train_dcgan", opts("--batch_size", "0"), 2,
         usage("train_dcgan", "--batch_size", r"must be an integer >= 1, got 0")),
    Case("--checkpoint_every 0", "train_dcgan", opts("--checkpoint_every", "0"), 2,
         usage("train_dcgan", "--checkpoint_every", r"must be an integer >= 1, got 0")),
    Case("--log_every 0", "train_cyclegan", opts("--log_every", "0"), 2,
         usage("train_cyclegan", "--log_every", r"must be an integer >= 1, got 0")),
    Case("--width 0", "train_dcgan", opts("--width", "0"), 2,
         usage("train_dcgan", "--width", r"must be an integer >= 1, got 0")),
    Case("--epochs 0", "train_dcgan", opts("--epochs", "0"), 2,
         usage("train_dcgan", "--epochs", r"must be an integer >= 1, got 0")),
    Case("--sample_every 0", "train_wgan_gp", opts("--sample_every", "0"), 2,
         usage("train_wgan_gp", "--sample_every", r"must be an integer >= 1, got 0")),
    Case("--max_steps ten", "train_dcgan", opts("--max_steps", "ten"), 2,
         usage("train_dcgan", "--max_steps", r"expected an integer, got 'ten'")),
    Case("--num_classes 11", "train_cgan", opts("--num_classes", "11"), 2,
         usage("train_cgan", "--num_classes", r"must be an integer from 2 to 10, got 11")),
    Case("--image_size 30", "train_cyclegan", opts("--image_size", "30"), 2,
         usage("train_cyclegan", "--image_size", r"must be a multiple of 4, got 30")),
    Case("--resume with --overwrite", "train_dcgan", opts("--resume", "--overwrite"), 2,
         r"^python -m apps\.train_dcgan: error: --resume continues the run in --out_dir and "
         r"--overwrite moves it aside: give one of them"),
    Case("--epochs with --more_epochs", "train_dcgan", opts("--epochs", "2", "--more_epochs",
                                                             "1"), 2,
         r"error: give --epochs \(the total\) or --more_epochs"),
    Case("one CycleGAN domain folder", "train_cyclegan", lambda p: [
        "--domain_a", str(p), "--out_dir", str(p / "run")], 2,
         r"error: give both --domain_a and --domain_b, or neither", check=no_run_folder),
    Case("--out_dir ''", "train_dcgan", lambda p: ["--out_dir", ""], 2,
         usage("train_dcgan", "--out_dir", r"expected a folder, got an empty path")),
    # -- run folders
    Case("--out_dir . (a folder of other files)", "train_dcgan", lambda p: [
        "--data_dir", tiny_mnist(p), *TINY, "--out_dir", "."], 1,
         r"^train_dcgan: \. is not empty \(\d+ entries: data\) and holds no run; give a new or "
         r"empty --out_dir, or --overwrite to move it aside",
         check=only_the_data),
    Case("old run in the folder, new run", "train_dcgan", dcgan("--max_steps", "4"), 1,
         r"^train_dcgan: .*/run already holds a train_dcgan run \(run \w{8}, step 2 of 2\); "
         r"continue it with --resume, or start afresh with --overwrite", setup=old_run,
         check=unchanged),
    Case("--resume of another app's folder", "train_dcgan", dcgan("--resume"), 1,
         r"^train_dcgan: .*/run holds a train_cgan run \(run \w{8}, step \d+ of \d+\), not a "
         r"train_dcgan run; resume it with python -m apps\.train_cgan --resume", setup=cgan_run,
         check=unchanged),
    Case("--resume with nothing there", "train_dcgan", dcgan("--resume"), 1,
         r"^train_dcgan: nothing to resume in .*/run: there is no such folder",
         check=no_run_folder),
    Case("out_dir is a file", "train_dcgan", dcgan("--max_steps", "1"), 1,
         r"^train_dcgan: cannot use '.*/run' as the run folder: it is a file; give --out_dir",
         setup=a_file, check=still_a_file),
    Case("dry run, real run, resume", "train_dcgan", dcgan("--resume", "--max_steps", "4"), 0,
         r"resuming run \w{8} from step 2 of 4", setup=dry_run_then_real_run,
         check=resumed_to_4),
    Case("truncated newest checkpoint", "train_dcgan", dcgan("--resume"), 0,
         r"checkpoint .*step_00000004\.safetensors is damaged \(.*\); set aside as "
         r"step_00000004\.safetensors\.corrupt\n.*resuming run \w{8} from step 2 of 4",
         setup=two_checkpoints_newest_truncated, check=corrupt_set_aside_older_kept),
    # -- data
    Case("missing data folder", "train_dcgan", lambda p: [
        "--data_dir", str(p / "nowhere"), "--out_dir", str(p / "run")], 1,
         r"^train_dcgan: no MNIST folder '.*nowhere' \(--data_dir\): give the folder that "
         r"holds train-images-idx3-ubyte\.gz", check=no_run_folder),
    Case("empty data folder", "train_cgan", lambda p: [
        "--data_dir", str(p / "empty"), "--out_dir", str(p / "run")], 1,
         r"^train_cgan: .*empty/train-images-idx3-ubyte\.gz: no such file; --data_dir .* must "
         r"hold the four MNIST \.gz files", setup=empty_folder, check=no_run_folder),
    Case("corrupt MNIST file", "train_wgan_gp", lambda p: [
        "--data", "mnist", "--data_dir", str(p / "bad"), "--out_dir", str(p / "run")], 1,
         r"^train_wgan_gp: .*train-images-idx3-ubyte\.gz: corrupt or truncated gzip data",
         setup=corrupt_mnist, check=no_run_folder),
    Case("corrupt image in a CycleGAN folder", "train_cyclegan", lambda p: [
        "--domain_a", str(p / "a"), "--domain_b", str(p / "b"), "--image_size", "8",
        "--num_samples", "2", "--out_dir", str(p / "run")], 1,
         r"^train_cyclegan: --domain_b: cannot read image '.*b/2\.png'",
         setup=image_folders_one_corrupt, check=no_run_folder),
    Case("CycleGAN folders too small to hold out the grid's images", "train_cyclegan",
         lambda p: ["--domain_a", str(p / "a"), "--domain_b", str(p / "b"), "--image_size",
                    "8", "--out_dir", str(p / "run")], 1,
         r"^train_cyclegan: --domain_a: image folder '.*a' has 4 images; holding out 8 for "
         r"the samples leaves none to train on", setup=image_folders_one_corrupt,
         check=no_run_folder),
    Case("--load_size under --image_size", "train_cyclegan", lambda p: [
        "--domain_a", str(p), "--domain_b", str(p), "--image_size", "16", "--load_size", "12",
        "--out_dir", str(p / "run")], 2,
         r"^python -m apps\.train_cyclegan: error: --load_size 12 is smaller than --image_size "
         r"16", check=no_run_folder),
    Case("--channels 3 on the MNIST domains", "train_cyclegan", lambda p: [
        "--channels", "3", "--out_dir", str(p / "run")], 2,
         r"^python -m apps\.train_cyclegan: error: the MNIST domains are grayscale",
         check=no_run_folder),
    Case("fewer images than a batch", "train_dcgan", dcgan("--limit", "5"), 1,
         r"^train_dcgan: Trainer: 5 images is fewer than one batch of 8", check=no_run_folder),
    # -- models, devices, training
    Case("resume with another model size", "train_dcgan", dcgan("--resume", "--width", "8"),
         1, r"^train_dcgan: .*step_00000002\.safetensors does not fit the models being "
            r"trained", setup=old_run, check=unchanged),
    Case("a learning rate that diverges", "train_dcgan", dcgan("--lr", "1e30"), 1,
         r"^train_dcgan: training stopped at step 1: g_loss is nan; no checkpoint was "
         r"written yet\. Try a lower learning rate", check=diverged),
    Case("--device cuda without a GPU", "train_dcgan", dcgan("--device", "cuda"), 1,
         r"^train_dcgan: --device cuda: not available on this machine\. For cuda, install "
         r"CuPy", check=no_run_folder, skip=CUDA),
]


def environment():
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("NEEDLE_BACKEND", None)
    return env


def command(app, argv):
    return [sys.executable, "-m", f"apps.{app}", *argv]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_careless_command_ends_as_it_should(case, tmp_path):
    if case.skip:
        pytest.skip(case.skip)
    if case.setup is not None:
        case.setup(tmp_path)
    result = subprocess.run(command(case.app, case.argv(tmp_path)), cwd=tmp_path,
                            env=environment(), capture_output=True, text=True, timeout=300)
    err = result.stderr.strip()
    assert result.returncode == case.code, err
    if case.code:
        assert len(err.splitlines()) == 1, err
        assert "Traceback" not in err
    assert re.search(case.stderr, err), err
    if case.check is not None:
        case.check(tmp_path)
    leftovers = [str(p) for p in tmp_path.rglob("*") if ".tmp" in p.name]
    assert leftovers == []


def test_debug_shows_the_traceback(tmp_path):
    result = subprocess.run(command("train_dcgan", ["--data_dir", str(tmp_path / "nowhere"),
                                                    "--out_dir", str(tmp_path / "run"),
                                                    "--debug"]),
                            cwd=tmp_path, env=environment(), capture_output=True, text=True)
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert "DataFileError: no MNIST folder" in result.stderr
