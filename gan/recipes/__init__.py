"""Recipes: the models gan.Trainer runs (see recipe.py for what a recipe answers).

    GANRecipe       one generator against one Adversarial: DCGAN, cGAN, WGAN-GP (images or
                    2-D points)
    CycleGANRecipe  two generators and two Adversarials (gan.cyclegan.CycleGAN)
    Pix2PixRecipe   a U-Net against a conditional PatchGAN, plus L1 (paired translation)
    DANNRecipe      a classifier whose features a domain Adversarial cannot place
                    (gan.recipes.dann)
    AAERecipe       an autoencoder whose codes an Adversarial makes look like a prior
    VAERecipe       the same encoder and decoder trained by the reparameterised ELBO

A new model is one more Recipe subclass: its step, its picture and its state; the loop,
checkpoints and outputs come with the engine.
"""
from .aae import AAERecipe, VAERecipe
from .cyclegan import CycleGANRecipe
from .dann import DANNRecipe
from .gan import GANRecipe
from .pix2pix import Pix2PixRecipe
from .recipe import Recipe

__all__ = ["Recipe", "GANRecipe", "CycleGANRecipe", "Pix2PixRecipe", "DANNRecipe",
           "AAERecipe", "VAERecipe"]
