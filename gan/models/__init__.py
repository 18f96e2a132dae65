"""GAN models: DCGAN, conditional DCGAN, CycleGAN's ResNet generator and PatchGAN."""
from .dcgan import Discriminator, Generator  # noqa: F401
from .init import dcgan_init  # noqa: F401
from .pool import ImagePool  # noqa: F401
