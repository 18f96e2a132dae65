"""The pix2pix recipe and app: one step's terms (with and without the adversarial term, the
adaptive weight and its warm-up), the held-out scores (L1, PSNR against hand-computed
values; label_kept and FID wired to the shipped classifier), the input | output | target
picture, the dry run, bit-exact resume on MNIST and on a folder of side-by-side pairs, and the
option errors."""
import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

import needle as ndl
from apps import train_pix2pix
from gan import Adversarial
from gan.loss_balance import AdaptiveWeight
from gan.metrics import DEFAULT_CLASSIFIER_PATH
from gan.models.unet import PairDiscriminator, UnetGenerator
from gan.objectives import NonSaturating
from gan.recipes.pix2pix import PairedScores, Pix2PixRecipe, mean_l1, psnr
from needle import nn
from tests.gan.test_kill_resume import final_state, write_tiny_mnist

pytestmark = pytest.mark.nd_only  # the GAN apps run on the NDArray flavour

MNIST = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "data", "mnist")


def images(rng, n, channels=1, size=16):
    return rng.uniform(-1, 1, (n, channels, size, size)).astype(np.float32)


def tiny_recipe(adversarial=True, balance=None, channels_b=1, seed=0):
    np.random.seed(seed)
    G = UnetGenerator(1, channels_b, width=2, depth=3, dropout_layers=1)
    adv = None
    if adversarial:
        D = PairDiscriminator(1, channels_b, width=2, n_layers=1)
        adv = Adversarial(D, NonSaturating(), ndl.optim.Adam(D.parameters(), lr=1e-3))
    rng = np.random.RandomState(seed + 1)
    return Pix2PixRecipe(G, ndl.optim.Adam(G.parameters(), lr=1e-3), images(rng, 3),
                         images(rng, 3, channels_b), adversarial=adv, balance=balance,
                         num_samples=2)


def weights(module):
    return {k: v.copy() for k, v in module.state_dict().items()}


def changed(before, module):
    after = module.state_dict()
    return {k for k in before if not np.array_equal(before[k], after[k])}


# ---- one step ----------------------------------------------------------------------------
def test_a_step_updates_g_and_d_on_the_pix2pix_loss():
    recipe = tiny_recipe()
    rng = np.random.RandomState(5)
    batch = images(rng, 4), images(rng, 4)
    G, D = recipe.generator, recipe.adversarial.discriminator
    g_before, d_before = weights(G), weights(D)
    state = np.random.get_state()
    with ndl.no_grad():  # G(A) as the step will make it: the same dropout masks
        fake = G(ndl.Tensor(batch[0], requires_grad=False)).numpy()
    G.load_state_dict(g_before)  # (that forward moved BatchNorm's running statistics)
    np.random.set_state(state)
    figures = recipe.step(batch, 0)
    assert {"l1", "gan_G", "g_loss", "g_grad_norm", "d_loss", "d_real", "d_fake"} <= set(figures)
    assert "adaptive_weight" not in figures
    assert figures["l1"] == pytest.approx(np.abs(fake - batch[1]).mean(), rel=1e-5)
    assert figures["g_loss"] == pytest.approx(figures["gan_G"] + 100 * figures["l1"], rel=1e-5)
    assert changed(g_before, G) and changed(d_before, D)


def test_without_the_adversarial_term_g_trains_on_l1_alone():
    recipe = tiny_recipe(adversarial=False)
    rng = np.random.RandomState(6)
    batch = images(rng, 4), images(rng, 4)
    before = weights(recipe.generator)
    figures = recipe.step(batch, 0)
    assert set(figures) == {"l1", "g_loss", "g_grad_norm"}
    assert figures["g_loss"] == pytest.approx(100 * figures["l1"], rel=1e-6)
    assert changed(before, recipe.generator)
    assert set(recipe.components()) == {"generator", "g_optimizer"}
    with pytest.raises(ValueError, match="an adaptive weight balances the adversarial term"):
        Pix2PixRecipe(recipe.generator, recipe.g_optimizer, recipe.test_A, recipe.test_B,
                      balance=AdaptiveWeight())


