"""pix2pix's models: the U-Net's skip shapes at odd sizes, its wiring against PyTorch written
as the authors' recursive UnetSkipConnectionBlock, dropout as the only randomness, and the
conditional PatchGAN on (input, output) pairs."""
import numpy as np
import pytest

import needle as ndl
from gan import Adversarial
from gan.models.cyclegan import PatchDiscriminator
from gan.models.unet import PairDiscriminator, UnetGenerator
from gan.objectives import NonSaturating


def tensor(array):
    return ndl.Tensor(np.asarray(array, dtype=np.float32), requires_grad=False)


def images(rng, n=2, channels=1, height=28, width=28):
    return rng.uniform(-1, 1, (n, channels, height, width)).astype(np.float32)


# ---- U-Net shapes ------------------------------------------------------------------------
@pytest.mark.parametrize("height, width, depth", [(28, 28, 4), (27, 31, 4), (16, 16, 4),
                                                  (33, 17, 3), (9, 13, 3)])
def test_skips_match_the_decoder_at_odd_sizes(height, width, depth):
    G = UnetGenerator(2, 3, width=4, depth=depth, dropout_layers=1)
    x = tensor(images(np.random.RandomState(0), channels=2, height=height, width=width))
    features = G.encode(x)
    sides, h, w = [], height, width
    for _ in range(depth):  # 4x4, stride 2, padding 1: s -> s // 2
        h, w = h // 2, w // 2
        sides.append((h, w))
    assert [tuple(f.shape[2:]) for f in features] == sides
    assert [f.shape[1] for f in features] == [4 * min(2 ** i, 8) for i in range(depth)]
    # each decoder layer takes its input and the skip it meets, concatenated
    ups = [layer.conv for layer in G.decoder]
    assert ups[0].in_channels == features[-1].shape[1]
    for up, skip in zip(ups[1:], reversed(features[:-1])):
        assert up.in_channels == 2 * skip.shape[1]
    y = G(x)
    assert y.shape == (2, 3, height, width)
    assert np.all(np.abs(y.numpy()) <= 1)  # tanh


def test_the_generator_names_itself_on_bad_input_and_options():
    G = UnetGenerator(1, 1, width=4, depth=4)
    with pytest.raises(ValueError, match=r"UnetGenerator: .*H, W >= 16 \(depth 4\)"):
        G(tensor(np.zeros((1, 1, 15, 28))))
    with pytest.raises(ValueError, match=r"UnetGenerator: expected images \(N, 1, H, W\)"):
        G(tensor(np.zeros((1, 3, 28, 28))))
    with pytest.raises(ValueError, match="dropout_layers must be in"):
        UnetGenerator(depth=3, dropout_layers=3)
    with pytest.raises(ValueError, match="norm must be one of"):
        UnetGenerator(norm="group")


def test_dropout_is_the_only_noise_and_eval_turns_it_off():
    rng = np.random.RandomState(1)
    x = tensor(images(rng, n=4))
    np.random.seed(0)
    G = UnetGenerator(1, 1, width=4, depth=4, dropout_layers=2)
    assert sum(type(m).__name__ == "Dropout" for m in G._children()) == 2
    state = np.random.get_state()
    first, second = G(x).numpy(), G(x).numpy()
    assert not np.array_equal(first, second)  # training: fresh dropout masks
    G.eval()
    np.random.set_state(state)
    with ndl.no_grad():
        a, b = G(x).numpy(), G(x).numpy()
    np.testing.assert_array_equal(a, b)
    assert np.random.get_state()[2] == state[2] and \
        np.array_equal(np.random.get_state()[1], state[1])  # eval draws nothing
    assert G.last_layer is G.decoder[-1].conv
    assert G.last_layer.out_channels == 1


