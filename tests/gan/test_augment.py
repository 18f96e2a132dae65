"""DiffAugment and AdaptiveAugment: forwards against NumPy given the same draws from NumPy's
global RNG, first and second derivatives against numeric ones and NumPy adjoints, the
paper's constants seen in the outputs, and ADA's p controller with its state."""
import numpy as np
import pytest

import needle as ndl
from gan.augment import (AdaptiveAugment, DiffAugment, brightness, contrast, cutout,
                         saturation, translate)
from gan.errors import GANSetupError
from needle.gradcheck import gradcheck, gradgradcheck


def images(shape, seed=0, dtype="float64", device=None, requires_grad=False):
    return ndl.Tensor(np.random.default_rng(seed).uniform(-1, 1, shape), dtype=dtype,
                      device=device, requires_grad=requires_grad)


# ---- an independent NumPy DiffAugment, written from the paper's definitions -----------------
def np_translate(x, rows, cols):
    """Zero-pad, then slice each image: out[n, :, i, j] = x[n, :, i + rows[n], j + cols[n]]."""
    pad = int(max(np.max(np.abs(rows)), np.max(np.abs(cols)), 0))
    padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    height, width = x.shape[2:]
    return np.stack([padded[n, :, pad + t:pad + t + height, pad + u:pad + u + width]
                     for n, (t, u) in enumerate(zip(rows, cols))])


def np_cutout(x, top, left, height, width):
    out = x.copy()
    for n in range(len(x)):
        rows = slice(max(top[n], 0), max(top[n] + height, 0))
        out[n, :, rows, max(left[n], 0):max(left[n] + width, 0)] = 0
    return out


def np_diffaugment(x, transforms, p):
    """Draw in the documented order; apply each transform to all, keep it where gated."""
    n, channels, height, width = x.shape
    out = x.copy()
    for name in transforms:
        gate = (np.random.random_sample(n) < p)[:, None, None, None]
        if name == "brightness":
            done = out + (np.random.random_sample(n) - 0.5)[:, None, None, None]
        elif name == "saturation":
            mean = out.mean(axis=1, keepdims=True)
            done = (out - mean) * (np.random.random_sample(n) * 2)[:, None, None, None] + mean
        elif name == "contrast":
            mean = out.mean(axis=(1, 2, 3), keepdims=True)
            done = (out - mean) * (np.random.random_sample(n) + 0.5)[:, None, None, None] + mean
        elif name == "translation":
            reach_h, reach_w = int(height / 8 + 0.5), int(width / 8 + 0.5)
            rows = np.random.randint(-reach_h, reach_h + 1, n)
            cols = np.random.randint(-reach_w, reach_w + 1, n)
            done = np_translate(out, rows, cols)
        else:
            size_h, size_w = int(height / 2 + 0.5), int(width / 2 + 0.5)
            centre_rows = np.random.randint(0, height + 1 - size_h % 2, n)
            centre_cols = np.random.randint(0, width + 1 - size_w % 2, n)
            done = np_cutout(out, centre_rows - size_h // 2, centre_cols - size_w // 2,
                             size_h, size_w)
        out = np.where(gate, done, out)
    return out


COLOR = ("brightness", "saturation", "contrast")
POLICIES = {"color": COLOR, "translation": ("translation",), "cutout": ("cutout",),
            "color,translation,cutout": COLOR + ("translation", "cutout")}


@pytest.mark.parametrize("policy", list(POLICIES))
@pytest.mark.parametrize("shape", [(6, 3, 24, 16), (5, 1, 28, 28)])
def test_forward_matches_numpy_given_the_same_draws(policy, shape):
    x = images(shape)
    np.random.seed(11)
    out = DiffAugment(policy)(x).numpy()
    np.random.seed(11)
    expected = np_diffaugment(x.numpy(), POLICIES[policy], p=1.0)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
    assert not np.allclose(out, x.numpy())


def test_forward_on_every_device_in_float32(device):
    x = images((4, 3, 16, 16), seed=3, dtype="float32", device=device)
    np.random.seed(5)
    out = DiffAugment()(x)
    assert out.dtype == "float32" and out.device == device
    np.random.seed(5)
    expected = np_diffaugment(x.numpy().astype(np.float64), POLICIES["color,translation,cutout"],
                              p=1.0)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_each_transform_is_applied_with_probability_p_and_skipped_samples_are_untouched():
    x = images((40, 3, 16, 16), seed=2, dtype="float32")
    np.random.seed(8)
    out = DiffAugment(p=0.3)(x).numpy()
    np.random.seed(8)
    expected = np_diffaugment(x.numpy().astype(np.float64), POLICIES["color,translation,cutout"],
                              p=0.3)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    untouched = np.all(out == x.numpy(), axis=(1, 2, 3))
    # Each sample escapes all five transforms with probability 0.7^5 = 0.17.
    assert 1 <= untouched.sum() <= 20
    np.testing.assert_array_equal(untouched, np.all(expected == x.numpy(), axis=(1, 2, 3)))


