"""Domain-adversarial training: the shifted domain (gan.shifted_mnist) against a pixel-by-pixel
NumPy computation, the paper's schedules, and the recipe's gradients against PyTorch: F gets
the classifier's gradient minus lambda times the domain gradient, D the plain one."""
import math
import types

import numpy as np
import pytest

import needle as ndl
from gan import Adversarial
from gan.errors import GANSetupError
from gan.objectives import Minimax
from gan.recipes.dann import (DANNRecipe, DomainDiscriminator, FeatureExtractor,
                              LabelClassifier, accuracy, dann_batches, lr_factor,
                              reversal_scale, torch_style_linears)
from gan.shifted_mnist import (CROP, enlarge, load_domains, shift_parameters, shift_split,
                               shifted_digits, to_rgb)


def digits(count, seed):
    """Stroke-like digits in [0, 1]: a few bright bars on a dark field, some grey edges."""
    rng = np.random.RandomState(seed)
    images = np.zeros((count, 28, 28), dtype=np.float32)
    for image in images:
        for _ in range(3):
            y, x = rng.randint(2, 20, 2)
            image[y:y + rng.randint(2, 8), x:x + rng.randint(2, 8)] = rng.uniform(0.3, 1)
    return images


# ---- the shifted domain ------------------------------------------------------------------
def bilinear_by_hand(crop, y, x):
    """The 7 x 7 crop at output pixel (y, x) of its 4x enlargement, one pixel at a time."""
    def source(j):
        where = min(max((j + 0.5) / 4 - 0.5, 0.0), 6.0)
        low = int(math.floor(where))
        return low, min(low + 1, 6), where - low
    y0, y1, wy = source(y)
    x0, x1, wx = source(x)
    return ((1 - wy) * ((1 - wx) * crop[y0, x0] + wx * crop[y0, x1])
            + wy * ((1 - wx) * crop[y1, x0] + wx * crop[y1, x1]))


def shifted_by_hand(digit, pool, piece, offset, colours):
    """One shifted image, pixel by pixel, as the module docstring defines it."""
    oy, ox = offset
    crop = pool[piece, oy:oy + 7, ox:ox + 7].astype(np.float64)
    out = np.empty((3, 28, 28))
    for y in range(28):
        for x in range(28):
            t = bilinear_by_hand(crop, y, x)
            for c in range(3):
                background = colours[0][c] * (1 - t) + colours[1][c] * t
                out[c, y, x] = 2 * abs(background - float(digit[y, x])) - 1
    return out


def test_shifted_images_match_a_pixel_by_pixel_computation():
    images, pool = digits(3, 0), digits(5, 1)
    params = shift_parameters(3, 5, seed=7)
    shifted = shifted_digits(images, pool, params)
    assert shifted.shape == (3, 3, 28, 28) and shifted.dtype == np.float32
    for i in range(3):
        expected = shifted_by_hand(images[i], pool, params["pieces"][i], params["offsets"][i],
                                   params["colours"][i])
        np.testing.assert_allclose(shifted[i], expected, atol=1e-5)
    assert -1 <= shifted.min() and shifted.max() <= 1


def test_the_enlargement_is_torchs_bilinear_interpolation():
    torch = pytest.importorskip("torch")
    crops = np.random.RandomState(4).rand(3, 7, 7).astype(np.float32)
    expected = torch.nn.functional.interpolate(torch.tensor(crops)[:, None], scale_factor=4,
                                               mode="bilinear", align_corners=False)
    np.testing.assert_allclose(enlarge(crops), expected[:, 0].numpy(), atol=1e-6)


def test_the_draws_are_the_documented_ones_in_their_order():
    params = shift_parameters(6, 40, seed=3)
    rng = np.random.RandomState(3)
    np.testing.assert_array_equal(params["pieces"], rng.randint(0, 40, 6))
    np.testing.assert_array_equal(params["offsets"], rng.randint(0, 22, (6, 2)))
    np.testing.assert_allclose(params["colours"], rng.uniform(0, 1, (6, 2, 3)), rtol=1e-7)
    assert params["offsets"].max() <= 28 - CROP


