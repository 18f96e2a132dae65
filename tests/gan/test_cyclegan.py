"""CycleGAN: the models' shapes, one training step, the loss terms against NumPy, the image
pool, bit-exact resume of the app (MNIST and RGB image folders), the MNIST domains, and
the folders' crops and held-out grid images."""
import json
import os

import numpy as np
import pytest
import scipy.ndimage
from PIL import Image

import needle as ndl
from apps import train_cyclegan
from gan import Adversarial
from gan.batches import Unpaired
from gan.cyclegan import CycleGAN
from gan.models import ImagePool
from gan.models.cyclegan import PatchDiscriminator, ResnetGenerator
from gan.objectives import LeastSquares
from tests.support.images import centre_crop_by_hand

TINY = dict(width=4, n_blocks=1)


def tensor(array):
    return ndl.Tensor(np.asarray(array, dtype=np.float32), requires_grad=False)


def images(rng, n=2, size=28):
    return rng.uniform(-1, 1, (n, 1, size, size)).astype(np.float32)


def tiny_cyclegan(seed=0, pool_size=50):
    np.random.seed(seed)
    G, F = ResnetGenerator(1, **TINY), ResnetGenerator(1, **TINY)
    D_A, D_B = PatchDiscriminator(1, width=4), PatchDiscriminator(1, width=4)
    adam = dict(lr=2e-4, beta1=0.5, beta2=0.999)
    adv_A = Adversarial(D_A, LeastSquares(), ndl.optim.Adam(D_A.parameters(), **adam))
    adv_B = Adversarial(D_B, LeastSquares(), ndl.optim.Adam(D_B.parameters(), **adam))
    return CycleGAN(G, F, adv_A, adv_B, ndl.optim.Adam(G.parameters(), **adam),
                    ndl.optim.Adam(F.parameters(), **adam), pool_size=pool_size)


# ---- models ----------------------------------------------------------------------------
def test_resnet_generator_keeps_the_image_shape_at_28x28():
    x = tensor(images(np.random.RandomState(0)))
    for G in (ResnetGenerator(), ResnetGenerator(1, **TINY)):
        y = G(x).numpy()
        assert y.shape == (2, 1, 28, 28)
        assert np.all(np.abs(y) <= 1)  # tanh
    assert [p.shape for p in ResnetGenerator().parameters()][:2] == [(7, 7, 1, 16), (16,)]


def test_patch_discriminator_gives_a_logit_map():
    x = tensor(images(np.random.RandomState(0), n=3))
    assert PatchDiscriminator()(x).shape == (3, 1, 5, 5)
    assert PatchDiscriminator.output_size(28, 2) == 5
    assert PatchDiscriminator(1, width=4, n_layers=3)(x).shape == (3, 1, 1, 1)
    assert PatchDiscriminator.output_size(28, 3) == 1
    assert PatchDiscriminator(1, width=4, n_layers=1)(x).shape == (3, 1, 12, 12)


def test_models_name_themselves_on_bad_input():
    with pytest.raises(ValueError, match="ResnetGenerator"):
        ResnetGenerator(1, **TINY)(tensor(np.zeros((1, 1, 30, 30))))
    with pytest.raises(ValueError, match="PatchDiscriminator"):
        PatchDiscriminator(1, width=4)(tensor(np.zeros((1, 3, 28, 28))))


