"""GAN evaluation in the feature space of an MNIST classifier trained with needle.

No pretrained Inception network is available, so the numbers come from
gan.classifier.MNISTClassifier (weights shipped in gan/weights/, made by
`python -m apps.train_classifier`):

  fid             Frechet distance between Gaussians fitted to the classifier's 128-d
                  penultimate features of real and generated images (Heusel et al. 2017,
                  with this classifier in place of Inception, so values are not comparable
                  with published FIDs): ||mu_r - mu_g||^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2)).
  confident       share of samples whose largest softmax probability exceeds 0.9 (the
                  classifier was trained to be unsure on noise, so blobs and static are
                  not counted as digits).
  digits_covered  digits that at least `min_share` = 1% of all samples are *confidently*
                  classified as (argmax, with p > 0.9). 1% is a tenth of a digit's fair
                  share, so the ~1% of samples the classifier gets wrong do not make a
                  missing digit covered; and confidence is required so that noise, which
                  the classifier spreads over all digits unsure, covers none.
  kl_to_uniform   KL(p || uniform) of the predicted-digit shares p, in nats: 0 when every
                  digit is equally frequent, log(10) = 2.30 when only one digit appears.
  class_histogram samples predicted (argmax, confident or not) as each digit 0..9: counts.
  kid, kid_std    Kernel Inception Distance (Binkowski et al. 2018) on the same features:
                  unbiased MMD^2 with the cubic kernel, mean and std over 100 subsets of
                  min(1000, N) real and fake samples.
  precision, recall      improved precision and recall (Kynkaanniemi et al. 2019), k = 3.
  density, coverage      density and coverage (Naeem et al. 2020), k = 5.
  inception_score, inception_score_std
                  Inception Score (Salimans et al. 2016) of the classifier's softmax
                  outputs, mean and std over 10 splits; at most 10 (one-hot predictions,
                  every digit equally often).

The last four come from gan.feature_metrics (their papers' definitions are in its
docstrings). The nearest-neighbour ones compare as many real as fake samples, as their
papers do (coverage of identical distributions is 0.97 on average with equal sizes, but
about 0.6 with 5 times as many real samples): a fixed seeded subset of the real features.

    classifier = load_classifier()
    evaluator = Evaluator(classifier, real_test_images)      # NCHW in [-1, 1]
    evaluator(generator)   # {"fid": ..., "confident": ..., "digits_covered": ..., ...}

`load_classifier` refuses a weights file whose metadata records no MNIST test accuracy, or
one below MIN_TEST_ACCURACY (98%): a classifier trained for a minute on a thousand digits
gives FIDs and coverage counts that mean nothing (FID 0.15 with 0 digits covered, measured).

`Evaluator` is the `evaluate` callable gan.Trainer calls at each epoch end. It samples from
its own seeded RandomState, so evaluating never moves NumPy's global RNG (and a resumed run
stays bit-exact), and it puts the generator in eval mode only for the sampling.
"""
import os
import warnings

import numpy as np
import scipy.linalg

import needle as ndl
from needle.data.idx import DataFileError
from needle.serialization import load_metadata

from .classifier import NUM_CLASSES, MNISTClassifier
from .feature_metrics import (density_coverage, inception_score, kid, knn_radii,
                              mmd2_unbiased, polynomial_kernel, precision_recall)

__all__ = ["Evaluator", "load_classifier", "predict", "label_kept", "feature_statistics",
           "frechet_distance", "class_histogram", "digits_covered", "kl_to_uniform",
           "kid", "precision_recall", "density_coverage", "inception_score", "knn_radii",
           "mmd2_unbiased", "polynomial_kernel",
           "to_classifier_size", "sample_images", "recorded_accuracy", "UnfitClassifierError",
           "DEFAULT_CLASSIFIER_PATH", "MIN_TEST_ACCURACY"]

DEFAULT_CLASSIFIER_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights",
                                       "mnist_classifier.safetensors")
MIN_TEST_ACCURACY = 0.98  # the shipped classifier records 0.9927


class UnfitClassifierError(DataFileError):
    """A classifier file that must not score GANs: it records no test accuracy, or one
    below MIN_TEST_ACCURACY (a few minutes of training gives FIDs that mean nothing)."""


def recorded_accuracy(path):
    """The test accuracy recorded in the weights file's metadata ("test_accuracy"), or None."""
    value = load_metadata(path).get("test_accuracy")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        raise UnfitClassifierError(f"load_classifier: {path} records test_accuracy {value!r}, "
                                   "not a number") from None