def test_p_zero_and_an_empty_policy_are_the_identity_and_draw_nothing():
    x = images((3, 1, 8, 8))
    np.random.seed(1)
    before = np.random.get_state()
    assert DiffAugment(p=0.0)(x) is x
    assert DiffAugment()(x, p=0.0) is x
    assert DiffAugment("")(x) is x
    after = np.random.get_state()
    assert before[2] == after[2] and np.array_equal(before[1], after[1])


def test_the_reference_translation_reach_and_cutout_size_on_mnist():
    """28 x 28: shifts in [-4, 4] (round(28 / 8)), cutout 14 x 14 clipped to the image."""
    n = 3000
    x = np.zeros((n, 1, 28, 28))
    x[:, 0, 14, 14] = 1.0
    np.random.seed(0)
    moved = DiffAugment("translation")(ndl.Tensor(x, dtype="float64")).numpy()[:, 0]
    positions = [np.argwhere(image == 1.0) for image in moved]
    assert all(len(found) == 1 for found in positions)  # one pixel, moved, never blended
    shifts = {tuple(14 - found[0]) for found in positions}
    assert shifts == {(t, u) for t in range(-4, 5) for u in range(-4, 5)}

    np.random.seed(0)
    cut = DiffAugment("cutout")(ndl.Tensor(np.ones((n, 1, 28, 28)), dtype="float64")).numpy()
    zero_rows = (cut[:, 0] == 0).any(axis=2)
    zero_cols = (cut[:, 0] == 0).any(axis=1)
    heights, widths = zero_rows.sum(axis=1), zero_cols.sum(axis=1)
    assert heights.max() == 14 and widths.max() == 14
    assert heights.min() == 7 and widths.min() == 7   # centre on the border: half inside
    assert np.all((cut[:, 0] == 0).sum(axis=(1, 2)) == heights * widths)  # rectangles
    assert zero_rows[:, 0].any() and zero_rows[:, -1].any()


def test_color_ranges():
    """On a constant image, brightness adds b ~ U[-0.5, 0.5); saturation and contrast keep a
    constant image constant."""
    np.random.seed(4)
    out = DiffAugment("color")(ndl.Tensor(np.zeros((500, 3, 4, 4)), dtype="float64")).numpy()
    per_image = out.reshape(500, -1)
    np.testing.assert_allclose(per_image, per_image[:, :1] * np.ones((1, 48)), atol=1e-15)
    assert -0.5 <= per_image.min() < -0.49 and 0.49 < per_image.max() < 0.5