# ---- losses and the step ---------------------------------------------------------------
def test_generator_loss_terms_match_numpy():
    rng = np.random.RandomState(1)
    model = tiny_cyclegan()
    a, b = images(rng), images(rng)
    total, terms, fake_A, fake_B = model.generator_loss(tensor(a), tensor(b))
    with ndl.no_grad():
        G_a = model.G(tensor(a)).numpy()
        F_b = model.F(tensor(b)).numpy()
        F_G_a = model.F(tensor(G_a)).numpy()
        G_F_b = model.G(tensor(F_b)).numpy()
        D_B = model.adv_B.discriminator(tensor(G_a)).numpy()
        D_A = model.adv_A.discriminator(tensor(F_b)).numpy()
        G_b, F_a = model.G(tensor(b)).numpy(), model.F(tensor(a)).numpy()
    expected = {"gan_G": np.mean((D_B - 1) ** 2) / 2, "gan_F": np.mean((D_A - 1) ** 2) / 2,
                "cycle_A": np.mean(np.abs(F_G_a - a)), "cycle_B": np.mean(np.abs(G_F_b - b)),
                "idt_G": np.mean(np.abs(G_b - b)), "idt_F": np.mean(np.abs(F_a - a))}
    for name, value in expected.items():
        np.testing.assert_allclose(terms[name].numpy(), value, rtol=1e-5, err_msg=name)
    np.testing.assert_allclose(fake_B.numpy(), G_a, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fake_A.numpy(), F_b, rtol=1e-5, atol=1e-6)
    weighted = (expected["gan_G"] + expected["gan_F"]
                + 10 * (expected["cycle_A"] + expected["cycle_B"])
                + 5 * (expected["idt_G"] + expected["idt_F"]))
    np.testing.assert_allclose(total.numpy(), weighted, rtol=1e-5)


def test_identity_weight_zero_drops_the_identity_terms():
    model = tiny_cyclegan()
    model.identity_weight = 0.0
    rng = np.random.RandomState(2)
    _, terms, _, _ = model.generator_loss(tensor(images(rng)), tensor(images(rng)))
    assert set(terms) == {"gan_G", "gan_F", "cycle_A", "cycle_B"}


def test_one_step_updates_both_generators_and_both_discriminators():
    model = tiny_cyclegan()
    models = {"G": model.G, "F": model.F, "D_A": model.adv_A.discriminator,
              "D_B": model.adv_B.discriminator}
    before = {name: [p.numpy().copy() for p in m.parameters()] for name, m in models.items()}
    rng = np.random.RandomState(3)
    figures = model.step(tensor(images(rng)), tensor(images(rng)))
    for name, m in models.items():
        changed = [not np.array_equal(old, p.numpy())
                   for old, p in zip(before[name], m.parameters())]
        assert changed[0], f"{name}: first conv weight did not move"
        # biases right before an InstanceNorm get exactly zero gradient; the rest move
        assert sum(changed) > len(changed) // 2, f"{name}: {changed}"
    expected = {"g_loss", "gan_G", "gan_F", "cycle_A", "cycle_B", "idt_G", "idt_F", "d_loss",
                "d_A_loss", "d_A_real", "d_A_fake", "d_A_grad_norm", "d_B_loss", "d_B_real",
                "d_B_fake", "d_B_grad_norm"}
    assert set(figures) == expected
    assert all(np.isfinite(v) for v in figures.values())
    assert model.pool_A.count == 2 and model.pool_B.count == 2


def test_schedule_decays_linearly_in_the_second_half():
    model = tiny_cyclegan().schedule(4)
    rates = []
    for _ in range(4):
        rates.append(model.learning_rates()["lr_G"])
        model.schedule_step()
    np.testing.assert_allclose(rates, [2e-4, 2e-4, 2e-4, 1e-4])
    assert len({round(v, 12) for v in model.learning_rates().values()}) == 1
    assert model.learning_rates()["lr_D_A"] == 0.0


# ---- the image pool --------------------------------------------------------------------
def test_pool_passes_images_through_while_it_fills_then_mixes():
    np.random.seed(0)
    pool = ImagePool(4)
    first = np.arange(3, dtype=np.float32).reshape(3, 1, 1, 1)
    np.testing.assert_array_equal(pool.query(first), first)  # filling: returned as given
    second = np.arange(10, 13, dtype=np.float32).reshape(3, 1, 1, 1)
    out = pool.query(second)
    assert out[0] == 10 and pool.count == 4  # the 4th slot took it, it passed through
    before = set(pool.images.ravel()) | {11.0, 12.0}
    assert set(out[1:].ravel()) | set(pool.images.ravel()) == before
    swaps = 0
    for step in range(50):  # once full, about half the images come back swapped
        new = np.full((4, 1, 1, 1), 100 + step, dtype=np.float32)
        stored = set(pool.images.ravel())
        out = pool.query(new)
        assert set(out.ravel()) <= stored | {100.0 + step}
        swaps += int(np.sum(out != 100 + step))
        assert pool.images.shape == (4, 1, 1, 1)
    assert 60 < swaps < 140  # binomial(200, 1/2)