# ---- the U-Net against PyTorch -----------------------------------------------------------
def torch_unet(torch, G, x, train):
    """G's function written as pytorch-CycleGAN-and-pix2pix's recursive
    UnetSkipConnectionBlock (forward: cat([x, model(x)], 1)), cropping each up-convolution
    to its block's input size, with G's weights."""
    F = torch.nn.functional

    def weight(conv):  # ours (K, K, ., .) -> torch's (Cout, Cin, K, K) / (Cin, Cout, K, K)
        return torch.tensor(conv.weight.numpy().transpose(3, 2, 0, 1))

    def bias(conv):
        return None if conv.bias is None else torch.tensor(conv.bias.numpy())

    def norm(h, layer):
        if type(layer).__name__ == "InstanceNorm2d":
            return F.instance_norm(h, eps=layer.eps)
        if train:
            return F.batch_norm(h, None, None, torch.tensor(layer.weight.numpy()),
                                torch.tensor(layer.bias.numpy()), training=True, eps=layer.eps)
        return F.batch_norm(h, torch.tensor(layer.running_mean.numpy()),
                            torch.tensor(layer.running_var.numpy()),
                            torch.tensor(layer.weight.numpy()),
                            torch.tensor(layer.bias.numpy()), training=False, eps=layer.eps)

    depth = G.depth

    def block(x, level):
        down = G.encoder[level].modules
        conv = down[0] if level == 0 else down[1]
        h = x if level == 0 else F.leaky_relu(x, 0.2)
        h = F.conv2d(h, weight(conv), bias(conv), stride=2, padding=1)
        if 0 < level < depth - 1:
            h = norm(h, down[2])
        if level < depth - 1:
            h = block(h, level + 1)
        up = G.decoder[depth - 1 - level]
        u = F.conv_transpose2d(F.relu(h), weight(up.conv), bias(up.conv), stride=2, padding=1,
                               output_padding=1)[:, :, :x.shape[2], :x.shape[3]]
        if level == 0:
            return torch.tanh(u)
        return torch.cat([x, norm(u, up.after.modules[0])], 1)

    return block(torch.tensor(x), 0).numpy()


@pytest.mark.parametrize("norm, train", [("instance", False), ("batch", True),
                                         ("batch", False)])
@pytest.mark.parametrize("height, width", [(27, 31), (32, 32)])
def test_the_unet_matches_the_authors_recursive_blocks_in_torch(norm, train, height, width):
    torch = pytest.importorskip("torch")
    rng = np.random.RandomState(2)
    np.random.seed(3)
    G = UnetGenerator(2, 1, width=4, depth=4, dropout_layers=0, norm=norm)
    for p in G.parameters():  # away from DCGAN's init, so every weight and bias matters
        p.data = tensor(rng.normal(0, 0.3, p.shape))
    if norm == "batch":
        for layer in G._children():
            if type(layer).__name__ == "BatchNorm2d":
                layer.running_mean.data = tensor(rng.normal(0, 0.5, layer.dim))
                layer.running_var.data = tensor(rng.uniform(0.5, 2, layer.dim))
    x = images(rng, n=3, channels=2, height=height, width=width)
    G.train(train)
    expected = torch_unet(torch, G, x, train)
    with ndl.no_grad():
        got = G(tensor(x)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


# ---- the conditional PatchGAN ------------------------------------------------------------
def test_the_pair_discriminator_is_a_patchgan_on_the_concatenated_pair():
    rng = np.random.RandomState(4)
    np.random.seed(5)
    D = PairDiscriminator(in_channels=1, out_channels=3, width=4)
    np.random.seed(5)
    plain = PatchDiscriminator(channels=4, width=4)
    x, y = images(rng, n=2, channels=1), images(rng, n=2, channels=3)
    scores = D(tensor(y), tensor(x)).numpy()
    assert scores.shape == (2, 1, 5, 5)
    np.testing.assert_array_equal(scores, plain(tensor(np.concatenate([x, y], 1))).numpy())
    # through Adversarial: D(images, cond) with the condition the input
    adversarial = Adversarial(D, NonSaturating(), ndl.optim.Adam(D.parameters()))
    np.testing.assert_array_equal(adversarial.score(tensor(y), tensor(x)).numpy(), scores)
    # odd sizes work (the PatchGAN's map shrinks with them)
    odd = D(tensor(images(rng, 1, 3, 27, 31)), tensor(images(rng, 1, 1, 27, 31)))
    assert odd.shape == (1, 1, PatchDiscriminator.output_size(27),
                         PatchDiscriminator.output_size(31))


def test_the_pair_discriminator_names_mismatched_pairs():
    D = PairDiscriminator(1, 1, width=4)
    rng = np.random.RandomState(0)
    with pytest.raises(ValueError, match=r"PairDiscriminator: expected an output"):
        D(tensor(images(rng, channels=3)), tensor(images(rng)))
    with pytest.raises(ValueError, match=r"got shapes \(2, 1, 28, 28\) and \(2, 1, 27, 28\)"):
        D(tensor(images(rng)), tensor(images(rng, height=27)))
