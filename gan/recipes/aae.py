"""The adversarial autoencoder (Makhzani et al. 2016) and the VAE (Kingma & Welling 2014) on
one encoder and decoder (gan.models.autoencoder), as recipes of gan.Trainer.

AAERecipe: `Adversarial` applied to codes instead of images. D (a small MLP on codes) is
trained to tell prior samples (real, gan.priors) from the encoder's codes (fake); the
encoder is the generator. Each batch runs the paper's two phases (sec. 2):

    reconstruction  E, Dec:  L_rec(Dec(E(x)), x)                 (the autoencoder's Adam)
    regularisation  D:       adversarial.discriminator_step(z ~ prior, E(x))
                    E:       adversarial.generator_loss(E(x))    (the encoder's own Adam)

With `balance` (a gan.loss_balance.AdaptiveWeight), the encoder's adversarial term joins
the reconstruction step instead, as one loss L_rec + lambda L_adv, lambda from the two
terms' gradient norms at the encoder's last layer (the codes' Linear), after the weight's
warm-up steps of reconstruction alone (no D step either), as in pix2pix.

`labelled=True` is the paper's use of labels in the regularisation (sec. 2.3, fig. 4), with
every digit labelled: the batches are (images, labels), each prior sample is drawn from the
mixture component of its digit (gan.priors.Mixture10.sample(..., labels=)) and D
(gan.models.autoencoder.LabelledCodeCritic) sees the label's one-hot vector beside the code,
real and fake alike; so each digit's codes are pushed into its own component.

VAERecipe: the negative ELBO, per image, averaged over the batch:

    z = mean + exp(log_variance / 2) * eps,  eps ~ N(0, I)      (reparameterised, eq. 10)
    L = L_rec(Dec(z), x) + beta KL(N(mean, diag(exp(log_variance))) || N(0, I))
    KL = 1/2 sum_j (mean_j^2 + exp(log_variance_j) - 1 - log_variance_j)   (appendix B)

L_rec per image, summed over the 784 pixels (`reconstruction_loss`): "bce", the Bernoulli
negative log-likelihood of the pixels on [0, 1] given the decoder's logits (the paper's
MNIST likelihood), or "mse", the squared error on [-1, 1] (a Gaussian of variance 1/2, up to
a constant). Every random draw (eps, prior samples) comes from NumPy's global RNG, which each
checkpoint saves, so a resumed run repeats an uninterrupted one bit for bit.

Logged: reconstruction, and for the AAE d_loss, d_real, d_fake, d_grad_norm (D's step),
g_loss (the encoder's adversarial term), adaptive_weight (with a balance); for the VAE kl
and loss. The picture: held-out originals, their reconstructions (the VAE's from the mean
code) and decoded prior samples (a fixed RandomState(seed)), drawing no global random
numbers. `evaluate` (PriorSampleScores) scores decoded prior samples as the DCGAN's samples
are scored; the recipe adds the held-out reconstruction error (test_mse, on [-1, 1]).
`write_pictures(out_dir)` writes latent.png (held-out codes coloured by digit),
reconstructions.png and prior_samples.png into the run folder.
"""
import os

import numpy as np

import needle as ndl
from needle import nn, ops

from ..adversarial import _global_norm, backward_into
from ..images import save_grid
from ..samples import ImageGrid
from .recipe import Recipe, apply_in_chunks

__all__ = ["AAERecipe", "VAERecipe", "PriorSampleScores", "reconstruction_loss",
           "gaussian_kl", "reparameterise", "encode", "decode", "RECONSTRUCTIONS"]

RECONSTRUCTIONS = ("bce", "mse")
PIXELS = 28 * 28


# ---- the losses --------------------------------------------------------------------------
def reconstruction_loss(logits, images, kind="bce"):
    """Per image, summed over pixels, mean over the batch: "bce" the Bernoulli NLL of
    (images + 1) / 2 under sigmoid(logits); "mse" the squared error of tanh(logits / 2)
    (the decoder's image) against images, both on [-1, 1]."""
    if kind == "bce":
        return nn.BCEWithLogitsLoss()(logits, (images + 1) * 0.5) * PIXELS
    if kind == "mse":
        return nn.MSELoss()(ops.tanh(logits * 0.5), images) * PIXELS
    raise ValueError(f"reconstruction_loss: kind must be one of {', '.join(RECONSTRUCTIONS)},"
                     f" got {kind!r}")


