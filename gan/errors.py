"""Named errors and warnings for the mistakes people make setting up GAN training.

Each is raised (or warned) where the mistake is first visible, names the object involved and
the values it saw, and says what to do. All setup errors are ValueErrors, so code that
caught ValueError before keeps working.

    GANSetupError             base class of the setup mistakes below
    DiscriminatorOutputError  D's scores do not have the shape the objective expects
    ImageShapeError           data and models disagree on channels (grayscale vs RGB) or size
    LabelError                a conditional model without labels, or with ids out of range
    TrainingDataError         training images of the wrong dtype, or with NaN/Inf values
    GraphHygieneError         the D step reached G's graph, or the G step changed D's weights
    DataRangeWarning          images outside [-1, 1] (or in [0, 1]) for a tanh generator
"""

__all__ = ["GANSetupError", "DiscriminatorOutputError", "ImageShapeError", "LabelError",
           "TrainingDataError", "GraphHygieneError", "DataRangeWarning"]


class GANSetupError(ValueError):
    """Models, data and objective do not fit together; the message says how."""


class DiscriminatorOutputError(GANSetupError):
    """D returned scores of a shape the objective cannot use (e.g. (N, 2) class logits)."""


class ImageShapeError(GANSetupError):
    """The data's (C, H, W) differs from what the generator makes or D accepts."""


class LabelError(GANSetupError):
    """A conditional model got no labels, labels of the wrong count, or ids out of range."""


class TrainingDataError(GANSetupError):
    """Training images that cannot be used as they are (integer dtype, NaN or Inf values)."""


class GraphHygieneError(RuntimeError):
    """The boundary between the D step and the G step leaked (see gan.Adversarial)."""


class DataRangeWarning(UserWarning):
    """The real images are not in [-1, 1], the range of a tanh generator's outputs."""
