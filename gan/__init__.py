"""gan: adversarial training composed like a loss function, on needle."""
from . import metrics, models, objectives, penalties  # noqa: F401
from .adversarial import Adversarial
from .cyclegan import CycleGAN
from .models.pool import ImagePool
from .trainer import Trainer, TrainerConfig, TrainingDiverged

__all__ = ["Adversarial", "CycleGAN", "ImagePool", "Trainer", "TrainerConfig",
           "TrainingDiverged", "metrics", "models", "objectives", "penalties"]