def test_the_adaptive_weight_waits_for_its_warm_up_and_d_waits_with_it():
    recipe = tiny_recipe(balance=AdaptiveWeight(base_weight=1.0, warmup_steps=2))
    rng = np.random.RandomState(7)
    D = recipe.adversarial.discriminator
    before = weights(D)
    for step in range(2):
        figures = recipe.step((images(rng, 4), images(rng, 4)), step)
        assert "gan_G" not in figures and "d_loss" not in figures
    assert not changed(before, D)
    figures = recipe.step((images(rng, 4), images(rng, 4)), 2)
    weight = figures["adaptive_weight"]
    assert weight > 0 and weight == recipe.balance.last_weight
    assert figures["g_loss"] == pytest.approx(figures["gan_G"] + 100 * figures["l1"], rel=1e-5)
    assert changed(before, D)


def test_the_picture_is_input_output_target_rows_drawn_without_random_numbers():
    recipe = tiny_recipe(channels_b=3)
    state = np.random.get_state()
    grid = recipe.sample()
    after = np.random.get_state()
    assert after[2] == state[2] and np.array_equal(after[1], state[1])
    assert grid.rows == 3 and grid.row_labels == ["input", "output", "target"]
    assert grid.images.shape == (6, 3, 16, 16)  # the grayscale inputs repeated to RGB
    np.testing.assert_array_equal(grid.images[:2], np.repeat(recipe.test_A, 3, axis=1))
    np.testing.assert_array_equal(grid.images[4:], recipe.test_B)
    assert recipe.generator.training  # its mode restored


# ---- held-out scores ---------------------------------------------------------------------
def test_l1_and_psnr_against_hand_computed_values():
    targets = np.ones((2, 1, 2, 2))
    outputs = np.ones((2, 1, 2, 2))
    outputs[0] = 0            # image 0: off by 1 everywhere on [-1, 1], 0.5 on [0, 1]
    outputs[1, 0, 0, 0] = -1  # image 1: one pixel off by 2 on [-1, 1], 1 on [0, 1]
    # L1 over all 8 values: (4 * 1 + 1 * 2) / 8
    assert mean_l1(outputs, targets) == pytest.approx(6 / 8)
    # PSNR per image on [0, 1]: MSE 0.25 -> 10 log10(4); MSE 1/4 (one value of 1 in 4) too
    assert psnr(outputs, targets) == pytest.approx(10 * np.log10(4))
    outputs[1] = 1  # an exact copy counts as the floor's 100 dB
    assert psnr(outputs, targets) == pytest.approx((10 * np.log10(4) + 100) / 2)
    rng = np.random.RandomState(0)
    a, b = rng.uniform(-1, 1, (3, 2, 4, 4)), rng.uniform(-1, 1, (3, 2, 4, 4))
    mse = [np.mean(((a[i] - b[i]) / 2) ** 2) for i in range(3)]
    assert psnr(a, b) == pytest.approx(np.mean([10 * np.log10(1 / m) for m in mse]))
    assert mean_l1(a, b) == pytest.approx(np.abs(a - b).sum() / a.size)


class Copy(nn.Module):
    """A 'generator' that returns a fixed array's rows in order: its input's count of them."""

    def __init__(self, outputs):
        super().__init__()
        self.outputs, self.used = outputs, 0

    def forward(self, x):
        out = self.outputs[self.used:self.used + x.shape[0]]
        self.used += x.shape[0]
        return ndl.Tensor(out, requires_grad=False)


@pytest.mark.skipif(not (os.path.exists(os.path.join(MNIST, "t10k-images-idx3-ubyte.gz"))
                         and os.path.exists(DEFAULT_CLASSIFIER_PATH)),
                    reason="needs data/mnist and the shipped classifier")
