"""gan: adversarial training composed like a loss function, on needle.

`gan.metrics` (SciPy) is imported on first use, so a training process starts faster.
"""
import importlib

from . import health, models, objectives, penalties  # noqa: F401
from .adversarial import Adversarial
from .cyclegan import CycleGAN
from .errors import (DataRangeWarning, DiscriminatorOutputError, GANSetupError,
                     GraphHygieneError, ImageShapeError, LabelError, TrainingDataError)
from .health import HealthMonitor, HealthThresholds
from .models.pool import ImagePool
from .trainer import Trainer, TrainerConfig, TrainingDiverged

__all__ = ["Adversarial", "CycleGAN", "ImagePool", "Trainer", "TrainerConfig",
           "TrainingDiverged", "HealthMonitor", "HealthThresholds", "GANSetupError",
           "DiscriminatorOutputError", "ImageShapeError", "LabelError", "TrainingDataError",
           "GraphHygieneError", "DataRangeWarning", "health", "metrics", "models",
           "objectives", "penalties"]


def __getattr__(name):
    if name == "metrics":
        return importlib.import_module(".metrics", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