def gaussian_kl(mean, log_variance):
    """KL(N(mean, diag(exp(log_variance))) || N(0, I)) per row, averaged over the rows."""
    terms = mean * mean + ops.exp(log_variance) - 1 - log_variance
    return ops.summation(terms) * (0.5 / mean.shape[0])


def reparameterise(mean, log_variance, eps):
    """mean + exp(log_variance / 2) * eps: a sample that backpropagates into both."""
    return mean + ops.exp(log_variance * 0.5) * eps


# ---- encoding and decoding without a graph -----------------------------------------------
def encode(encoder, images, device, chunk=500):
    """The codes of `images` as NumPy (a variational encoder's means)."""
    def codes(x):
        out = encoder(x)
        return out[0] if encoder.variational else out
    return apply_in_chunks(encoder, codes, images, device, chunk)


def decode(decoder, codes, device, chunk=500):
    """decoder(codes) as NumPy images in [-1, 1]."""
    return apply_in_chunks(decoder, decoder, codes, device, chunk)


class PriorSampleScores:
    """gan.metrics.Evaluator's scores (FID, KID, precision, recall, ...) of `num_samples`
    decoded prior samples, drawn from RandomState(seed): the same codes at every call."""

    def __init__(self, evaluator, prior, num_samples=1000, seed=0, device=None):
        self.evaluator, self.prior = evaluator, prior
        self.num_samples, self.seed = int(num_samples), int(seed)
        self.device = ndl.default_device() if device is None else device

    def __call__(self, decoder):
        codes = self.prior.sample(self.num_samples, np.random.RandomState(self.seed))
        return self.evaluator(decode(decoder, codes, self.device))


# ---- the recipes -------------------------------------------------------------------------
class _AutoencoderRecipe(Recipe):
    """What the AAE and the VAE share: the picture, the scores, the pictures of the run
    folder. test_images / test_labels: held-out digits (the picture's first num_samples,
    the latent plot's first `plot_count`, the reconstruction error's first `test_count`)."""

    def __init__(self, encoder, decoder, optimizer, prior, test_images, test_labels,
                 reconstruction="bce", device=None, num_samples=8, evaluate=None, seed=0,
                 plot_count=2000, test_count=1000):
        if reconstruction not in RECONSTRUCTIONS:
            raise ValueError(f"{type(self).__name__}: reconstruction must be one of "
                             f"{', '.join(RECONSTRUCTIONS)}, got {reconstruction!r}")
        if prior.dim != encoder.latent_dim or decoder.latent_dim != encoder.latent_dim:
            raise ValueError(f"{type(self).__name__}: the encoder's codes ({encoder.latent_dim}"
                             f"-D), the decoder's ({decoder.latent_dim}-D) and the prior "
                             f"({prior!r}, {prior.dim}-D) must agree")
        self.encoder, self.decoder, self.optimizer, self.prior = encoder, decoder, optimizer, \
            prior
        self.reconstruction = reconstruction
        self.device = ndl.default_device() if device is None else device
        self.test_images, self.test_labels = test_images, test_labels
        self.num_samples, self.seed, self.evaluator = int(num_samples), int(seed), evaluate
        self.plot_count, self.test_count = int(plot_count), int(test_count)

    def _tensor(self, array):
        return ndl.Tensor(array, device=self.device, requires_grad=False)

    def _prior_codes(self, count):
        return self.prior.sample(count, np.random.RandomState(self.seed))

    def reconstruct(self, images):
        return decode(self.decoder, encode(self.encoder, images, self.device), self.device)

    def sample(self):
        originals = self.test_images[:self.num_samples]
        rows = [originals, self.reconstruct(originals),
                decode(self.decoder, self._prior_codes(len(originals)), self.device)]
        return ImageGrid(np.concatenate(rows), rows=3,
                         row_labels=["original", "reconstruction", "prior sample"])

    def evaluate(self):
        held_out = self.test_images[:self.test_count]
        error = (self.reconstruct(held_out).astype(np.float64) - held_out) ** 2
        scores = {"test_mse": float(error.mean())}
        if self.evaluator is not None:
            scores.update(self.evaluator(self.decoder))
        return scores

    def write_pictures(self, out_dir):
        """latent.png, reconstructions.png, prior_samples.png in `out_dir`; their paths."""
        from ..plots import plt, save_figure  # matplotlib, Agg backend

        count = min(self.plot_count, len(self.test_images))
        codes = encode(self.encoder, self.test_images[:count], self.device)
        labels = self.test_labels[:count]
        figure, axes = plt.subplots(figsize=(6, 5.4))
        points = axes.scatter(codes[:, 0], codes[:, 1], c=labels, cmap="tab10", vmin=-0.5,
                              vmax=9.5, s=3, alpha=0.7)
        figure.colorbar(points, ax=axes, ticks=range(10), label="digit")
        centres = getattr(self.prior, "centres", None)
        if centres is not None and codes.shape[1] == 2:
            axes.scatter(centres[:, 0], centres[:, 1], marker="x", c="black", s=40,
                         label="prior's component centres")
            axes.legend(loc="upper right", fontsize="small")
        axes.set_aspect("equal", adjustable="datalim")
        shown = "" if codes.shape[1] == 2 else \
            f"\nthe first two of its {codes.shape[1]} coordinates"
        per_digit = ", a component per digit" if getattr(self, "labelled", False) else ""
        axes.set_title(f"{type(self).__name__[:-6]}: {count} held-out codes, prior "
                       f"{self.prior.name}{per_digit}{shown}", fontsize="medium")
        axes.set_xlabel("z[0]")
        axes.set_ylabel("z[1]")
        paths = [save_figure(figure, os.path.join(out_dir, "latent.png"))]
        originals = self.test_images[:16]
        paths.append(save_grid(np.concatenate([originals, self.reconstruct(originals)]),
                               os.path.join(out_dir, "reconstructions.png"), rows=2,
                               row_labels=["original", "reconstruction"]))
        paths.append(save_grid(decode(self.decoder, self._prior_codes(100), self.device),
                               os.path.join(out_dir, "prior_samples.png"), rows=10,
                               title=f"decoded samples of the {self.prior.name} prior"))
        return paths

    def plot_losses(self, history, path, title):
        """Reconstruction, the VAE's KL and loss, the AAE's adversarial figures (and the
        adaptive weight) against the step, the panels a run logged."""
        from ..plots import plot_panels  # matplotlib, Agg backend

        return plot_panels(history, path, title, [
            ("reconstruction", ("reconstruction",)), ("KL, loss", ("kl", "loss")),
            ("adversarial", ("d_loss", "g_loss")), ("D output", ("d_real", "d_fake")),
            ("adaptive weight", ("adaptive_weight",))])


