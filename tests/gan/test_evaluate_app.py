"""apps.evaluate scores every kind of generator run (DCGAN, cGAN per digit, WGAN-GP on MNIST
and on 2-D points), writes RUN/eval.json atomically, and answers a user's mistakes in one
line."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from apps import evaluate
from apps.common import DEFAULT_DATA_DIR
from gan import metrics
from gan.checkpoint import save_checkpoint
from gan.mixtures import ring
from gan.models.conditional import ConditionalGenerator
from gan.models.cyclegan import ResnetGenerator
from gan.models.dcgan import Generator
from gan.models.mlp import MLPGenerator
from needle.fileio import TEMP_NAME

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HAVE_MNIST = os.path.exists(os.path.join(DEFAULT_DATA_DIR, "t10k-images-idx3-ubyte.gz"))
needs_mnist = pytest.mark.skipif(not (HAVE_MNIST and os.path.exists(
    metrics.DEFAULT_CLASSIFIER_PATH)), reason="needs data/mnist and the shipped classifier")
FAST = ["--num_samples", "200", "--real_count", "1000"]


def make_run(folder, app, args, components, step=5):
    np.random.seed(0)
    save_checkpoint(str(folder / "checkpoints"), step, components, info={"args": args})
    with open(folder / "run.json", "w") as f:
        json.dump({"app": app, "args": args}, f)
    return folder


def run_app(module, *argv):
    return subprocess.run([sys.executable, "-m", module, *argv], cwd=ROOT, capture_output=True,
                          text=True, timeout=600,
                          env=dict(os.environ, PYTHONPATH=ROOT, PYTHONWARNINGS="error"))


def read_eval(folder):
    assert not [n for n in os.listdir(folder) if TEMP_NAME.match(n)]
    with open(folder / "eval.json") as f:
        return json.load(f)


@needs_mnist
def test_a_cgan_run_is_scored_overall_and_per_digit(tmp_path, capsys):
    args = {"num_classes": 10, "latent_dim": 8, "width": 4, "image_size": 28}
    np.random.seed(0)
    run = make_run(tmp_path, "train_cgan", args, {"generator": ConditionalGenerator(
        10, 8, width=4)})
    scores = evaluate.main(["--checkpoint", str(run)] + FAST)
    assert scores["app"] == "train_cgan" and scores["step"] == 5
    assert 0 <= scores["label_kept"] <= 1
    assert [row["label"] for row in scores["per_class"]] == list(range(10))
    assert all(row["num_samples"] == 20 for row in scores["per_class"])
    assert read_eval(run) == json.loads(json.dumps(scores))
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"evaluate: train_cgan run {run}, step 5: FID ")
    assert "label kept" in out[0] and len(out) == 13 and out[2].startswith("  digit 0: FID ")
    assert out[1].startswith("  KID ") and "coverage" in out[1] and "Inception Score" in out[1]
    assert out[-1] == f"evaluate: scores in {run / 'eval.json'}"


@needs_mnist
def test_a_wgan_gp_mnist_run_is_scored_like_a_dcgan(tmp_path):
    args = {"data": "mnist", "latent_dim": 8, "width": 4}
    np.random.seed(0)
    generator = Generator(8, width=4)
    run = make_run(tmp_path, "train_wgan_gp", args, {"generator": generator})
    scores = evaluate.main(["--checkpoint", str(run), "--json"] + FAST)
    assert scores["app"] == "train_wgan_gp" and "per_class" not in scores
    # The same generator scored directly gives the same numbers.
    direct = metrics.Evaluator.from_mnist(DEFAULT_DATA_DIR, 1000, num_samples=200)(
        generator.eval())
    assert scores["fid"] == pytest.approx(direct["fid"], rel=1e-6)
    assert scores["class_histogram"] == direct["class_histogram"]
    assert read_eval(run)["fid"] == scores["fid"]


@needs_mnist
def test_real_digits_get_every_score(capsys):
    scores = evaluate.main(["--real", "--json"] + FAST)
    keys = ["fid", "confident", "digits_covered", "kl_to_uniform", "class_histogram",
            "num_samples", "kid", "kid_std", "precision", "recall", "density", "coverage",
            "inception_score", "inception_score_std", "label_kept", "per_class"]
    assert set(keys) <= set(scores) and scores["source"] == "mnist-train"
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(scores))
    # Measured: precision 0.82, coverage 0.915, Inception Score 7.4 (10 splits of 20 samples,
    # whose digit shares are far from even; 9.4 with the default 2000 samples).
    assert scores["precision"] > 0.7 and scores["coverage"] > 0.85
    assert scores["inception_score"] > 6


def test_a_wgan_gp_points_run_gets_its_mode_metrics(tmp_path):
    args = {"data": "ring8", "latent_dim": 2, "hidden": 8, "layers": 2}
    np.random.seed(0)
    generator = MLPGenerator(2, 2, hidden=8, layers=2)
    run = make_run(tmp_path, "train_wgan_gp", args, {"generator": generator})
    scores = evaluate.main(["--checkpoint", str(run), "--num_samples", "500", "--seed", "3"])
    z = np.random.RandomState(3).randn(500, 2).astype(np.float32)
    import needle as ndl
    expected = ring().mode_metrics(generator.eval()(ndl.Tensor(z)).numpy())
    assert {k: scores[k] for k in expected} == expected
    assert scores["n_modes"] == 8 and read_eval(run)["modes_covered"] == expected["modes_covered"]


@needs_mnist
@pytest.mark.parametrize("app, argv", [("train_dcgan", []), ("train_cgan", []),
                                       ("train_wgan_gp", ["--data", "mnist"]),
                                       ("train_wgan_gp", ["--data", "ring8"])])
def test_evaluate_scores_what_the_training_apps_write(tmp_path, app, argv):
    out_dir = tmp_path / "run"
    trained = run_app(f"apps.{app}", "--dry_run", "--no_progress", "--out_dir", str(out_dir),
                      *argv)
    assert trained.returncode == 0, trained.stderr[-2000:]
    result = run_app("apps.evaluate", "--checkpoint", str(out_dir), *FAST)
    assert result.returncode == 0, result.stderr[-2000:]
    scores = read_eval(out_dir)
    assert scores["app"] == app
    key = "modes_covered" if "ring8" in argv else "fid"
    assert key in scores and (("per_class" in scores) == (app == "train_cgan"))
    assert result.stdout.startswith(f"evaluate: {app} run {out_dir}, step ")


@pytest.mark.parametrize("setup, pattern", [
    ("missing", r"evaluate: \S*nowhere is neither a run folder nor a checkpoint file"),
    ("empty", r"evaluate: no intact checkpoint in \S*checkpoints; train first"),
    ("cyclegan", r"evaluate: \S+ is a train_cyclegan run, which has no generator of noise"),
    ("foreign", r"evaluate: \S+step_00000005\.safetensors holds no 'generator\.' weights"),
])
def test_mistakes_are_one_line(tmp_path, setup, pattern):
    import re
    folder = tmp_path / "run"
    if setup == "missing":
        folder = tmp_path / "nowhere"
    elif setup == "empty":
        (folder / "checkpoints").mkdir(parents=True)
    elif setup == "cyclegan":
        folder.mkdir()
        make_run(folder, "train_cyclegan", {}, {"G": ResnetGenerator(1, 4, 1)})
    else:
        folder.mkdir()
        make_run(folder, "train_dcgan", {}, {"other": Generator(8, width=4)})
    before = sorted(os.listdir(folder)) if folder.exists() else None
    result = run_app("apps.evaluate", "--checkpoint", str(folder), *FAST)
    assert result.returncode == 1 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and re.fullmatch(pattern + ".*", lines[0]), result.stderr
    assert (sorted(os.listdir(folder)) if folder.exists() else None) == before


def test_bad_options_and_missing_data_are_one_line(tmp_path):
    result = run_app("apps.evaluate", "--real", "--num_samples", "0")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("python -m apps.evaluate: error: argument --num_samples")
    result = run_app("apps.evaluate", "--real", "--data_dir", str(tmp_path / "nowhere"))
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith(f"evaluate: no MNIST folder '{tmp_path / 'nowhere'}'")