def test_a_split_is_deterministic_and_image_i_does_not_depend_on_the_count():
    split = digits(12, 2)
    whole = shift_split(split, seed=5)
    np.testing.assert_array_equal(shift_split(split, seed=5, count=4), whole[:4])
    np.testing.assert_array_equal(shift_split(split, seed=5), whole)
    assert not np.array_equal(shift_split(split, seed=6), whole)
    params = shift_parameters(12, 12, seed=5)
    expected = shifted_by_hand(split[2], split, params["pieces"][2], params["offsets"][2],
                               params["colours"][2])
    np.testing.assert_allclose(whole[2], expected, atol=1e-5)


def test_the_source_is_the_grey_digit_in_three_channels():
    images = digits(2, 3)
    rgb = to_rgb(images.reshape(2, 784))
    assert rgb.shape == (2, 3, 28, 28)
    for c in range(3):
        np.testing.assert_allclose(rgb[:, c], images * 2 - 1)


def test_wrong_digits_are_named_errors():
    with pytest.raises(ValueError, match=r"digits must hold pixel values in \[0, 1\]"):
        shifted_digits(digits(2, 0) * 2 - 1, digits(2, 1), shift_parameters(2, 2, 0))
    with pytest.raises(ValueError, match=r"pool must be MNIST digits \(N, 28, 28\)"):
        shifted_digits(digits(2, 0), np.zeros((2, 32, 32)), shift_parameters(2, 2, 0))
    with pytest.raises(ValueError, match="params hold draws for 3 images, expected 2"):
        shifted_digits(digits(2, 0), digits(2, 1), shift_parameters(3, 2, 0))
    with pytest.raises(ValueError, match="crops outside the pool of 2 digits"):
        shifted_digits(digits(2, 0), digits(2, 1), shift_parameters(2, 9, 0))


def test_load_domains_builds_source_target_and_test_sets():
    train_digits, test_digits = digits(20, 4), digits(10, 5)
    sets = {True: (train_digits, np.arange(20) % 10), False: (test_digits, np.arange(10)[::-1])}

    def load(data_dir, train):
        images, labels = sets[train]
        return types.SimpleNamespace(images=images.reshape(-1, 784), labels=labels)

    domains = load_domains("unused", seed=2, limit=8, test_limit=6, load=load)
    np.testing.assert_array_equal(domains.source_images, to_rgb(train_digits[:8]))
    np.testing.assert_array_equal(domains.source_labels, np.arange(8) % 10)
    np.testing.assert_array_equal(domains.target_images, shift_split(train_digits, 2)[:8])
    np.testing.assert_array_equal(domains.test_source_images, to_rgb(test_digits[:6]))
    np.testing.assert_array_equal(domains.test_target_images, shift_split(test_digits, 3)[:6])
    np.testing.assert_array_equal(domains.test_labels, np.arange(10)[::-1][:6])
    assert domains.source_labels.dtype == np.int64


# ---- the schedules -----------------------------------------------------------------------
@pytest.mark.parametrize("p", [0.0, 0.1, 0.25, 0.5, 1.0])
def test_the_reversal_scale_is_the_papers_schedule(p):
    # 2 / (1 + exp(-10 p)) - 1 is tanh(5 p): 0 at the start, 0.4621 at p = 0.1, ~1 at the end
    assert reversal_scale(p) == pytest.approx(math.tanh(5 * p), abs=1e-12)
    assert lr_factor(p) == pytest.approx((1 + 10 * p) ** -0.75, abs=1e-12)


def test_schedule_values_by_hand():
    assert reversal_scale(0.0) == 0.0
    assert reversal_scale(0.1) == pytest.approx(0.46211715726, abs=1e-10)
    assert reversal_scale(1.0) == pytest.approx(0.99990920426, abs=1e-10)
    assert lr_factor(1.0) == pytest.approx(0.165560026, abs=1e-8)  # 11 ** -0.75


# ---- the networks --------------------------------------------------------------------------
def test_the_feature_extractor_is_the_papers_shape():
    F = FeatureExtractor(3, 4)
    assert F(ndl.Tensor(np.zeros((2, 3, 28, 28), np.float32))).shape == (2, F.feature_dim)
    assert F.feature_dim == 6 * 4 * 4


def torch_bound(fan_in):
    """PyTorch's nn.Linear bound for weight and bias: kaiming_uniform(a=sqrt(5)) is
    gain * sqrt(3 / fan_in) with the leaky-ReLU gain sqrt(2 / (1 + a^2)), by torch's own
    calculate_gain."""
    torch = pytest.importorskip("torch")
    return torch.nn.init.calculate_gain("leaky_relu", math.sqrt(5)) * math.sqrt(3 / fan_in)