class AAERecipe(_AutoencoderRecipe):
    """The adversarial autoencoder (see the module docstring). optimizer: Adam over the
    encoder's and decoder's parameters (the reconstruction phase); encoder_optimizer: Adam
    over the encoder's alone (the regularisation phase; unused, and may be None, with a
    balance); adversarial: a gan.Adversarial whose D takes (N, latent_dim) codes, or with
    labelled=True codes and one-hot labels (the prior must have components, one per
    class)."""

    def __init__(self, encoder, decoder, optimizer, encoder_optimizer, adversarial, prior,
                 test_images, test_labels, balance=None, labelled=False, **kwargs):
        super().__init__(encoder, decoder, optimizer, prior, test_images, test_labels,
                         **kwargs)
        if labelled and not hasattr(prior, "components"):
            raise ValueError(f"AAERecipe: labelled=True draws each digit's prior sample from "
                             f"its own component, and {prior!r} has none")
        self.labelled = bool(labelled)
        if balance is None and encoder_optimizer is None:
            raise ValueError("AAERecipe: the regularisation phase steps the encoder's own "
                             "optimizer: give encoder_optimizer (or a balance)")
        self.adversarial, self.balance = adversarial, balance
        self.encoder_optimizer = None if balance is not None else encoder_optimizer
        if getattr(adversarial, "_watched", None) is None:
            adversarial.watch(encoder)  # the graph-hygiene checks (gan.Adversarial)

    def components(self):
        parts = {"encoder": self.encoder, "decoder": self.decoder, "optimizer": self.optimizer,
                 "adversarial": self.adversarial}
        if self.encoder_optimizer is not None:
            parts["encoder_optimizer"] = self.encoder_optimizer
        return parts

    def _prior_batch(self, batch):
        """(prior samples, D's condition: the one-hot labels, or None), drawn from NumPy's
        global RNG."""
        count = len(batch[0])
        if not self.labelled:
            return self._tensor(self.prior.sample(count, np.random)), None
        labels = np.asarray(batch[1]).astype(np.int64)
        return (self._tensor(self.prior.sample(count, np.random, labels=labels)),
                self._one_hot(labels))

    def _one_hot(self, labels):
        return self._tensor(np.eye(self.prior.components, dtype=np.float32)[labels])

    def step(self, batch, step):
        x = self._tensor(batch[0])
        codes = self.encoder(x)
        rec = reconstruction_loss(self.decoder.logits(codes), x, self.reconstruction)
        figures = {"reconstruction": float(rec.numpy())}
        if self.balance is not None:
            loss = rec
            if not self.balance.warming_up(step):
                prior, cond = self._prior_batch(batch)
                figures.update(self.adversarial.discriminator_step(prior, codes, cond))
                gan = self.adversarial.generator_loss(codes, cond, balance=self.balance.balance(
                    rec, self.encoder.last_layer.weight))
                figures.update(g_loss=float(gan.numpy()),
                               adaptive_weight=self.balance.last_weight)
                loss = rec + gan
            self._step(self.optimizer, loss, figures, "ae_grad_norm")
            if "g_loss" in figures:
                self.adversarial.check_generator_step()
            return figures
        self._step(self.optimizer, rec, figures, "ae_grad_norm")       # reconstruction phase
        codes = self.encoder(x)                                         # regularisation phase
        prior, cond = self._prior_batch(batch)
        figures.update(self.adversarial.discriminator_step(prior, codes, cond))
        gan = self.adversarial.generator_loss(codes, cond)
        figures["g_loss"] = float(gan.numpy())
        self._step(self.encoder_optimizer, gan, figures, "g_grad_norm")
        self.adversarial.check_generator_step()
        return figures

    @staticmethod
    def _step(optimizer, loss, figures, norm_name):
        optimizer.reset_grad()
        backward_into(loss, optimizer)
        figures[norm_name] = _global_norm(optimizer.params)
        optimizer.step()

    def set_learning_rates(self, d_lr=None, g_lr=None):
        if g_lr is not None:
            for optimizer in (self.optimizer, self.encoder_optimizer):
                if optimizer is not None:
                    optimizer.lr = g_lr
        if d_lr is not None:
            self.adversarial.optimizer.lr = d_lr

    def check(self, data):
        """The encoder, decoder and D on two held-out digits, without a graph: a shape that
        does not fit is named here instead of deep inside the first step."""
        codes = encode(self.encoder, self.test_images[:2], self.device)
        cond = self._one_hot(self.test_labels[:2]) if self.labelled else None
        D = self.adversarial.discriminator
        training = D.training
        D.eval()
        try:
            with ndl.no_grad():
                self.adversarial.score(self._tensor(codes), cond)
        finally:
            D.train(training)