# ---- first derivatives ------------------------------------------------------------------
def transforms_with_parameters(n, height, width):
    rng = np.random.default_rng(9)
    rows, cols = rng.integers(-3, 4, n), rng.integers(-2, 3, n)
    return {
        "brightness": lambda x: brightness(x, rng_values(n, 1)),
        "saturation": lambda x: saturation(x, rng_values(n, 2) + 1),
        "contrast": lambda x: contrast(x, rng_values(n, 3) + 1),
        "translate": lambda x: translate(x, rows, cols),
        "cutout": lambda x: cutout(x, np.array([-2, 3, 5])[:n], np.array([4, -1, 6])[:n],
                                   np.full(n, height // 2), np.full(n, width // 2)),
    }


def rng_values(n, seed):
    return np.random.default_rng(seed).uniform(-0.5, 0.5, n)


@pytest.mark.parametrize("name", ["brightness", "saturation", "contrast", "translate",
                                  "cutout"])
def test_each_transform_passes_first_and_second_order_gradchecks(name, device):
    x = images((3, 2, 8, 6), seed=1, device=device, requires_grad=True)
    transform = transforms_with_parameters(3, 8, 6)[name]
    assert gradcheck(transform, x, name=name)
    # The transforms are linear: the second derivative that a penalty sees is that of a
    # nonlinearity after them, J^T diag(f'') J.
    assert gradgradcheck(lambda x: ndl.tanh(transform(x)) * transform(x), x, name=name)


def test_translation_gradient_is_the_opposite_translation():
    x = ndl.Tensor(np.random.default_rng(0).standard_normal((4, 2, 10, 7)), dtype="float64")
    w = np.random.default_rng(1).standard_normal((4, 2, 10, 7))
    rows, cols = np.array([-3, 0, 2, 1]), np.array([1, -2, 0, 2])
    (gx,) = ndl.grad([ndl.summation(translate(x, rows, cols) * ndl.Tensor(w, dtype="float64"))],
                     [x])
    np.testing.assert_array_equal(gx.numpy(), np_translate(w, -rows, -cols))
    np.testing.assert_array_equal(translate(x, rows, cols).numpy(),
                                  np_translate(x.numpy(), rows, cols))


def test_contrast_and_cutout_gradients_against_their_numpy_adjoints():
    x = ndl.Tensor(np.random.default_rng(0).standard_normal((3, 2, 6, 6)), dtype="float64")
    w = np.random.default_rng(1).standard_normal((3, 2, 6, 6))
    factor = np.array([0.6, 1.0, 1.4])
    (gx,) = ndl.grad([ndl.summation(contrast(x, factor) * ndl.Tensor(w, dtype="float64"))], [x])
    c = factor[:, None, None, None]
    # out = c x + (1 - c) mean(x), so d<w, out>/dx = c w + (1 - c) mean(w).
    np.testing.assert_allclose(gx.numpy(), c * w + (1 - c) * w.mean(axis=(1, 2, 3),
                                                                     keepdims=True),
                               rtol=1e-12)
    top, left, size = np.array([-1, 2, 4]), np.array([3, 0, -2]), np.full(3, 3)
    (gx,) = ndl.grad([ndl.summation(cutout(x, top, left, size, size)
                                    * ndl.Tensor(w, dtype="float64"))], [x])
    np.testing.assert_array_equal(gx.numpy(), np_cutout(w, top, left, 3, 3))


# ---- the whole augmentation, as a penalty differentiates it ----------------------------
def reseeded(fn, seed=21):
    """fn with NumPy's RNG seeded on every call, so each evaluation draws the same T."""
    def call(*inputs):
        np.random.seed(seed)
        return fn(*inputs)
    return call


def test_diffaugment_is_twice_differentiable_under_an_r1_like_penalty():
    """||d sum(w * tanh(T(x))) / dx||^2, R1's shape, checked numerically in x and in w."""
    augment = DiffAugment()
    x = images((3, 3, 8, 8), seed=4, requires_grad=True)
    w = ndl.Tensor(np.random.default_rng(5).standard_normal((3, 3, 8, 8)), dtype="float64")

    def penalty(x, w):
        score = ndl.summation(ndl.tanh(augment(x)) * w)
        (gx,) = ndl.grad([score], [x], create_graph=True)
        return ndl.summation(gx * gx)

    assert gradcheck(reseeded(penalty), x, w, name="r1 through DiffAugment")
    assert gradgradcheck(reseeded(lambda x: ndl.tanh(augment(x)) ** 2), x, name="DiffAugment")


# ---- validation -------------------------------------------------------------------------
def test_bad_settings_and_inputs_are_one_line_errors():
    with pytest.raises(GANSetupError, match="unknown policy 'zoom'"):
        DiffAugment("color,zoom")
    with pytest.raises(GANSetupError, match=r"p must be a number in \[0, 1\], got 1.5"):
        DiffAugment(p=1.5)
    with pytest.raises(GANSetupError, match=r"p must be a number in \[0, 1\], got -0.1"):
        DiffAugment()(images((2, 1, 4, 4)), p=-0.1)
    with pytest.raises(GANSetupError, match=r"expected images of shape \(N, C, H, W\), "
                                            r"got \(2, 4, 4\)"):
        DiffAugment()(images((2, 4, 4)))
    with pytest.raises(GANSetupError, match="interval must be an integer >= 1"):
        AdaptiveAugment(interval=0)
    with pytest.raises(GANSetupError, match="speed_images must be > 0"):
        AdaptiveAugment(speed_images=0)
    with pytest.raises(GANSetupError, match=r"target must be in \[-1, 1\]"):
        AdaptiveAugment(target=2)
    with pytest.raises(ValueError, match="contain NaN or Inf"):
        AdaptiveAugment().observe(np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="one score per image"):
        AdaptiveAugment().observe(np.zeros(0))


# ---- AdaptiveAugment --------------------------------------------------------------------
def test_p_rises_by_the_ada_step_when_d_is_overconfident_on_reals():
    ada = AdaptiveAugment(interval=4, speed_images=1000, target=0.6)
    scores = np.array([2.0, 1.0, 0.5, 3.0, 0.1, 1.0, 2.0, -1.0])  # r_t = 0.75 > 0.6
    for _ in range(3):
        ada.observe(scores)
        assert ada.p == 0.0  # adjusted only every `interval` D steps
    ada.observe(ndl.Tensor(scores.reshape(8, 1)))  # Tensors too; one row per image
    assert ada.p == 4 * 8 / 1000


def test_patch_scores_count_images_by_rows_and_signs_by_elements():
    """A PatchGAN D gives (N, 1, h, w) scores: r_t averages every element's sign, and the
    step counts N images."""
    ada = AdaptiveAugment(interval=1, speed_images=100, target=0.6)
    patches = np.ones((4, 1, 3, 3))
    patches[:, :, 0, :2] = -1.0  # r_t = (7 - 2) / 9 = 0.56 < 0.6
    ada.observe(patches)
    assert ada.p == 0.0
    patches[:, :, 0, 1] = 1.0    # r_t = (8 - 1) / 9 = 0.78 > 0.6
    ada.observe(patches)
    assert ada.p == 4 / 100


def test_p_falls_below_target_holds_at_target_and_stays_in_unit_interval():
    ada = AdaptiveAugment(interval=2, speed_images=100, target=0.6, p=0.5)
    below = np.array([1.0, -1.0, 1.0, -1.0, 0.0])  # r_t = 0 < 0.6
    ada.observe(below)
    ada.observe(below)
    assert ada.p == 0.5 - 2 * 5 / 100
    at_target = np.array([1.0] * 8 + [-1.0] * 2)  # r_t = 0.6 exactly: sign 0
    ada.observe(at_target)
    ada.observe(at_target)
    assert ada.p == 0.5 - 2 * 5 / 100
    for _ in range(40):
        ada.observe(below)
    assert ada.p == 0.0
    for _ in range(40):
        ada.observe(np.ones(5))
    assert ada.p == 1.0


def test_the_default_speed_lets_p_cross_the_unit_interval_within_an_mnist_epoch():
    ada = AdaptiveAugment()
    for step in range(937):
        ada.observe(np.ones(64))
        if ada.p == 1.0:
            break
    assert 300 <= step + 1 <= 320   # a third of an epoch
    ada_paper = AdaptiveAugment(speed_images=500_000)
    for _ in range(937):
        ada_paper.observe(np.ones(64))
    assert ada_paper.p < 0.12       # the paper's speed barely moves p in an epoch


def test_call_augments_with_the_current_p():
    x = images((6, 3, 8, 8))
    ada = AdaptiveAugment(DiffAugment("color,translation"), interval=1, speed_images=6)
    assert ada(x) is x
    ada.observe(np.ones(3))  # p = 0.5
    np.random.seed(2)
    out = ada(x).numpy()
    np.random.seed(2)
    np.testing.assert_array_equal(out, DiffAugment("color,translation")(x, p=0.5).numpy())


def test_state_dict_round_trip_through_a_checkpoint_file_resumes_bit_for_bit(tmp_path):
    rng = np.random.default_rng(0)
    batches = [rng.standard_normal(16) + 1.0 for _ in range(30)]
    ada = AdaptiveAugment(interval=4, speed_images=300)
    for scores in batches[:10]:
        ada.observe(scores)
    assert ada.state_dict()["steps"] == 2 and ada.p > 0  # mid-interval, p moved
    ndl.save(ada.state_dict(), tmp_path / "ada.safetensors")
    resumed = AdaptiveAugment(interval=4, speed_images=300)
    resumed.load_state_dict(ndl.load(tmp_path / "ada.safetensors"))
    assert resumed.state_dict() == ada.state_dict()
    for scores in batches[10:]:
        ada.observe(scores)
        resumed.observe(scores)
    assert resumed.state_dict() == ada.state_dict()
    assert isinstance(resumed.p, float)


def test_load_state_dict_rejects_foreign_state():
    ada = AdaptiveAugment()
    state = ada.state_dict()
    with pytest.raises(ValueError, match="expected keys"):
        ada.load_state_dict({"p": 0.5})
    with pytest.raises(GANSetupError, match=r"p must be a number in \[0, 1\], got 1.5"):
        ada.load_state_dict(dict(state, p=1.5))
    with pytest.raises(ValueError, match="outside"):
        ada.load_state_dict(dict(state, steps=4))