def test_pool_of_size_zero_and_state_round_trip():
    batch = np.ones((2, 1, 3, 3), dtype=np.float32)
    np.testing.assert_array_equal(ImagePool(0).query(batch), batch)
    np.random.seed(1)
    pool = ImagePool(3)
    pool.query(np.random.rand(5, 1, 2, 2).astype(np.float32))
    copy = ImagePool(3)
    copy.load_state_dict({k: np.array(v) for k, v in pool.state_dict().items()})
    state = np.random.get_state()
    a = pool.query(np.zeros((3, 1, 2, 2), np.float32))
    np.random.set_state(state)
    b = copy.query(np.zeros((3, 1, 2, 2), np.float32))
    np.testing.assert_array_equal(a, b)
    empty = ImagePool(3)
    empty.load_state_dict(ImagePool(3).state_dict())
    assert empty.images is None and empty.count == 0


# ---- the app ---------------------------------------------------------------------------
def tiny_args(out_dir, *extra):
    return ["--dry_run", "--out_dir", str(out_dir), "--no_progress", "--limit", "4",
            "--batch_size", "2", "--epochs", "3", "--width", "4", "--n_blocks", "1",
            "--d_width", "4", "--pool_size", "2", "--num_samples", "2", "--log_every", "1",
            "--checkpoint_every", "100", *extra]


