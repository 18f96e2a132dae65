"""The evaluation classifier is protected: apps.train_classifier writes to a run folder
unless told a file by name, never replaces a classifier the evaluator accepts with one it
would refuse, and gan.metrics.load_classifier refuses a classifier whose recorded test
accuracy is missing or below 98%, naming the file and the figure."""
import hashlib
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import needle as ndl
from apps import train_classifier
from apps.common import DEFAULT_DATA_DIR
from gan import metrics
from gan.classifier import MNISTClassifier
from gan.metrics import UnfitClassifierError, load_classifier, predict, recorded_accuracy

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHIPPED = metrics.DEFAULT_CLASSIFIER_PATH
HAVE_MNIST = os.path.exists(os.path.join(DEFAULT_DATA_DIR, "t10k-images-idx3-ubyte.gz"))


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def small_classifier(path, **metadata):
    np.random.seed(0)
    model = MNISTClassifier(width=4)
    ndl.save(model.state_dict(), str(path), metadata=dict({"width": "4"}, **metadata))
    return path


def run_app(module, *argv, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", module, *argv], cwd=cwd, capture_output=True,
                          text=True, timeout=600,
                          env=dict(os.environ, PYTHONPATH=ROOT, PYTHONWARNINGS="error"))


# ---- the evaluator's check -----------------------------------------------------------------
def test_shipped_classifier_records_its_accuracy():
    assert recorded_accuracy(SHIPPED) == pytest.approx(0.9927)
    assert not load_classifier().training


@pytest.mark.skipif(not HAVE_MNIST, reason="needs data/mnist")
def test_recorded_accuracy_is_the_measured_one():
    test = ndl.data.load_mnist(DEFAULT_DATA_DIR, train=False)
    _, probs = predict(load_classifier(), test.images.reshape(-1, 1, 28, 28) * 2 - 1)
    measured = (probs.argmax(axis=1) == test.labels).mean()
    assert f"{measured:.4f}" == ndl.serialization.load_metadata(SHIPPED)["test_accuracy"]


def test_low_accuracy_is_refused_naming_file_and_figure(tmp_path):
    path = small_classifier(tmp_path / "weak.safetensors", test_accuracy="0.9312")
    with pytest.raises(UnfitClassifierError) as caught:
        load_classifier(str(path))
    message = str(caught.value)
    assert str(path) in message and "93.12%" in message and "98%" in message
    assert "\n" not in message
    assert load_classifier(str(path), min_accuracy=0.9).feature_dim == 128


def test_missing_accuracy_is_refused(tmp_path):
    path = small_classifier(tmp_path / "unknown.safetensors")
    with pytest.raises(UnfitClassifierError, match=r"unknown\.safetensors records no test "
                                                   r"accuracy \(metadata 'test_accuracy'\)"):
        load_classifier(str(path))


def test_unreadable_accuracy_is_refused(tmp_path):
    path = small_classifier(tmp_path / "odd.safetensors", test_accuracy="high")
    with pytest.raises(UnfitClassifierError, match=r"odd\.safetensors records test_accuracy "
                                                   r"'high', not a number"):
        load_classifier(str(path))


@pytest.mark.skipif(not HAVE_MNIST, reason="needs data/mnist")
def test_evaluate_app_refuses_a_weak_classifier_in_one_line(tmp_path):
    path = small_classifier(tmp_path / "weak.safetensors", test_accuracy="0.1500")
    result = run_app("apps.evaluate", "--real", "--classifier", str(path))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("evaluate: ")
    assert str(path) in lines[0] and "15.00%" in lines[0]
    assert result.stdout == ""


# ---- train_classifier's outputs ----------------------------------------------------------
def test_default_output_is_a_run_folder_not_the_shipped_file():
    args = train_classifier.build_parser().parse_args(["--limit", "1000", "--epochs", "1"])
    assert train_classifier._run_weights(args) == os.path.join("runs", "classifier",
                                                               "mnist_classifier.safetensors")
    assert args.out is None