@pytest.mark.parametrize("network", ["classifier", "discriminator"])
def test_C_and_D_linears_are_drawn_pytorchs_way(network):
    np.random.seed(3)
    if network == "classifier":
        net = LabelClassifier(768, hidden=100)
        shapes = [(768, 100), (100, 100), (100, 10)]
    else:
        net = DomainDiscriminator(768, hidden=100)
        shapes = [(768, 100), (100, 1)]
    layers = [m for m in net.net.modules if isinstance(m, ndl.nn.Linear)]
    assert [tuple(layer.weight.shape) for layer in layers] == shapes
    for layer, (fan_in, fan_out) in zip(layers, shapes):
        bound = torch_bound(fan_in)
        weight, bias = layer.weight.numpy(), layer.bias.numpy()
        assert bias.shape == (1, fan_out)
        for values in (weight, bias):
            assert np.abs(values).max() <= bound * (1 + 1e-6)
        # a uniform on (-b, b): std b / sqrt(3), and its extremes near +-b
        count = weight.size
        assert weight.std() == pytest.approx(bound / math.sqrt(3), rel=4 / math.sqrt(count))
        assert abs(weight.mean()) < 4 * bound / math.sqrt(3 * count)
        assert np.abs(weight).max() > bound * (1 - 10 / count)
    # D's one-output bias: within +-0.1, where needle's Linear would draw it from +-2.45
    if network == "discriminator":
        assert abs(layers[-1].bias.numpy().item()) <= 0.1
    # the draws come from NumPy's global RNG: the same seed, the same weights
    np.random.seed(3)
    again = LabelClassifier(768, hidden=100) if network == "classifier" \
        else DomainDiscriminator(768, hidden=100)
    for a, b in zip(net.parameters(), again.parameters()):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_torch_style_linears_redraws_a_bare_linear_and_leaves_other_layers():
    np.random.seed(0)
    layer = torch_style_linears(ndl.nn.Linear(6, 1))
    assert layer.weight.shape == (6, 1) and layer.bias.shape == (1, 1)
    assert np.abs(layer.weight.numpy()).max() <= torch_bound(6)
    assert abs(layer.bias.numpy().item()) <= torch_bound(6)
    np.random.seed(0)
    conv = ndl.nn.Conv2d(2, 3, 5)
    np.random.seed(0)
    untouched = torch_style_linears(ndl.nn.Sequential(ndl.nn.Conv2d(2, 3, 5)))
    np.testing.assert_array_equal(untouched.modules[0].weight.numpy(), conv.weight.numpy())


# ---- the recipe's gradients against PyTorch ------------------------------------------------
def tiny_recipe(source_only=False, width=2, hidden=5):
    np.random.seed(0)
    F = FeatureExtractor(3, width)
    C = LabelClassifier(F.feature_dim, hidden=hidden)
    optimizer = ndl.optim.SGD(F.parameters() + C.parameters(), lr=0.1)
    adversarial = None
    if not source_only:
        D = DomainDiscriminator(F.feature_dim, hidden=hidden)
        adversarial = Adversarial(D, Minimax(), ndl.optim.SGD(D.parameters(), lr=0.1))
    return DANNRecipe(F, C, optimizer, adversarial)


def a_batch(n=4, seed=1):
    rng = np.random.RandomState(seed)
    source = rng.uniform(-1, 1, (n, 3, 28, 28)).astype(np.float32)
    target = rng.uniform(-1, 1, (n, 3, 28, 28)).astype(np.float32)
    return (source, rng.randint(0, 10, n)), target