def load_classifier(path=DEFAULT_CLASSIFIER_PATH, device=None, min_accuracy=MIN_TEST_ACCURACY):
    """The MNISTClassifier saved at `path` (by apps.train_classifier), in eval mode.

    Refuses (UnfitClassifierError) a file whose recorded MNIST test accuracy is missing or
    below `min_accuracy`: the metrics are only as good as the classifier behind them.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"load_classifier: no weights at {path}; make them with "
                                f"python -m apps.train_classifier --out {path}")
    accuracy = recorded_accuracy(path)
    retrain = "train one with python -m apps.train_classifier, or use the shipped " \
              "gan/weights/mnist_classifier.safetensors"
    if min_accuracy and accuracy is None:
        raise UnfitClassifierError(f"load_classifier: {path} records no test accuracy "
                                   f"(metadata 'test_accuracy'), so it cannot be trusted to "
                                   f"score GANs; {retrain}")
    if min_accuracy and accuracy < min_accuracy:
        raise UnfitClassifierError(f"load_classifier: {path} records a test accuracy of "
                                   f"{accuracy:.2%}, below the {min_accuracy:.0%} needed to "
                                   f"score GANs; {retrain}")
    metadata = load_metadata(path)
    model = MNISTClassifier(width=int(metadata.get("width", 32)),
                            feature_dim=int(metadata.get("feature_dim", 128)), device=device)
    model.load_state_dict(ndl.load(path))
    return model.eval()


def _device_of(module):
    parameters = module.parameters()
    return parameters[0].device if parameters else ndl.default_device()


def to_classifier_size(images):
    """NCHW images in [-1, 1] at 28, 32 or 64 pixels -> (N, 1, 28, 28) float32.

    Undoes apps.common.mnist_images: 64 averages 2x2 blocks back to 32, and 32 drops the
    2-pixel background border. Flat (N, 784) images are reshaped.
    """
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 2 and images.shape[1] == 28 * 28:
        images = images.reshape(-1, 1, 28, 28)
    if images.ndim != 4 or images.shape[1] != 1 or images.shape[2] != images.shape[3] \
            or images.shape[2] not in (28, 32, 64):
        raise ValueError("metrics: expected images (N, 1, S, S) with S in (28, 32, 64) or "
                         f"(N, 784), got shape {images.shape}")
    if images.shape[2] == 64:
        n = len(images)
        images = images.reshape(n, 1, 32, 2, 32, 2).mean(axis=(3, 5))
    if images.shape[2] == 32:
        images = images[:, :, 2:30, 2:30]
    return np.ascontiguousarray(images)


def predict(classifier, images, batch_size=500):
    """(features (N, 128) float64, softmax probabilities (N, 10) float64) of `images`.

    Batched, under no_grad, with the classifier in eval mode (its mode is restored).
    """
    images = to_classifier_size(images)
    device = _device_of(classifier)
    was_training = classifier.training
    classifier.eval()
    features, logits = [], []
    try:
        with ndl.no_grad():
            for start in range(0, len(images), batch_size):
                x = ndl.Tensor(images[start:start + batch_size], device=device,
                               requires_grad=False)
                feature = classifier.features(x)
                # MNISTClassifier's head maps the features to logits without a second pass.
                logit = classifier.head(feature) if hasattr(classifier, "head") \
                    else classifier(x)
                features.append(feature.numpy().astype(np.float64))
                logits.append(logit.numpy().astype(np.float64))
    finally:
        classifier.train(was_training)
    logits = np.concatenate(logits) if logits else np.zeros((0, NUM_CLASSES))
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs = shifted / shifted.sum(axis=1, keepdims=True)
    dim = features[0].shape[1] if features else classifier.feature_dim
    return (np.concatenate(features) if features else np.zeros((0, dim))), probs


def feature_statistics(features):
    """(mean (d,), covariance (d, d)) of features (N, d), in float64 (unbiased, as numpy.cov)."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"feature_statistics: need features (N >= 2, d), got shape "
                         f"{features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps=1e-6):
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2).

    d^2 = ||mu1 - mu2||^2 + Tr(sigma1) + Tr(sigma2) - 2 Tr((sigma1 sigma2)^(1/2)).

    As the reference FID code (pytorch-fid): when the product's square root is not finite,
    or scipy reports the product singular (ReLU features with dead units make the
    covariances singular), `eps` is added to both diagonals and the root is taken again; any
    imaginary part that round-off leaves is dropped. Round-off can also make d^2 a hair
    below 0 for identical statistics; the result is clipped at 0.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2,
                                                                                    np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), \
        np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape \
            or sigma1.shape != (len(mu1), len(mu1)):
        raise ValueError(f"frechet_distance: mismatched statistics: means {mu1.shape} and "
                         f"{mu2.shape}, covariances {sigma1.shape} and {sigma2.shape}")
    diff = mu1 - mu2
    covmean = _sqrtm(sigma1 @ sigma2)
    if covmean is None:
        offset = np.eye(len(mu1)) * eps
        with warnings.catch_warnings():
            # The standard remedy is applied; what accuracy is left is as good as it gets.
            warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
            covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    covmean = np.real(covmean)
    distance = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean)
    return max(float(distance), 0.0)