class VAERecipe(_AutoencoderRecipe):
    """The VAE (see the module docstring): the encoder must be variational (mean and
    log-variance heads); the prior is N(0, I) of the codes' dimension (gan.priors.Normal);
    beta weights the KL term (1: the ELBO)."""

    def __init__(self, encoder, decoder, optimizer, prior, test_images, test_labels, beta=1.0,
                 **kwargs):
        if not encoder.variational:
            raise ValueError("VAERecipe: the encoder must be variational (mean and "
                             "log-variance heads): Encoder(..., variational=True)")
        if getattr(prior, "name", None) != "normal":
            raise ValueError(f"VAERecipe: the VAE's prior is the standard normal, got "
                             f"{prior!r}")
        super().__init__(encoder, decoder, optimizer, prior, test_images, test_labels,
                         **kwargs)
        self.beta = float(beta)

    def components(self):
        return {"encoder": self.encoder, "decoder": self.decoder, "optimizer": self.optimizer}

    def step(self, batch, step):
        x = self._tensor(batch[0])
        mean, log_variance = self.encoder(x)
        eps = self._tensor(np.random.standard_normal(mean.shape).astype(np.float32))
        z = reparameterise(mean, log_variance, eps)
        rec = reconstruction_loss(self.decoder.logits(z), x, self.reconstruction)
        kl = gaussian_kl(mean, log_variance)
        loss = rec + kl * self.beta
        self.optimizer.reset_grad()
        loss.backward(create_graph=False)
        figures = {"reconstruction": float(rec.numpy()), "kl": float(kl.numpy()),
                   "loss": float(loss.numpy()), "grad_norm": _global_norm(self.optimizer.params)}
        self.optimizer.step()
        return figures

    def set_learning_rates(self, d_lr=None, g_lr=None):
        if g_lr is not None:
            self.optimizer.lr = g_lr
