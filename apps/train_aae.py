"""Train an adversarial autoencoder (Makhzani et al. 2016) or a VAE (Kingma & Welling 2014)
on MNIST, with the same encoder and decoder (gan.models.autoencoder).

--model aae: the encoder's codes are made to look like samples of --prior by gan.Adversarial
applied to codes (D: an MLP on codes; real = prior samples, fake = codes; the encoder is
the generator), while the decoder reconstructs. Each step runs the paper's two phases: a
reconstruction step of encoder and decoder, then D's step and the encoder's adversarial step
(its own Adam). --adaptive_weight instead adds the encoder's adversarial term to the
reconstruction step, scaled by ||grad L_rec|| / ||grad L_adv|| at the encoder's last layer
(gan.loss_balance) times --adaptive_base, after --warmup_steps steps of reconstruction alone.
--label_prior (the paper's use of labels, sec. 2.3): every digit's prior sample is drawn from
the mixture10 component of its label and D sees the label beside the code, so each digit
gets its own component.
--model vae: the reparameterised ELBO, reconstruction + --beta * KL(q(z|x) || N(0, I)).

Priors (gan.priors): mixture10 (2-D, the default for the AAE) is the paper's mixture of 10
Gaussians: centres on a circle of radius 1.4 at angles 2 pi k / 10, std 0.5 along the radius
and 0.1 across it; normal is N(0, I) of --latent_dim dimensions (the VAE's, and the AAE's
with --prior normal). The reconstruction loss (--reconstruction) is per image, summed over
the pixels: bce, the Bernoulli likelihood of the pixels on [0, 1] (default), or mse, the
squared error on [-1, 1].

Writes into the run folder (--out_dir, default runs/aae or runs/vae), as the other apps:
  report.html, run.json, metrics.jsonl (means every --log_every steps: reconstruction; the
  AAE's d_loss, D(x) on prior samples, D(G(z)) on codes, g_loss (the encoder's adversarial
  term), adaptive_weight; the VAE's kl and loss (the negative ELBO); at each epoch end
  test_mse (held-out reconstruction error on [-1, 1]) and, with --evaluate, the DCGAN's
  scores of --eval_samples decoded prior samples: fid, kid, precision, recall, ... (gan.metrics,
  the shipped MNIST classifier)),
  losses.png, samples/step_XXXXXXXX.png (rows: held-out originals, their reconstructions,
  decoded prior samples), checkpoints/step_XXXXXXXX.safetensors, and at the end
  latent.png (2000 held-out test codes coloured by digit; with --latent_dim above 2 the
  first two coordinates, as the title says), reconstructions.png (16 held-out originals
  above, their reconstructions below) and prior_samples.png (100 decoded prior samples).

Modes of a run folder: (none) a new run, refused if --out_dir holds one; --resume continue it
bit for bit with its own options and target; --more_epochs N; --overwrite move the old run
aside and start afresh; --dry_run 3 steps on random images in a temporary folder (no MNIST
files read, so no FID). Ctrl-C writes a checkpoint and prints how to continue.

The default run: 1 epoch of the 60000 training digits at batch 64 (937 steps), Adam at a
learning rate of 1e-3 (beta1 0.5) for the autoencoder, the encoder's adversarial step and D;
the AAE's took 118 s of CPU on one thread (11 min of wall time on two cores shared with
other jobs at a load average of about 8).

Measured (seed 0, one epoch, 2000 decoded prior samples against the 10000 MNIST test digits,
benchmarks/generative_table.py), FID / KID / precision / recall / digits covered / held-out
MSE:
  --model aae (2-D, mixture10)                 43.8  0.448  0.94  0.00   6  0.199
  --model vae (2-D)                            48.6  0.630  0.88  0.00   6  0.183
  --model aae --prior normal --latent_dim 8    13.3  0.173  0.83  0.25   9  0.106
  --model vae --latent_dim 8                   13.7  0.189  0.79  0.36  10  0.082
The DCGAN's default run (train_dcgan --evaluate, benchmarks/techniques.py, 3 seeds): FID
20.0 +- 1.1, KID 0.236, precision 0.35, recall 0.42, 8.3 digits. 2-D codes keep too little
of a digit for sharp samples (recall 0: no real digit falls within the nearest-neighbour
balls of the blurred decoded samples).
"""
import argparse
import os

import numpy as np