def torch_gradients(recipe, batch):
    """dL_y and dL_d with respect to every parameter, by PyTorch, on the recipe's current
    weights: {module: (grads of L_y, grads of L_d)} in named_parameters order."""
    torch = pytest.importorskip("torch")
    fn = torch.nn.functional
    (source, labels), target = batch

    def weights(module):
        return {name: torch.tensor(p.numpy().astype(np.float64), requires_grad=True)
                for name, p in module.named_parameters()}

    Fw = weights(recipe.features)
    Cw = weights(recipe.classifier)
    Dw = weights(recipe.adversarial.discriminator)

    def conv(x, w, b):  # needle's (K, K, Cin, Cout) is torch's (Cout, Cin, K, K)
        return fn.conv2d(x, w.permute(3, 2, 0, 1), b.reshape(-1))

    def linear(x, w, b):  # needle's (in, out) weight and (1, out) bias
        return x @ w + b.reshape(-1)

    def F(x):
        x = fn.max_pool2d(torch.relu(conv(x, Fw["net.modules.0.weight"],
                                          Fw["net.modules.0.bias"])), 2)
        x = fn.max_pool2d(torch.relu(conv(x, Fw["net.modules.3.weight"],
                                          Fw["net.modules.3.bias"])), 2)
        return x.reshape(len(x), -1)  # NCHW flattened, as needle's Flatten

    def mlp(x, w, layers):
        for i, layer in enumerate(layers):
            x = linear(x, w[f"net.modules.{layer}.weight"], w[f"net.modules.{layer}.bias"])
            if i < len(layers) - 1:
                x = torch.relu(x)
        return x

    features = F(torch.tensor(np.concatenate([source, target]), dtype=torch.float64))
    fs, ft = features[:len(source)], features[len(source):]
    class_loss = fn.cross_entropy(mlp(fs, Cw, [0, 2, 4]), torch.tensor(labels))
    ds, dt = mlp(fs, Dw, [0, 2])[:, 0], mlp(ft, Dw, [0, 2])[:, 0]
    domain_loss = fn.softplus(-ds).mean() + fn.softplus(dt).mean()  # source 1, target 0
    out = {}
    for name, w in (("F", Fw), ("C", Cw), ("D", Dw)):
        params = list(w.values())
        out[name] = tuple(
            [np.zeros(p.shape) if g is None else g.detach().numpy() for p, g in zip(
                params, torch.autograd.grad(loss, params, retain_graph=True,
                                            allow_unused=True))]
            for loss in (class_loss, domain_loss))
    return out, class_loss.item(), domain_loss.item()


def grads(module):
    return [p.grad.numpy() for _, p in module.named_parameters()]


def test_F_receives_the_reversed_domain_gradient_and_D_the_plain_one():
    recipe, batch = tiny_recipe(), a_batch()
    expected, class_loss, domain_loss = torch_gradients(recipe, batch)
    recipe.start(10)
    figures = recipe.step(batch, 5)  # p = 0.5
    scale = reversal_scale(0.5)
    assert figures["lambda"] == pytest.approx(scale)
    assert figures["class_loss"] == pytest.approx(class_loss, rel=1e-5)
    assert figures["domain_loss"] == pytest.approx(domain_loss, rel=1e-5)
    assert figures["d_loss"] == pytest.approx(domain_loss, rel=1e-5)
    gy, gd = expected["F"]
    got = grads(recipe.features)
    for g, y, d in zip(got, gy, gd):
        np.testing.assert_allclose(g, y - scale * d, rtol=2e-3, atol=1e-6)
    # without the reversal F would descend the domain loss: a different gradient
    assert not all(np.allclose(g, y + scale * d, rtol=2e-3, atol=1e-6)
                   for g, y, d in zip(got, gy, gd))
    assert any(np.abs(d).max() > 1e-4 for d in gd)  # the domain term does reach F
    for g, y in zip(grads(recipe.classifier), expected["C"][0]):  # C: the labels alone
        np.testing.assert_allclose(g, y, rtol=2e-3, atol=1e-6)
    # D's step used the features F made before its update and descends L_d (no reversal)
    for g, d in zip(grads(recipe.adversarial.discriminator), expected["D"][1]):
        np.testing.assert_allclose(g, d, rtol=2e-3, atol=1e-6)


