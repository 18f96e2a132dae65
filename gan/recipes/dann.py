"""Domain-adversarial training (DANN, Ganin & Lempitsky 2015) as a gan.Trainer recipe.

A feature extractor F, a label classifier C on F's features of labelled source images, and
a domain discriminator D on F's features of both domains, behind the gradient reversal layer
R_lambda (needle.ops.grad_reverse: the identity forward, -lambda times the gradient
backward):

    f_s, f_t = F(x_s), F(x_t)                       one forward of F over both batches
    L_y = cross-entropy(C(f_s), y_s)                labelled source only
    L_d = logistic loss of D: source = 1, target = 0
    one step:  (F, C) <- minimise L_y + L_d(D(R_lambda(f_s)), D(R_lambda(f_t)))
               D      <- minimise L_d(D(f_s), D(f_t))

so D learns to tell the domains apart while F receives -lambda times D's gradient and learns
features D cannot separate (the paper's saddle point: F climbs L_d as D descends it).

gan.Adversarial holds D, with source features as its "real" and target features as its
"fake": the objective's discriminator loss E[softplus(-D(f_s))] + E[softplus(D(f_t))]
(gan.objectives.Minimax) is exactly the paper's logistic domain loss. D's update is
`adversarial.discriminator_step(f_s, f_t)` on the features (detached: D's step never reaches
F); F's adversarial term is D's own loss through the reversal,
`objective.discriminator_loss(score(R(f_s)), score(R(f_t)))`, not `generator_loss`: a GAN's
G is judged on its fakes only, while under reversal F plays against D on both domains. The
F, C step runs first and D's step then sees the features F made before that update, so the
two updates are exactly the paper's one simultaneous step on L_y + L_d with the reversal
(D's gradient is the same plain gradient of L_d either way), whatever the optimizers
(the paper's SGD; apps.train_dann uses Adam).

The paper's schedules (its experiments section), with p = step / total_steps, the
training progress from 0 to 1:
    lambda_p = 2 / (1 + exp(-10 p)) - 1           the reversal's scale, 0 -> 1
    lr_p = lr_0 / (1 + 10 p) ** 0.75              both optimizers' learning rate

With `adversarial=None` the recipe is the source-only baseline: F and C on L_y alone, the
same networks, batches and learning-rate schedule.

Batches are ((x_s, y_s), x_t) from `dann_batches` (source and target each in their own
random order). Figures: class_loss, class_accuracy (the source batch), lr, and with D:
lambda, domain_loss (L_d, F's view), d_loss (the same loss, D's step), d_source (D's mean
probability that a source image is source; discriminator_step's d_real), d_target (that a
target image is source, its d_fake: 0.5 on both when F has won), d_grad_norm.
evaluate(): source_accuracy (MNIST test) and target_accuracy (the shifted test digits), the
figures the method is judged by.
"""
import math

import numpy as np

import needle as ndl
from needle import init, nn, ops

from ..batches import Unpaired
from ..errors import GANSetupError
from ..samples import ImageGrid
from .recipe import Recipe, apply_in_chunks

__all__ = ["DANNRecipe", "FeatureExtractor", "LabelClassifier", "DomainDiscriminator",
           "reversal_scale", "lr_factor", "dann_batches", "accuracy",
           "torch_style_linears"]

# discriminator_step's figures under the domains' names: D's "real" is the source
_DOMAIN_NAMES = {"d_real": "d_source", "d_fake": "d_target"}


def reversal_scale(progress, gamma=10.0):
    """lambda_p = 2 / (1 + exp(-gamma p)) - 1 (the paper's gamma = 10)."""
    return 2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0


def lr_factor(progress, alpha=10.0, beta=0.75):
    """1 / (1 + alpha p) ** beta: the paper's annealing of the learning rate."""
    return 1.0 / (1.0 + alpha * progress) ** beta