from gan import Adversarial, Trainer
from gan.batches import Shuffled
from gan.loss_balance import AdaptiveWeight
from gan.models.autoencoder import Decoder, Encoder, LabelledCodeCritic
from gan.models.mlp import MLPCritic
from gan.objectives import OBJECTIVES, get_objective
from gan.priors import PRIORS, make_prior
from gan.recipes.aae import RECONSTRUCTIONS, AAERecipe, PriorSampleScores, VAERecipe
from needle import optim

from .cli import AppParser, finish, nonnegative_float, nonnegative_int, positive_int
from .common import (add_adam_options, add_common_options, load_mnist_named, mnist_images,
                     resolve_device, saved_args, trainer_config)

__all__ = ["build_parser", "main", "build"]

APP = "train_aae"
# every objective but the Wasserstein one, which needs a penalty this app does not offer
OBJECTIVE_CHOICES = sorted(set(OBJECTIVES) - {"wasserstein"})
PLOT_COUNT = 2000  # held-out codes in latent.png


def build_parser():
    parser = AppParser(APP, __doc__)
    add_common_options(parser, "aae", epochs=1, checkpoint_every=250, sample_every=150)
    add_adam_options(parser, lr=1e-3)
    add = parser.add_argument
    add("--model", choices=("aae", "vae"), default="aae",
        help="aae: the adversarial autoencoder; vae: the VAE (same encoder and decoder)")
    add("--prior", choices=PRIORS, default=None,
        help="the codes' prior (default: mixture10 for the AAE, normal for the VAE, which "
             "takes no other)%(default).0s")
    add("--latent_dim", "--latent-dim", type=positive_int, default=None,
        help="size of the codes (default: 2; mixture10 is 2-D)%(default).0s")
    add("--width", type=positive_int, default=32,
        help="the encoder's and decoder's conv channel unit")
    add("--hidden", type=positive_int, default=256,
        help="units of their fully connected hidden layer")
    add("--reconstruction", choices=RECONSTRUCTIONS, default="bce",
        help="reconstruction loss per image: bce (Bernoulli, pixels on [0, 1]) or mse")
    add("--beta", type=nonnegative_float, default=1.0,
        help="--model vae: the KL term's weight (1: the ELBO)")
    add("--d_hidden", "--d-hidden", type=positive_int, default=256,
        help="--model aae: units of each of D's hidden layers (an MLP on codes)")
    add("--d_layers", "--d-layers", type=positive_int, default=2,
        help="--model aae: D's hidden ReLU layers")
    add("--label_prior", "--label-prior", action="store_true",
        help="--model aae, mixture10: draw each digit's prior sample from its label's "
             "component and show D the label (Makhzani et al. sec. 2.3)")
    add("--objective", choices=OBJECTIVE_CHOICES, default="non-saturating",
        help="--model aae: the GAN objective on codes")
    add("--adaptive_weight", "--adaptive-weight", action="store_true",
        help="--model aae: add the encoder's adversarial term to the reconstruction step, "
             "scaled by the gradient-norm ratio at the encoder's last layer "
             "(gan.loss_balance), instead of its own step")
    add("--adaptive_base", "--adaptive-base", type=nonnegative_float, default=1.0,
        help="with --adaptive_weight: the base weight the ratio multiplies")
    add("--warmup_steps", "--warmup-steps", type=nonnegative_int, default=0,
        help="with --adaptive_weight: steps of reconstruction alone (no D step) first")
    add("--num_samples", "--num-samples", type=positive_int, default=8,
        help="held-out digits (and prior samples) in each picture (its columns)")
    add("--evaluate", action=argparse.BooleanOptionalAction, default=True,
        help="at each epoch end, score --eval_samples decoded prior samples with the "
             "shipped classifier (FID, KID, precision, recall; gan.metrics), as "
             "train_dcgan --evaluate scores G")
    add("--eval_samples", "--eval-samples", type=positive_int, default=1000,
        help="decoded prior samples per evaluation (with --evaluate)")
    parser.after_parsing.insert(0, check_options)  # before the run folder is settled
    return parser


def check_options(parser, args, argv):
    if args.prior is None:
        args.prior = "normal" if args.model == "vae" else "mixture10"
    if args.latent_dim is None:
        args.latent_dim = 2
    if args.prior == "mixture10" and args.latent_dim != 2:
        parser.error(f"--prior mixture10 is 2-D: --latent_dim must be 2, got "
                     f"{args.latent_dim} (or give --prior normal)")
    if args.model == "vae":
        if args.prior != "normal":
            parser.error("--model vae: the VAE's prior is the standard normal: give "
                         "--prior normal (or --model aae)")
        aae_only = [f"--{name}" for name in ("adaptive_weight", "adaptive_base", "warmup_steps",
                                              "d_hidden", "d_layers", "objective",
                                              "label_prior")
                    if name in parser.given(argv)]
        if aae_only:
            parser.error(f"{', '.join(aae_only)}: options of --model aae (the VAE has no D)")
    elif "beta" in parser.given(argv):
        parser.error("--beta weights the VAE's KL term: give --model vae")
    if args.label_prior and args.prior != "mixture10":
        parser.error("--label_prior draws from the label's mixture component: give --prior "
                     "mixture10")
    if args.warmup_steps and not args.adaptive_weight:
        parser.error("--warmup_steps is the warm-up of --adaptive_weight: give both")
    if args.model == "vae":
        args.default_out_dir = os.path.join("runs", "vae")


