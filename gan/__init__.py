"""gan: adversarial training composed like a loss function, on needle.

`gan.metrics` (SciPy) is imported on first use, so a training process starts faster.
"""
import importlib

from . import (augment, batches, health, models, objectives, penalties, priors,  # noqa: F401
               recipes, samples)
from .adversarial import Adversarial, backward_into
from .augment import AdaptiveAugment, DiffAugment
from .cyclegan import CycleGAN
from .ema import EMA
from .errors import (DataRangeWarning, DiscriminatorOutputError, GANSetupError,
                     GraphHygieneError, ImageShapeError, LabelError, TrainingDataError)
from .health import HealthMonitor, HealthThresholds
from .models.pool import ImagePool
from .recipes import CycleGANRecipe, GANRecipe, Recipe
from .runfolder import RunFolderError
from .spectral_norm import SpectralNorm, spectral_norm
from .trainer import (Trainer, TrainerConfig, TrainingAborted, TrainingDiverged,
                      TrainingInterrupted)

__all__ = ["Adversarial", "backward_into", "CycleGAN", "EMA", "DiffAugment", "AdaptiveAugment",
           "SpectralNorm", "spectral_norm", "ImagePool", "Trainer", "TrainerConfig",
           "TrainingDiverged", "TrainingInterrupted", "TrainingAborted", "RunFolderError",
           "Recipe", "GANRecipe", "CycleGANRecipe", "HealthMonitor", "HealthThresholds",
           "GANSetupError", "DiscriminatorOutputError", "ImageShapeError", "LabelError", "TrainingDataError",
           "GraphHygieneError", "DataRangeWarning", "augment", "batches", "health", "metrics",
           "models", "objectives", "penalties", "recipes", "samples"]


def __getattr__(name):
    if name == "metrics":
        return importlib.import_module(".metrics", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
