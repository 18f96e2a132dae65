"""gan: adversarial training composed like a loss function, on needle."""
from . import models, objectives, penalties  # noqa: F401
from .adversarial import Adversarial
from .models.pool import ImagePool
from .trainer import Trainer, TrainerConfig, TrainingDiverged

__all__ = ["Adversarial", "ImagePool", "Trainer", "TrainerConfig", "TrainingDiverged",
           "models", "objectives", "penalties"]