# ---- data --------------------------------------------------------------------------------
def held_out(args):
    """(test images NCHW in [-1, 1], their labels): the first max(--eval_samples, 2000)
    MNIST test digits, or random images with --dry_run."""
    count = max(args.num_samples, args.eval_samples, PLOT_COUNT)
    if args.dry_run:
        rng = np.random.RandomState(args.seed + 1)
        count = max(args.num_samples, 64)
        return (rng.uniform(-1, 1, (count, 1, 28, 28)).astype(np.float32),
                rng.randint(0, 10, count))
    test = load_mnist_named(args.data_dir, train=False)
    count = min(count, len(test))
    return (test.images[:count].reshape(count, 1, 28, 28) * 2 - 1,
            test.labels[:count].astype(np.int64))


def scores(args, prior, device):
    """With --evaluate (not on a dry run's random images), the DCGAN's scorer
    (gan.metrics.Evaluator against the MNIST test digits) of decoded prior samples."""
    if not args.evaluate or args.dry_run:
        return None
    from gan.metrics import Evaluator

    evaluator = Evaluator.from_mnist(args.data_dir, num_samples=args.eval_samples)
    return PriorSampleScores(evaluator, prior, args.eval_samples, seed=args.seed, device=device)


# ---- wiring ------------------------------------------------------------------------------
def _adam(args, parameters, network):
    lr = getattr(args, f"{network}_lr") or args.lr
    return optim.Adam(parameters, lr=lr, beta1=args.beta1, beta2=args.beta2)


def build(args):
    """(the AAERecipe or VAERecipe, the batches) that the options describe."""
    device = resolve_device(args.device)
    images, labels = mnist_images(args)
    test_images, test_labels = held_out(args)
    np.random.seed(args.seed)  # the initial weights come from NumPy's global RNG
    kw = dict(device=device)
    encoder = Encoder(args.latent_dim, args.width, args.hidden,
                      variational=args.model == "vae", **kw)
    decoder = Decoder(args.latent_dim, args.width, args.hidden, **kw)
    prior = make_prior(args.prior, args.latent_dim)
    autoencoder = _adam(args, encoder.parameters() + decoder.parameters(), "g")
    common = dict(reconstruction=args.reconstruction, device=device,
                  num_samples=args.num_samples, evaluate=scores(args, prior, device),
                  seed=args.seed, plot_count=PLOT_COUNT)
    if args.model == "vae":
        recipe = VAERecipe(encoder, decoder, autoencoder, prior, test_images, test_labels,
                           beta=args.beta, **common)
    else:
        D = LabelledCodeCritic(args.latent_dim, prior.components, args.d_hidden,
                               args.d_layers, **kw) if args.label_prior else \
            MLPCritic(args.latent_dim, args.d_hidden, args.d_layers, **kw)
        adversarial = Adversarial(D, get_objective(args.objective),
                                  _adam(args, D.parameters(), "d"), generator=encoder)
        balance = AdaptiveWeight(args.adaptive_base, args.warmup_steps) \
            if args.adaptive_weight else None
        encoder_optimizer = None if balance else _adam(args, encoder.parameters(), "g")
        recipe = AAERecipe(encoder, decoder, autoencoder, encoder_optimizer, adversarial,
                           prior, test_images, test_labels, balance=balance,
                           labelled=args.label_prior, **common)
    arrays = (images, labels) if args.model == "aae" and args.label_prior else (images,)
    return recipe, Shuffled(*arrays, batch_size=args.batch_size)


def main(argv=None):
    args = build_parser().parse_args(argv)
    return finish(APP, lambda: train(args), args.out_dir, debug=args.debug)


def train(args):
    recipe, data = build(args)
    config = trainer_config(args, APP)
    record = Trainer(recipe, data, config, run_info={"args": saved_args(args)}).train()
    recipe.write_pictures(args.out_dir)
    return record


if __name__ == "__main__":
    main()