# ---- the networks (the paper's MNIST architecture) --------------------------------------
def torch_style_linears(module):
    """Redraw every nn.Linear in `module` (itself included) as PyTorch's nn.Linear draws
    it: weight and bias both U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = in_features
    (torch's kaiming_uniform(a=sqrt(5)) default). Layers in the module walk's order, each
    weight (in, out) then bias (1, out), from the device's generator (NumPy's global RNG
    on the CPU), so a seed still fixes them. Returns `module`.

    Why: needle.nn.Linear keeps the course's initialisation (its golden values depend on
    it): weight bound sqrt(6 / fan_in), sqrt(6) = 2.45 times torch's, and bias bound
    sqrt(6 / out_features), so D's one-output layer starts with a bias drawn from
    U(-2.45, 2.45) and C's logits with biases of +-0.77: D starts out sure of one domain
    and the reversed gradient F gets is skewed. A PyTorch copy of this setup gained target
    accuracy from the reversal on 3 seeds of 3 with torch's initialisation and lost with
    needle's; F's convolutions (nn.Conv2d) are drawn torch's way already."""
    layers = ([module] if isinstance(module, nn.Linear) else []) + \
        [child for child in module._children() if isinstance(child, nn.Linear)]
    for layer in layers:
        bound = 1.0 / math.sqrt(layer.in_features)
        device, dtype = layer.weight.device, layer.weight.dtype
        layer.weight = nn.Parameter(init.rand(layer.in_features, layer.out_features,
                                              low=-bound, high=bound, device=device,
                                              dtype=dtype))
        if layer.bias is not None:
            layer.bias = nn.Parameter(init.rand(1, layer.out_features, low=-bound,
                                                high=bound, device=device, dtype=dtype))
    return module


class FeatureExtractor(nn.Module):
    """images (N, channels, 28, 28) -> features (N, feature_dim): the paper's MNIST feature
    extractor, conv 5x5 (width) -> ReLU -> 2x2 max pool -> conv 5x5 (3 * width // 2) ->
    ReLU -> 2x2 max pool, no padding, flattened (4 x 4 maps); the paper's 32 and 48
    channels are width=32."""

    def __init__(self, channels=3, width=32, device=None, dtype="float32"):
        super().__init__()
        kw = dict(device=device, dtype=dtype)
        wide = 3 * width // 2
        self.channels = channels
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 5, **kw), nn.ReLU(), nn.MaxPool2d(2),
            # state size: (N, width, 12, 12)
            nn.Conv2d(width, wide, 5, **kw), nn.ReLU(), nn.MaxPool2d(2),
            # state size: (N, wide, 4, 4)
            nn.Flatten())
        self.feature_dim = wide * 4 * 4

    def forward(self, x):
        if len(x.shape) != 4 or tuple(x.shape[1:]) != (self.channels, 28, 28):
            raise ValueError(f"FeatureExtractor: expected images of shape (N, {self.channels}, "
                             f"28, 28), got {x.shape}")
        return self.net(x)


class LabelClassifier(nn.Module):
    """features (N, feature_dim) -> logits (N, classes): the paper's 100-100-10 MLP, its
    Linear layers drawn PyTorch's way (`torch_style_linears`)."""

    def __init__(self, feature_dim, classes=10, hidden=100, device=None, dtype="float32"):
        super().__init__()
        kw = dict(device=device, dtype=dtype)
        self.net = nn.Sequential(nn.Linear(feature_dim, hidden, **kw), nn.ReLU(),
                                 nn.Linear(hidden, hidden, **kw), nn.ReLU(),
                                 nn.Linear(hidden, classes, **kw))
        torch_style_linears(self.net)

    def forward(self, features):
        return self.net(features)