def test_label_kept_and_fid_compare_the_outputs_with_the_targets_in_classifier_space():
    from gan.metrics import feature_statistics, frechet_distance, load_classifier, predict
    from gan.paired import mnist_pairs
    from needle.data import load_mnist

    test = load_mnist(MNIST, train=False)
    _, (A, B, labels) = mnist_pairs(test, test, limit=1, held_out=300)
    classifier = load_classifier()
    scores = PairedScores(A, B, labels=labels, classifier=classifier)
    perfect = scores(Copy(B))
    assert perfect["l1"] == 0 and perfect["psnr"] == pytest.approx(100)
    assert perfect["fid"] == pytest.approx(0, abs=1e-6)
    _, probs = predict(classifier, B)
    assert perfect["label_kept"] == perfect["label_kept_target"] == \
        pytest.approx((probs.argmax(1) == labels).mean())
    assert perfect["label_kept"] > 0.95
    # outputs = the outlines: far from the digits, and scored as such
    outlines = scores(Copy(A))
    assert outlines["l1"] == pytest.approx(mean_l1(A, B))
    features, probs = predict(classifier, A)
    target_features, _ = predict(classifier, B)
    assert outlines["fid"] == pytest.approx(frechet_distance(
        *feature_statistics(target_features), *feature_statistics(features)), rel=1e-9)
    assert outlines["fid"] > 10 * max(perfect["fid"], 1e-3)
    assert outlines["label_kept"] == pytest.approx((probs.argmax(1) == labels).mean())


# ---- the app -----------------------------------------------------------------------------
def tiny_mnist(tmp_path):
    """write_tiny_mnist's 256 digits, also as the test set."""
    folder = write_tiny_mnist(tmp_path / "data")
    for kind in ("images-idx3", "labels-idx1"):
        shutil.copy(os.path.join(folder, f"train-{kind}-ubyte.gz"),
                    os.path.join(folder, f"t10k-{kind}-ubyte.gz"))
    return folder


TINY = ["--batch_size", "4", "--width", "2", "--depth", "2", "--dropout_layers", "1",
        "--d_width", "2", "--n_layers", "1", "--num_samples", "2", "--log_every", "1",
        "--checkpoint_every", "3", "--no_progress", "--epochs", "1"]


def read_metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("objective", ["non-saturating", "rpgan"])
def test_the_dry_run_trains_three_steps_and_writes_the_run_folder(tmp_path, objective):
    run = tmp_path / "dry"  # (RpGAN pairs G's scores with D's on the real targets)
    record = train_pix2pix.main(["--dry_run", "--out_dir", str(run), *TINY, "--objective",
                                 objective])
    assert record["step"] == 3 and "psnr" in record and "fid" not in record
    for name in ("report.html", "run.json", "losses.png", "samples/step_00000003.png",
                 "checkpoints/step_00000003.safetensors"):
        assert (run / name).exists(), name
    with Image.open(run / "samples" / "step_00000003.png") as picture:
        assert picture.text["title"] == "train_pix2pix  step 3  epoch 1"


@pytest.mark.parametrize("extra", [["--adaptive_weight", "--warmup_steps", "2"],
                                   ["--no_adversarial"]], ids=["adaptive", "l1_alone"])
def test_mnist_runs_resume_bit_exactly(tmp_path, extra):
    """Stop after 3 steps, resume to 8 (one epoch of 32 pairs): the checkpoints, the logged
    figures and the epoch-end scores equal an uninterrupted run's."""
    base = ["--data_dir", tiny_mnist(tmp_path), "--limit", "32", "--eval_samples", "60",
            *TINY, *extra]
    straight, split = tmp_path / "straight", tmp_path / "split"
    train_pix2pix.main(base + ["--out_dir", str(straight), "--max_steps", "8"])
    train_pix2pix.main(base + ["--out_dir", str(split), "--max_steps", "3"])
    record = train_pix2pix.main(["--resume", "--out_dir", str(split), "--max_steps", "8",
                                 "--no_progress"])  # every other option from run.json
    expected, got = final_state(straight), final_state(split)
    assert expected.keys() == got.keys()
    for key in expected:
        np.testing.assert_array_equal(expected[key], got[key], err_msg=key)
    assert any("running_mean" in key for key in got)  # G's BatchNorm statistics
    assert any(key.startswith("adversarial.") for key in got) == ("--no_adversarial" not in
                                                                   extra)
    def logged(run):  # the split run also scored its stop at step 3
        return [{k: v for k, v in r.items() if k != "time"} for r in read_metrics(run)
                if r["kind"] == "interval" or r["step"] == 8]
    assert logged(split) == logged(straight)
    assert {"l1", "psnr", "label_kept", "label_kept_target", "fid"} <= set(record)
    weights = [r["adaptive_weight"] for r in read_metrics(split) if "adaptive_weight" in r]
    assert len(weights) == (6 if "--adaptive_weight" in extra else 0)  # steps 3 to 8


