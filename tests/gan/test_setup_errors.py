"""GAN setup mistakes raise named errors that name the object and the values (gan.errors)."""
import numpy as np
import pytest

import needle as ndl
from gan import (Adversarial, DataRangeWarning, DiscriminatorOutputError, GANSetupError,
                 ImageShapeError, LabelError, Trainer, TrainerConfig, TrainingDataError)
from gan.models.conditional import ConditionalDiscriminator, ConditionalGenerator
from gan.models.dcgan import Discriminator, Generator
from gan.objectives import NonSaturating
from needle import nn, ops


def images(n=16, channels=1, size=28, low=-1.0, high=1.0, dtype=np.float32):
    return np.random.RandomState(0).uniform(low, high, (n, channels, size, size)).astype(dtype)


def trainer(tmp_path, data, G=None, D=None, labels=None):
    np.random.seed(0)
    G = G or Generator(latent_dim=8, width=4)
    D = D or Discriminator(width=4)
    adv = Adversarial(D, NonSaturating(), ndl.optim.Adam(D.parameters(), lr=1e-3))
    config = TrainerConfig(out_dir=str(tmp_path), batch_size=8, latent_dim=8, num_samples=4,
                           progress=False)
    return Trainer(G, adv, ndl.optim.Adam(G.parameters(), lr=1e-3), data, config,
                   labels=labels)


class TwoClassHead(nn.Module):
    """A classifier-style D: (N, 2) logits, the classic mistake."""

    def __init__(self):
        super().__init__()
        self.trunk = Discriminator(width=4)
        self.w = nn.Parameter(np.ones((1, 2), np.float32))

    def forward(self, x):
        score = ops.reshape(self.trunk(x), (x.shape[0], 1))
        return score @ self.w


def test_two_class_discriminator_output_is_named_at_trainer_start(tmp_path):
    with pytest.raises(DiscriminatorOutputError) as error:
        trainer(tmp_path, images(), D=TwoClassHead())
    message = str(error.value)
    assert "TwoClassHead" in message and "(2, 2)" in message and "NonSaturating" in message
    assert "single output unit" in message
    assert not (tmp_path / "run.json").exists()  # nothing written before the check


def test_grayscale_data_with_an_rgb_generator(tmp_path):
    np.random.seed(0)
    G, D = Generator(latent_dim=8, width=4, channels=3), Discriminator(width=4, channels=3)
    with pytest.raises(ImageShapeError) as error:
        trainer(tmp_path, images(channels=1), G=G, D=D)
    message = str(error.value)
    assert "Generator makes 3-channel images (RGB" in message
    assert "1 channels (grayscale" in message and "channels=1" in message


def test_rgb_data_with_grayscale_models(tmp_path):
    with pytest.raises(ImageShapeError, match=r"1-channel images \(grayscale.*3 channels "
                                              r"\(RGB"):
        trainer(tmp_path, images(channels=3))


def test_discriminator_that_does_not_take_the_data(tmp_path):
    """G makes the data's shape but D was built for another size."""
    np.random.seed(0)
    G, D = Generator(latent_dim=8, width=4, image_size=32), Discriminator(width=4)
    with pytest.raises(ImageShapeError, match=r"discriminator Discriminator does not take "
                                              r"the data's images of shape \(N, 1, 32, 32\)"):
        trainer(tmp_path, images(size=32), G=G, D=D)


def test_image_size_the_models_were_not_built_for(tmp_path):
    with pytest.raises(ImageShapeError, match=r"makes images of size \(28, 28\) but the data "
                                              r"are \(32, 32\); build G and D with "
                                              r"image_size=32"):
        trainer(tmp_path, images(size=32))
    with pytest.raises(ImageShapeError, match=r"\(48, 48\); resize the data to a size the "
                                              r"DCGAN models support, one of \(28, 32, 64\)"):
        trainer(tmp_path, images(size=48))


@pytest.mark.parametrize("size", [16, 48, 100])
def test_unsupported_image_size_at_model_construction(size):
    with pytest.raises(ImageShapeError, match=rf"support image sizes \(28, 32, 64\), got {size}"):
        Generator(image_size=size, width=4)
    assert issubclass(ImageShapeError, ValueError)  # older callers caught ValueError


@pytest.mark.parametrize("n_critic", [0, -2, 2.5])
def test_n_critic_below_one(n_critic):
    D = Discriminator(width=4)
    with pytest.raises(GANSetupError, match=f"n_critic must be an integer >= 1, got {n_critic}"):
        Adversarial(D, NonSaturating(), ndl.optim.Adam(D.parameters()), n_critic=n_critic)


def test_conditional_models_without_labels_or_with_bad_ones():
    np.random.seed(0)
    G = ConditionalGenerator(num_classes=3, latent_dim=8, width=4)
    D = ConditionalDiscriminator(num_classes=3, width=4)
    z, x = ndl.init.randn(4, 8), ndl.Tensor(images(4))
    with pytest.raises(LabelError, match="ConditionalGenerator: labels are required"):
        G(z)
    with pytest.raises(LabelError, match="ConditionalDiscriminator: labels are required"):
        D(x)
    with pytest.raises(LabelError, match=r"ConditionalDiscriminator: labels must be integer "
                                         r"class ids in \[0, 3\); got \[3\.0, 7\.0\]"):
        D(x, np.array([0, 3, 7, 1], np.float32))
    with pytest.raises(LabelError, match=r"got \[-1\]"):
        G(z, np.array([0, 1, -1, 2]))


def test_conditional_trainer_with_wrong_label_count(tmp_path):
    np.random.seed(0)
    G = ConditionalGenerator(num_classes=3, latent_dim=8, width=4)
    D = ConditionalDiscriminator(num_classes=3, width=4)
    with pytest.raises(GANSetupError, match="Trainer: 10 labels for 16 images"):
        trainer(tmp_path, images(), G=G, D=D, labels=np.zeros(10, np.float32))


@pytest.mark.parametrize("low, high, hint", [(0.0, 1.0, r"looks like \[0, 1\]: use "
                                                        r"images \* 2 - 1"),
                                             (0.0, 255.0, r"scale them into \[-1, 1\]"),
                                             (-3.0, 3.0, r"scale them into \[-1, 1\]")])
def test_data_outside_tanh_range_warns(tmp_path, low, high, hint):
    with pytest.warns(DataRangeWarning, match=r"Generator ends in tanh.*" + hint):
        trainer(tmp_path, images(low=low, high=high))


def test_data_in_range_does_not_warn(tmp_path):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trainer(tmp_path, images())


@pytest.mark.parametrize("dtype, match", [(np.uint8, "dtype uint8; expected floats"),
                                          (np.float64, "dtype float64 but Generator's "
                                                       "parameters are float32")])
def test_wrong_image_dtype(tmp_path, dtype, match):
    with pytest.raises(TrainingDataError, match=match):
        trainer(tmp_path, images(high=0.9).astype(dtype))


def test_non_finite_images(tmp_path):
    data = images()
    data[5, 0, 3, 3] = np.nan
    data[9, 0, 0, 0] = np.inf
    with pytest.raises(TrainingDataError, match=r"2 of 16 images hold NaN or Inf values "
                                                r"\(first at index 5\)"):
        trainer(tmp_path, data)


def test_too_few_images_for_a_batch(tmp_path):
    with pytest.raises(GANSetupError, match="4 images is fewer than one batch of 8"):
        trainer(tmp_path, images(4))
    with pytest.raises(ImageShapeError, match=r"expected NCHW images \(4 dims\), got shape "
                                              r"\(16, 784\)"):
        trainer(tmp_path, images().reshape(16, 784))