class DomainDiscriminator(nn.Module):
    """features (N, feature_dim) -> one domain logit per image (N,): the paper's 100-1 MLP
    (source: positive, target: negative), its Linear layers drawn PyTorch's way
    (`torch_style_linears`)."""

    def __init__(self, feature_dim, hidden=100, device=None, dtype="float32"):
        super().__init__()
        kw = dict(device=device, dtype=dtype)
        self.net = nn.Sequential(nn.Linear(feature_dim, hidden, **kw), nn.ReLU(),
                                 nn.Linear(hidden, 1, **kw))
        torch_style_linears(self.net)

    def forward(self, features):
        return ops.reshape(self.net(features), (features.shape[0],))


# ---- the data -------------------------------------------------------------------------
class _Labelled:
    """Images and labels indexed together: one domain of gan.batches.Unpaired."""

    def __init__(self, images, labels):
        if len(images) != len(labels):
            raise GANSetupError(f"dann_batches: {len(images)} source images but "
                                f"{len(labels)} labels")
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        return self.images[index], self.labels[index]


def dann_batches(source_images, source_labels, target_images, batch_size):
    """gan.batches.Unpaired over (source images, labels) and the unlabelled target images:
    batches ((x_s, y_s), x_t), `batch_size` images of each domain, each domain shuffled."""
    data = Unpaired(_Labelled(source_images, source_labels), target_images, batch_size)
    data.images = source_images  # what the setup check looks at
    return data


def accuracy(logits, labels):
    """The share of rows whose largest logit is at the label."""
    return float(np.mean(np.argmax(logits, axis=1) == np.asarray(labels)))