def read_metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_resume_is_bit_exact(tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train_cyclegan.main(tiny_args(straight, "--max_steps", "4"))
    train_cyclegan.main(tiny_args(resumed, "--max_steps", "2"))
    train_cyclegan.main(tiny_args(resumed, "--max_steps", "4", "--resume"))
    a = ndl.load(str(straight / "checkpoints" / "step_00000004.safetensors"))
    b = ndl.load(str(resumed / "checkpoints" / "step_00000004.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    prefixes = {key.split(".")[0] for key in a}
    assert {"G", "F", "adv_A", "adv_B", "opt_G", "opt_F", "pool_A", "pool_B",
            "lr_schedule_G", "rng", "order_A", "order_B"} <= prefixes
    # the schedule spans the run's 4 steps: 2e-4 for steps 1-3, decaying from step 3 on
    # (2e-4 * (4 - 3) / (4 - 2) for step 4), 0 once it is done
    assert a["opt_G.lr"] == 0.0
    rates = [r["lr_G"] for r in read_metrics(straight)]
    assert rates == pytest.approx([2e-4, 2e-4, 2e-4, 1e-4])
    records, expected = read_metrics(resumed), read_metrics(straight)
    assert [r["step"] for r in records] == [r["step"] for r in expected] == [1, 2, 3, 4]
    for got, want in zip(records, expected):
        assert got["g_loss"] == want["g_loss"] and got["d_loss"] == want["d_loss"]
    for name in ("losses.png", "run.json", "samples/step_00000004.png"):
        assert (resumed / name).exists(), name
    with Image.open(resumed / "samples" / "step_00000004.png") as grid:  # 6 rows of 2, x2,
        assert grid.size[0] > 2 * (2 * 30 + 2) and grid.size[1] > 2 * (6 * 30 + 2)  # titled
        assert grid.size[1] < 2 * (7 * 30 + 2)
        assert grid.text["title"] == "train_cyclegan  step 4  epoch 2"
    assert json.loads((resumed / "run.json").read_text())["app"] == "train_cyclegan"


def test_thicken_is_a_3x3_grey_dilation():
    rng = np.random.RandomState(0)
    x = rng.uniform(-1, 1, (3, 1, 9, 7)).astype(np.float32)
    expected = scipy.ndimage.grey_dilation(x, size=(1, 1, 3, 3), mode="constant", cval=-1)
    np.testing.assert_array_equal(train_cyclegan.thicken(x), expected)
    dot = -np.ones((1, 1, 5, 5), np.float32)
    dot[0, 0, 2, 2] = 1
    assert (train_cyclegan.thicken(dot) == 1).sum() == 9


@pytest.mark.skipif(not os.path.exists(os.path.join(
    train_cyclegan.build_parser().get_default("data_dir"), "train-images-idx3-ubyte.gz")),
    reason="needs data/mnist")
def test_mnist_domains_come_from_disjoint_halves():
    args = train_cyclegan.build_parser().parse_args(["--limit", "50", "--eval_samples", "20"])
    (A, B), (test_A, labels_A), (test_B, labels_B) = train_cyclegan.mnist_domains(args)
    assert A.shape == B.shape == (50, 1, 28, 28) and A.dtype == np.float32
    assert test_A.shape == test_B.shape == (20, 1, 28, 28) and len(labels_A) == 20
    assert A.min() == -1 and A.max() == 1
    # thick strokes: clearly more ink in B than in A
    assert (B > 0).mean() > 1.5 * (A > 0).mean()
    ink = lambda x: (x > 0).reshape(len(x), -1)  # noqa: E731
    assert not any((ink(train_cyclegan.thicken(A)) == ink(b)).all() for b in B[:10])


def write_image(path, array, mode="L"):
    Image.fromarray(array, mode=mode).save(path)


def colour_folders(tmp_path):
    """Two folders of six 24x20 images: A all RGB; B RGB but one grayscale file."""
    rng = np.random.RandomState(0)
    for domain in ("a", "b"):
        (tmp_path / domain).mkdir()
        for i in range(6):
            write_image(tmp_path / domain / f"{i}.png",
                        rng.randint(0, 256, (20, 24, 3), np.uint8), mode="RGB")
    write_image(tmp_path / "b" / "3.png", rng.randint(0, 256, (20, 24), np.uint8))
    return tmp_path / "a", tmp_path / "b"


def folder_args(a, b, out, *extra):
    return ["--domain_a", str(a), "--domain_b", str(b), "--image_size", "16",
            "--num_samples", "2", "--out_dir", str(out), "--no_progress", "--batch_size", "2",
            "--width", "4", "--n_blocks", "1", "--d_width", "4", "--pool_size", "2",
            "--log_every", "1", "--checkpoint_every", "100", "--epochs", "3", *extra]


def test_an_rgb_folder_run_trains_on_crops_resumes_bit_for_bit_and_shows_held_out_images(
        tmp_path, monkeypatch):
    recipes, sources = [], []

    class Recording(train_cyclegan.CycleGANRecipe):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            recipes.append(self)

    def unpaired(*args, **kwargs):
        sources.append(Unpaired(*args, **kwargs))
        return sources[-1]

    monkeypatch.setattr(train_cyclegan, "CycleGANRecipe", Recording)
    monkeypatch.setattr(train_cyclegan, "Unpaired", unpaired)
    a, b = colour_folders(tmp_path)
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train_cyclegan.main(folder_args(a, b, straight, "--max_steps", "4"))
    train_cyclegan.main(folder_args(a, b, resumed, "--max_steps", "2"))
    train_cyclegan.main(["--resume", "--out_dir", str(resumed), "--max_steps", "4",
                         "--no_progress"])  # the folders, channels and sizes from run.json
    first = ndl.load(str(straight / "checkpoints" / "step_00000004.safetensors"))
    second = ndl.load(str(resumed / "checkpoints" / "step_00000004.safetensors"))
    assert first.keys() == second.keys()
    for key in first:
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)
    assert [r["g_loss"] for r in read_metrics(resumed)] == \
        [r["g_loss"] for r in read_metrics(straight)]
    # the models take RGB (B's one grayscale file repeats its band), and run.json says so
    assert first["G.net.modules.0.weight"].shape == (7, 7, 3, 4)
    assert first["adv_A.discriminator.net.modules.0.weight"].shape[2] == 3
    args = json.loads((resumed / "run.json").read_text())["args"]
    assert (args["channels"], args["load_size"]) == (3, 18)  # round(16 * 286 / 256)
    # 6 images per folder, 2 held out (the first and last names), 4 trained on
    for source in sources:
        assert source.images_A.names == source.images_B.names == [f"{i}.png"
                                                                  for i in range(1, 5)]
        batch_A, batch_B = source.batch(0)
        assert batch_A.shape == batch_B.shape == (2, 3, 16, 16)
    # the grid: rows A and B are the held-out images, resized and centre-cropped
    for recipe in recipes:
        grid = recipe.sample()
        assert grid.row_labels[0] == "A" and grid.row_labels[3] == "B"
        for row, folder in ((0, a), (3, b)):
            expected = np.stack([centre_crop_by_hand(folder / f"{i}.png", 16) for i in (0, 5)])
            shown = grid.images[2 * row:2 * row + 2]
            np.testing.assert_allclose(shown, expected, atol=1 / 127.5 + 1e-6)
    with Image.open(resumed / "samples" / "step_00000004.png") as picture:
        assert picture.mode == "RGB"


def test_training_crops_come_from_the_load_size_resize(tmp_path, monkeypatch):
    batches = []
    real_step = train_cyclegan.CycleGANRecipe.step

    def recording(self, batch, step):
        batches.append([x.copy() for x in batch])
        return real_step(self, batch, step)

    monkeypatch.setattr(train_cyclegan.CycleGANRecipe, "step", recording)
    a, b = colour_folders(tmp_path)
    train_cyclegan.main(folder_args(a, b, tmp_path / "run", "--max_steps", "2",
                                    "--load_size", "20", "--channels", "1"))
    assert all(x.shape == (2, 1, 16, 16) for batch in batches for x in batch)
    # every crop (flipped or not) is a 16x16 window of one training image's luma at 20x20
    with Image.open(a / "1.png") as picture:  # 24x20: 24x20 at shorter side 20, centre 20
        luma = np.asarray(picture.resize((24, 20), Image.BICUBIC).convert("L"))[:, 2:22]
    windows = [luma[y:y + 16, x:x + 16] for y in range(5) for x in range(5)]
    windows += [w[:, ::-1] for w in windows]
    crops = [np.rint((x[0] + 1) * 127.5) for batch in batches for x in batch[0]]
    found = [any(np.abs(c - w).max() <= 1 for w in windows) for c in crops]
    assert len(crops) == 4 and sum(found) == 1  # one epoch: each training image once


def test_one_domain_folder_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        train_cyclegan.main(["--domain_a", str(tmp_path), "--out_dir", str(tmp_path / "run")])
    assert stop.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("python -m apps.train_cyclegan: error: give both --domain_a and "
                            "--domain_b") and "\n" not in error
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(not os.path.exists(os.path.join(
    train_cyclegan.build_parser().get_default("data_dir"), "t10k-images-idx3-ubyte.gz")),
    reason="needs data/mnist")
def test_label_kept_is_logged_at_epoch_end(tmp_path, monkeypatch):
    from gan import metrics
    from gan.classifier import MNISTClassifier

    # an untrained classifier stands in for the shipped weights: the wiring is under test
    monkeypatch.setattr(metrics, "load_classifier",
                        lambda device=None: MNISTClassifier(width=2, feature_dim=8).eval())
    out = tmp_path / "run"
    record = train_cyclegan.main(
        ["--out_dir", str(out), "--no_progress", "--limit", "4", "--batch_size", "2",
         "--epochs", "1", "--width", "4", "--n_blocks", "1", "--d_width", "4",
         "--num_samples", "2", "--eval_samples", "10"])
    scores = [r for r in read_metrics(out) if "label_kept_G" in r]
    assert len(scores) == 1 and scores[0]["step"] == 2
    for key in ("label_kept_G", "label_kept_F", "label_kept_real_A", "label_kept_real_B"):
        assert 0 <= scores[0][key] <= 1 and record[key] == scores[0][key]
    assert json.loads((out / "run.json").read_text())["label_kept"] is True