def test_the_update_is_one_simultaneous_sgd_step():
    """F, C and D all move from the same weights: w - lr * their gradient at that point."""
    recipe, batch = tiny_recipe(), a_batch(seed=2)
    expected, _, _ = torch_gradients(recipe, batch)
    before = {name: [p.numpy().copy() for _, p in module.named_parameters()]
              for name, module in (("F", recipe.features), ("C", recipe.classifier),
                                   ("D", recipe.adversarial.discriminator))}
    recipe.start(4)
    recipe.step(batch, 1)  # p = 0.25
    scale, lr = reversal_scale(0.25), 0.1 * lr_factor(0.25)
    steps = {"F": [y - scale * d for y, d in zip(*expected["F"])],
             "C": expected["C"][0], "D": expected["D"][1]}
    for name, module in (("F", recipe.features), ("C", recipe.classifier),
                         ("D", recipe.adversarial.discriminator)):
        for (key, p), w, g in zip(module.named_parameters(), before[name], steps[name]):
            np.testing.assert_allclose(p.numpy(), w - lr * g, rtol=1e-4, atol=1e-6,
                                       err_msg=f"{name}.{key}")


def test_source_only_trains_F_and_C_on_the_labels_alone():
    recipe, batch = tiny_recipe(source_only=True), a_batch()
    reference = tiny_recipe()  # the same F and C weights (same seed), with a D
    expected, class_loss, _ = torch_gradients(reference, batch)
    recipe.start(10)
    figures = recipe.step(batch, 5)
    assert "lambda" not in figures and "d_loss" not in figures
    assert figures["class_loss"] == pytest.approx(class_loss, rel=1e-5)
    for g, y in zip(grads(recipe.features), expected["F"][0]):
        np.testing.assert_allclose(g, y, rtol=2e-3, atol=1e-6)
    assert set(recipe.components()) == {"features", "classifier", "optimizer"}


def test_evaluate_and_sample_score_without_moving_any_state():
    recipe = tiny_recipe()
    rng = np.random.RandomState(3)
    test_source = rng.uniform(-1, 1, (7, 3, 28, 28)).astype(np.float32)
    test_target = rng.uniform(-1, 1, (7, 3, 28, 28)).astype(np.float32)
    labels = rng.randint(0, 10, 7)
    recipe.test_source, recipe.test_target, recipe.test_labels = test_source, test_target, labels
    recipe.eval_samples, recipe.num_samples, recipe.chunk = 5, 3, 2
    np.random.seed(11)
    weights = {k: v.copy() for k, v in recipe.features.state_dict().items()}
    scores = recipe.evaluate()
    picture = recipe.sample()
    assert np.random.randint(1 << 30) == np.random.RandomState(11).randint(1 << 30)
    for key, value in recipe.features.state_dict().items():
        np.testing.assert_array_equal(value, weights[key])
    with ndl.no_grad():
        logits = recipe.classifier(recipe.features(ndl.Tensor(test_target[:5]))).numpy()
    assert scores["target_accuracy"] == np.mean(logits.argmax(axis=1) == labels[:5])
    assert set(scores) == {"source_accuracy", "target_accuracy"}
    assert picture.images.shape == (6, 3, 28, 28) and picture.rows == 2
    predicted = " ".join(str(d) for d in logits[:3].argmax(axis=1))
    assert picture.row_labels[1] == f"target: {predicted}"


def test_accuracy_and_batches():
    assert accuracy(np.array([[0.0, 1.0], [2.0, 1.0], [0.0, 3.0]]), [1, 0, 0]) == 2 / 3
    images, labels = np.zeros((10, 3, 28, 28), np.float32), np.arange(10)
    target = np.ones((6, 3, 28, 28), np.float32)
    data = dann_batches(images + labels[:, None, None, None], labels, target, 3)
    assert data.steps_per_epoch == 2
    np.random.seed(0)
    data.shuffle()
    (source, y), t = data.batch(1)
    np.testing.assert_array_equal(source[:, 0, 0, 0], y)  # images and labels stay together
    assert t.shape == (3, 3, 28, 28)
    with pytest.raises(GANSetupError, match="10 source images but 9 labels"):
        dann_batches(images, labels[:9], target, 3)


def test_step_before_start_and_a_wrong_adversarial_are_named_errors():
    recipe = tiny_recipe()
    with pytest.raises(GANSetupError, match=r"call start\(total_steps\) first"):
        recipe.step(a_batch(), 0)
    F = recipe.features
    D = DomainDiscriminator(F.feature_dim, hidden=3)
    adversarial = Adversarial(D, Minimax(), ndl.optim.SGD(D.parameters()), n_critic=2)
    with pytest.raises(GANSetupError, match="without n_critic, augment or feature_matching"):
        DANNRecipe(F, recipe.classifier, recipe.optimizer, adversarial)