@pytest.mark.skipif(not HAVE_MNIST, reason="needs data/mnist")
def test_a_short_run_leaves_the_shipped_classifier_alone(tmp_path):
    # The careless command from the issue, run from a copy's point of view: cwd tmp_path, so
    # the default run folder lands there; the shipped file must not change.
    before = sha256(SHIPPED)
    result = run_app("apps.train_classifier", "--limit", "1000", "--epochs", "1",
                     "--no_progress", "--data_dir", DEFAULT_DATA_DIR, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    weights = tmp_path / "runs" / "classifier" / "mnist_classifier.safetensors"
    assert weights.exists() and str(weights.relative_to(tmp_path)) in result.stdout
    assert sha256(SHIPPED) == before
    assert recorded_accuracy(str(weights)) < 0.98  # so the evaluator would refuse it
    with pytest.raises(UnfitClassifierError):
        load_classifier(str(weights))


def test_dry_run_without_out_dir_writes_to_a_temporary_folder(tmp_path, capsys):
    result = train_classifier.main(["--dry_run", "--no_progress", "--batch_size", "32",
                                    "--width", "4"])
    try:
        folder = os.path.dirname(result["path"])
        assert os.path.basename(folder).startswith("train_classifier-dry-run-")
        assert result["path"] in capsys.readouterr().out
        assert not os.path.exists(os.path.join("runs", "classifier_dry_run"))
    finally:
        shutil.rmtree(folder)


def test_out_replaces_a_weak_file_atomically(tmp_path):
    out = small_classifier(tmp_path / "clf.safetensors", test_accuracy="0.5")
    result = train_classifier.main(["--dry_run", "--no_progress", "--batch_size", "32",
                                    "--width", "4", "--out", str(out)])
    assert result["path"] == str(out)
    assert ndl.serialization.load_metadata(str(out))["steps"] == "3"
    assert sorted(os.listdir(tmp_path)) == ["clf.safetensors"]  # no temporary file left


def test_a_passing_classifier_is_not_replaced_by_a_failing_one(tmp_path):
    shipped_copy = tmp_path / "mnist_classifier.safetensors"
    shutil.copyfile(SHIPPED, shipped_copy)
    before = sha256(shipped_copy)
    with pytest.raises(SystemExit) as caught:
        train_classifier.main(["--dry_run", "--no_progress", "--batch_size", "32", "--width",
                               "4", "--out", str(shipped_copy), "--out_dir",
                               str(tmp_path / "run")])
    message = str(caught.value.code)
    kept = tmp_path / "run" / "mnist_classifier.safetensors"
    assert message.startswith("train_classifier: test accuracy ") and "\n" not in message
    assert str(shipped_copy) in message and str(kept) in message
    assert sha256(shipped_copy) == before
    assert recorded_accuracy(str(kept)) < 0.98


@pytest.mark.parametrize("argv, pattern", [
    (["--lr", "nan"], r"argument --lr: a learning rate must be a finite number > 0, got nan"),
    (["--epochs", "0"], r"argument --epochs: must be an integer >= 1, got 0"),
    (["--outlier_weight", "-1"], r"argument --outlier_weight/--outlier-weight: must be a "
                                 r"finite number >= 0"),
    (["--limit", "10"], r"--limit 10 leaves fewer training images than one batch "
                        r"\(--batch_size 128\)"),
])
def test_bad_options_are_refused_at_parse_time(argv, pattern):
    result = run_app("apps.train_classifier", *argv)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m apps.train_classifier: error: ")
    assert re.search(pattern, lines[0]), lines[0]


@pytest.mark.parametrize("case, pattern", [
    ("no data", r"train_classifier: no MNIST folder '\S*nowhere' \(--data_dir\)"),
    ("out_dir is a file", r"train_classifier: cannot write the weights to \S+: \S*taken is a "
                          r"file, not a folder"),
    ("out is a folder", r"train_classifier: cannot write the weights to \S+: it is a folder"),
])
def test_mistakes_are_one_line_before_any_training(tmp_path, case, pattern):
    (tmp_path / "taken").write_text("a file")
    argv = {"no data": ["--data_dir", str(tmp_path / "nowhere"), "--out_dir", str(tmp_path)],
            "out_dir is a file": ["--dry_run", "--out_dir", str(tmp_path / "taken")],
            "out is a folder": ["--dry_run", "--out", str(tmp_path)]}[case]
    result = run_app("apps.train_classifier", "--no_progress", *argv)
    assert result.returncode == 1 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and re.fullmatch(pattern + ".*", lines[0]), result.stderr
    assert sorted(os.listdir(tmp_path)) == ["taken"]