def side_by_side(folder, count=7, size=(24, 20)):
    rng = np.random.RandomState(8)
    folder.mkdir()
    for i in range(count):
        a = rng.randint(0, 256, (size[1], size[0], 3), np.uint8)
        Image.fromarray(np.concatenate([a, 255 - a], axis=1)).save(folder / f"{i}.png")
    return str(folder)


def test_a_folder_of_side_by_side_pairs_trains_on_odd_crops_and_resumes_bit_exactly(tmp_path):
    base = ["--paired_dir", side_by_side(tmp_path / "AB"), "--image_size", "17",
            "--hold_out", "2", *TINY, "--checkpoint_every", "1"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    train_pix2pix.main(base + ["--out_dir", str(straight), "--epochs", "2"])
    train_pix2pix.main(base + ["--out_dir", str(split), "--max_steps", "1"])
    record = train_pix2pix.main(["--resume", "--out_dir", str(split), "--epochs", "2",
                                 "--no_progress"])
    assert record["step"] == 2 and {"l1", "psnr"} <= set(record) and "fid" not in record
    expected, got = final_state(straight), final_state(split)
    for key in expected:
        np.testing.assert_array_equal(expected[key], got[key], err_msg=key)
    assert got["generator.encoder.0.modules.0.weight"].shape == (4, 4, 3, 2)  # RGB in
    args = json.loads((split / "run.json").read_text())["args"]
    assert (args["channels_a"], args["channels_b"], args["load_size"]) == (3, 3, 19)
    with Image.open(split / "samples" / "step_00000002.png") as picture:
        assert picture.mode == "RGB"


@pytest.mark.parametrize("argv, message", [
    (["--paired_dir", "x", "--dir_a", "a", "--dir_b", "b"], "give --paired_dir"),
    (["--dir_a", "a"], "give both --dir_a and --dir_b"),
    (["--image_size", "32"], "the MNIST pairs are 28x28"),
    (["--paired_dir", "x", "--image_size", "12"], "smaller than 2^depth = 16"),
    (["--depth", "3", "--dropout_layers", "3"], "--dropout_layers 3: G has 2 decoder layers"),
    (["--no_adversarial", "--adaptive_weight"], "--adaptive_weight balances"),
    (["--warmup_steps", "5"], "--warmup_steps is the warm-up of --adaptive_weight"),
    (["--paired_dir", "x", "--load_size", "20"], "--load_size 20 is smaller than"),
    (["--objective", "wasserstein"], "invalid choice: 'wasserstein'"),
])
def test_option_mistakes_are_one_line_errors_before_anything_is_read(tmp_path, capsys, argv,
                                                                     message):
    with pytest.raises(SystemExit) as stop:
        train_pix2pix.main(["--out_dir", str(tmp_path / "run"), *argv])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and not (tmp_path / "run").exists()


def test_a_broken_folder_is_a_one_line_error_naming_the_option(tmp_path, capsys):
    folder = side_by_side(tmp_path / "AB", count=3)
    Image.fromarray(np.zeros((8, 17), np.uint8)).save(os.path.join(folder, "odd.png"))
    with pytest.raises(SystemExit) as stop:
        train_pix2pix.main(["--paired_dir", folder, "--out_dir", str(tmp_path / "run"),
                            "--image_size", "16", "--hold_out", "1", *TINY])
    assert "--paired_dir: image" in str(stop.value) and "a side-by-side pair" in str(stop.value)