# ---- the recipe -----------------------------------------------------------------------
class DANNRecipe(Recipe):
    """F and C trained by `optimizer` (over both), and with `adversarial` (a gan.Adversarial
    whose discriminator is a DomainDiscriminator, or any D of F's features) the domain
    game; `adversarial=None` is the source-only baseline. See the module docstring.

    test_source, test_target: labelled test images (N, C, 28, 28) of each domain, with
    `test_labels` (N,); evaluate() scores the first `eval_samples` of each (all: None); the
    sample picture shows the first `num_samples` with C's predictions.
    """

    objective = None  # the GAN health checks' thresholds do not describe a domain game

    def __init__(self, features, classifier, optimizer, adversarial=None, test_source=None,
                 test_target=None, test_labels=None, eval_samples=None, num_samples=8,
                 device=None, batch_chunk=500):
        if adversarial is not None:
            if adversarial.n_critic != 1 or adversarial.augment is not None \
                    or adversarial.feature_matching:
                raise GANSetupError(
                    "DANNRecipe: the domain discriminator takes one step per step on F's "
                    "features; give an Adversarial without n_critic, augment or "
                    "feature_matching")
            if adversarial._watched is None:
                adversarial.watch(features)  # D's step must leave F without gradients
        self.features, self.classifier, self.optimizer = features, classifier, optimizer
        self.adversarial = adversarial
        self.device = ndl.default_device() if device is None else device
        self.loss = nn.SoftmaxLoss()
        self.test_source, self.test_target, self.test_labels = \
            test_source, test_target, test_labels
        self.eval_samples, self.num_samples, self.chunk = eval_samples, num_samples, batch_chunk
        self.total_steps = None
        self._base_lrs = {"g": optimizer.lr}
        if adversarial is not None:
            self._base_lrs["d"] = adversarial.optimizer.lr

    @property
    def source_only(self):
        return self.adversarial is None

    # ---- the engine's questions -----------------------------------------------------------
    def components(self):
        parts = {"features": self.features, "classifier": self.classifier,
                 "optimizer": self.optimizer}
        if self.adversarial is not None:
            parts["adversarial"] = self.adversarial
        return parts

    def start(self, total_steps):
        self.total_steps = total_steps

    def check(self, data):
        images = getattr(data, "images", None)
        if images is not None and tuple(images.shape[1:]) != (self.features.channels, 28, 28):
            raise GANSetupError(f"DANNRecipe: the source images have shape "
                                f"{tuple(images.shape[1:])}; the feature extractor takes "
                                f"({self.features.channels}, 28, 28)")

    def step(self, batch, step):
        if self.total_steps is None:
            raise GANSetupError("DANNRecipe.step: call start(total_steps) first (the "
                                "schedules follow the training progress)")
        (source, labels), target = batch
        progress = step / self.total_steps
        factor = lr_factor(progress)
        self.optimizer.lr = self._base_lrs["g"] * factor
        figures = {"lr": float(self.optimizer.lr)}
        n, adversarial = len(source), self.adversarial is not None
        images = np.concatenate([source, target]) if adversarial else source
        features = self.features(self._tensor(images))
        source_features, target_features = ops.sections(features, [n, len(images) - n], 0) \
            if adversarial else (features, None)
        logits = self.classifier(source_features)
        loss = class_loss = self.loss(logits, self._tensor(labels))
        if adversarial:
            scale = reversal_scale(progress)
            self.adversarial.optimizer.lr = self._base_lrs["d"] * factor
            reversed_source, reversed_target = ops.sections(
                ops.grad_reverse(features, scale), [n, len(images) - n], 0)
            domain_loss = self.adversarial.objective.discriminator_loss(
                self.adversarial.score(reversed_source), self.adversarial.score(reversed_target))
            loss = class_loss + domain_loss
            figures.update({"lambda": scale, "domain_loss": float(domain_loss.numpy())})
        self.optimizer.reset_grad()
        loss.backward(create_graph=False)
        self.optimizer.step()
        figures.update({"class_loss": float(class_loss.numpy()),
                        "class_accuracy": accuracy(logits.numpy(), labels)})
        if adversarial:  # D's step, on the features made before F's update
            d_figures = self.adversarial.discriminator_step(source_features.detach(),
                                                            target_features.detach())
            figures.update({_DOMAIN_NAMES.get(k, k): v for k, v in d_figures.items()})
        return figures

    def predict(self, images):
        """C(F(images)) as NumPy logits, `batch_chunk` images at a time, eval mode, no
        graph; the networks' modes are restored."""
        return apply_in_chunks((self.features, self.classifier),
                               lambda x: self.classifier(self.features(x)), images,
                               self.device, self.chunk)

    def evaluate(self):
        if self.test_labels is None:
            return {}
        count = self.eval_samples
        scores = {}
        for name, images in (("source_accuracy", self.test_source),
                             ("target_accuracy", self.test_target)):
            if images is not None:
                scores[name] = accuracy(self.predict(images[:count]),
                                        self.test_labels[:count])
        return scores

    def sample(self):
        """The first test images of each domain, one row each, labelled with C's
        predictions."""
        rows, labels = [], []
        for name, images in (("source", self.test_source), ("target", self.test_target)):
            if images is None:
                continue
            shown = images[:self.num_samples]
            predicted = np.argmax(self.predict(shown), axis=1)
            rows.append(shown)
            labels.append(f"{name}: " + " ".join(str(int(d)) for d in predicted))
        return ImageGrid(np.concatenate(rows), rows=len(rows), row_labels=labels)

    def set_learning_rates(self, d_lr=None, g_lr=None):
        if g_lr is not None:
            self._base_lrs["g"] = g_lr
        if d_lr is not None and "d" in self._base_lrs:
            self._base_lrs["d"] = d_lr

    def plot_losses(self, history, path, title):
        """The losses, the accuracies and D's outputs against the step, in three panels."""
        from ..plots import plot_panels  # matplotlib, Agg backend

        return plot_panels(history, path, title, [
            ("loss", ("class_loss", "domain_loss", "d_loss")),
            ("accuracy", ("class_accuracy", "source_accuracy", "target_accuracy")),
            ("D output / scale", ("d_source", "d_target", "lambda"))])

    def _tensor(self, array):
        return ndl.Tensor(array, device=self.device, requires_grad=False)
