"""GAN models: DCGAN, conditional DCGAN, CycleGAN's ResNet generator and PatchGAN, pix2pix's
U-Net and pair discriminator, the minibatch standard-deviation layer, the autoencoders'
encoder and decoder, and StyleGAN-lite."""
from .autoencoder import Decoder, Encoder, LabelledCodeCritic  # noqa: F401
from .conditional import ConditionalDiscriminator, ConditionalGenerator  # noqa: F401
from .cyclegan import PatchDiscriminator, ResnetGenerator  # noqa: F401
from .dcgan import Discriminator, Generator  # noqa: F401
from .init import dcgan_init  # noqa: F401
from .minibatch_std import MinibatchStd  # noqa: F401
from .mlp import MLPCritic, MLPGenerator  # noqa: F401
from .pool import ImagePool  # noqa: F401
from .stylegan import MappingNetwork, StyleGANDiscriminator, StyleGANGenerator  # noqa: F401
from .unet import PairDiscriminator, UnetGenerator  # noqa: F401