def _sqrtm(matrix):
    """scipy's matrix square root, or None when it is not finite or scipy finds the matrix
    singular (then the caller regularises)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", scipy.linalg.LinAlgWarning)
        try:
            root = scipy.linalg.sqrtm(matrix)
        except scipy.linalg.LinAlgWarning:
            return None
    return root if np.isfinite(root).all() else None


def class_histogram(probs, num_classes=NUM_CLASSES):
    """Counts of the predicted (argmax) class over samples; probs (N, num_classes)."""
    return np.bincount(np.asarray(probs).argmax(axis=1), minlength=num_classes)


def digits_covered(histogram, min_share=0.01, total=None):
    """Classes with at least `min_share` of `total` samples (default: the histogram's sum).

    The Evaluator passes the histogram of confident predictions and the count of all samples
    (see the module docstring).
    """
    histogram = np.asarray(histogram, dtype=np.float64)
    total = histogram.sum() if total is None else total
    return int((histogram >= min_share * total).sum()) if total > 0 else 0


def kl_to_uniform(histogram):
    """KL(p || uniform) in nats of the shares p = histogram / sum; 0 log 0 counts as 0."""
    histogram = np.asarray(histogram, dtype=np.float64)
    p = histogram / histogram.sum()
    nonzero = p[p > 0]
    return float(np.sum(nonzero * np.log(nonzero * len(p))))


def label_kept(classifier, images, labels, batch_size=500):
    """Share of `images` (e.g. CycleGAN translations) classified as their source `labels`."""
    labels = np.asarray(labels).reshape(-1)
    _, probs = predict(classifier, images, batch_size)
    if len(probs) != len(labels):
        raise ValueError(f"label_kept: {len(probs)} images but {len(labels)} labels")
    return float((probs.argmax(axis=1) == labels).mean())


def sample_images(generator, num_samples=2000, seed=0, batch_size=500):
    """num_samples images from generator(z), z ~ N(0, I) from RandomState(seed), as NumPy.

    Runs under no_grad with the generator in eval mode, then restores its mode. A
    conditional generator (one with `num_classes`) gets labels 0, 1, ..., cycling; they are
    returned as the second item (None otherwise).
    """
    rng = np.random.RandomState(seed)
    device = _device_of(generator)
    num_classes = getattr(generator, "num_classes", None)
    labels = None if num_classes is None else np.arange(num_samples) % num_classes
    was_training = generator.training
    generator.eval()
    images = []
    try:
        with ndl.no_grad():
            for start in range(0, num_samples, batch_size):
                count = min(batch_size, num_samples - start)
                z = ndl.Tensor(rng.randn(count, generator.latent_dim).astype(np.float32),
                               device=device, requires_grad=False)
                if labels is None:
                    fake = generator(z)
                else:
                    y = ndl.Tensor(labels[start:start + count], device=device,
                                   requires_grad=False)
                    fake = generator(z, y)
                images.append(fake.numpy())
    finally:
        generator.train(was_training)
    return np.concatenate(images), labels


class Evaluator:
    """Scores generators (or image arrays) against the real images' feature statistics.

    real_images: NCHW (or (N, 784)) in [-1, 1], e.g. the 10000 MNIST test images; their
    features, feature mean and covariance are computed once, here. KID uses all the real
    features; precision, recall, density and coverage the first M of a fixed permutation of
    them (RandomState(seed)), M the number of samples scored. With `real_labels`, the statistics
    of each class's real images are kept too, and a conditional generator (or images given
    with labels) is also scored class by class ("per_class").
    """

    def __init__(self, classifier, real_images, num_samples=2000, seed=0, batch_size=500,
                 min_share=0.01, confidence=0.9, real_labels=None):
        self.classifier = classifier
        self.num_samples, self.seed, self.batch_size = num_samples, seed, batch_size
        self.min_share, self.confidence = min_share, confidence
        features, _ = predict(classifier, real_images, batch_size)
        self.real_mean, self.real_cov = feature_statistics(features)
        self.real_features = features
        self._real_order = np.random.RandomState(seed).permutation(len(features))
        self.class_statistics = {}
        if real_labels is not None:
            real_labels = np.asarray(real_labels).reshape(-1)
            if len(real_labels) != len(features):
                raise ValueError(f"Evaluator: {len(features)} real images but "
                                 f"{len(real_labels)} labels")
            self.class_statistics = {int(c): feature_statistics(features[real_labels == c])
                                     for c in np.unique(real_labels)
                                     if (real_labels == c).sum() >= 2}

    @classmethod
    def from_mnist(cls, data_dir, count=10000, classifier=None, **kwargs):
        """An Evaluator against the first `count` MNIST test images in `data_dir` (and
        their labels, for the per-class scores)."""
        return cls.from_dataset(ndl.data.load_mnist(data_dir, train=False), count, classifier,
                                **kwargs)

    @classmethod
    def from_dataset(cls, test, count=10000, classifier=None, **kwargs):
        """An Evaluator against the first `count` images of a loaded MNISTDataset."""
        images = test.images[:count].reshape(-1, 1, 28, 28) * 2 - 1
        return cls(classifier or load_classifier(), images,
                   real_labels=test.labels[:count].astype(np.int64), **kwargs)

    def __call__(self, source, labels=None):
        return self.evaluate(source, labels)

    def evaluate(self, source, labels=None):
        """Metrics of a generator (callable with `latent_dim`) or of NCHW images in [-1, 1].

        Returns {"fid", "confident", "digits_covered", "kl_to_uniform", "class_histogram",
        "num_samples", "kid", "kid_std", "precision", "recall", "density", "coverage",
        "inception_score", "inception_score_std"}; at least 10 samples (the Inception
        Score's splits). For a conditional generator (its samples' labels cycle through
        the classes) or images given with `labels`, also "label_kept" (share classified as
        their label) and, when the real labels are known, "per_class": one entry per class
        {"label", "fid" (against that class's real images), "label_kept", "confident",
        "num_samples"}.
        """
        if isinstance(source, ndl.Tensor):
            source = source.numpy()
        if isinstance(source, np.ndarray):
            images = source
        else:
            images, labels = sample_images(source, self.num_samples, self.seed,
                                           self.batch_size)
        features, probs = predict(self.classifier, images, self.batch_size)
        scores = self._scores(features, probs)
        scores.update(self._feature_scores(features, probs))
        if labels is not None:
            labels = np.asarray(labels).reshape(-1).astype(np.int64)
            if len(labels) != len(probs):
                raise ValueError(f"Evaluator: {len(probs)} images but {len(labels)} labels")
            scores["label_kept"] = float((probs.argmax(axis=1) == labels).mean())
            if self.class_statistics:
                scores["per_class"] = self._per_class(features, probs, labels)
        return scores

    def _scores(self, features, probs, reference=None):
        mean, cov = feature_statistics(features)
        real_mean, real_cov = reference or (self.real_mean, self.real_cov)
        histogram = class_histogram(probs)
        confident = probs.max(axis=1) > self.confidence
        covered = digits_covered(class_histogram(probs[confident]), self.min_share,
                                 total=len(probs))
        return {"fid": frechet_distance(real_mean, real_cov, mean, cov),
                "confident": float(confident.mean()),
                "digits_covered": covered,
                "kl_to_uniform": kl_to_uniform(histogram),
                "class_histogram": [int(count) for count in histogram],
                "num_samples": len(probs)}

    def _feature_scores(self, features, probs):
        """KID, precision/recall, density/coverage and the Inception Score (see the module
        docstring); subsets and splits from RandomState(self.seed)."""
        kid_mean, kid_std = kid(self.real_features, features, seed=self.seed)
        real = self.real_features[self._real_order[:len(features)]]
        precision, recall = precision_recall(real, features)
        density, coverage = density_coverage(real, features)
        score, score_std = inception_score(probs, seed=self.seed)
        return {"kid": kid_mean, "kid_std": kid_std, "precision": precision, "recall": recall,
                "density": density, "coverage": coverage, "inception_score": score,
                "inception_score_std": score_std}

    def _per_class(self, features, probs, labels):
        """Per label: FID against the real images of that class, label kept, confident."""
        rows = []
        for label in sorted(set(labels.tolist()) & set(self.class_statistics)):
            mine = labels == label
            if mine.sum() < 2:
                continue
            scores = self._scores(features[mine], probs[mine], self.class_statistics[label])
            rows.append({"label": int(label), "fid": scores["fid"],
                         "label_kept": float((probs[mine].argmax(axis=1) == label).mean()),
                         "confident": scores["confident"],
                         "num_samples": int(mine.sum())})
        return rows
