"""Train a digit classifier on labelled MNIST that also works on an unlabelled shifted domain.

Domain-adversarial training (DANN, Ganin & Lempitsky 2015; gan/recipes/dann.py): a feature
extractor F and a label classifier C learn the labels of the source digits (MNIST, grey),
while a domain discriminator D, a gan.Adversarial on F's features behind the gradient
reversal layer, learns to tell source from target features and F learns, through the
reversed gradient, features D cannot tell apart. The target domain is MNIST-M-like
(gan/shifted_mnist.py): the same training digits blended onto two-colour textures cut from
other digits, built deterministically from --domain_seed; its labels are never used for
training. --source_only trains F and C alone on the same batches, the baseline.

Default: the first --limit 10000 training digits of each domain, 64 of each per step, 8
epochs (1248 steps), F the paper's (--width 32: conv 5x5 of 32 and 48 channels, each with
ReLU and 2x2 max pooling), C its 100-100-10 and D its 100-1 MLP, C's and D's Linear
layers drawn PyTorch's way (gan.recipes.dann.torch_style_linears). At each
epoch end C is scored on the first --eval_samples test digits of each domain:
target_accuracy (the shifted test digits, textures cut from test digits) and
source_accuracy (MNIST's test digits); the last line of the run shows both. Vary --seed for
several runs on the same target domain.

Writes into the run folder (--out_dir, default runs/dann), as the other apps:
  report.html, run.json, metrics.jsonl (every --log_every steps: class_loss,
  class_accuracy, lr, and with D lambda, domain_loss, d_loss, d_source, d_target; per epoch
  source_accuracy and target_accuracy), losses.png, samples/step_XXXXXXXX.png (test digits
  of each domain with C's predictions), checkpoints/step_XXXXXXXX.safetensors.

Modes of a run folder: (none) a new run, refused if --out_dir holds one; --resume continue it
bit for bit with its own options and target; --more_epochs N; --overwrite move the old run
aside and start afresh; --dry_run 3 steps on random images in a temporary folder. Ctrl-C
writes a checkpoint and prints how to continue.

Optimizers: Adam (--lr 1e-3, --beta1 0.5, --beta2 0.999), one for F and C together (--g_lr,
else --lr) and one for D (--d_lr, else --lr), both annealed by the paper's
lr_p = lr / (1 + 10 p) ** 0.75 over the training progress p (step / the run's total steps).
The reversal's scale follows the paper's lambda_p = 2 / (1 + exp(-10 p)) - 1. Both schedules
follow the run's target: a resume to the same target continues bit for bit, while a new
target (--more_epochs, a new --max_steps) stretches what is left of them. The paper's SGD
(lr 0.01, momentum 0.9) and F with stride-2 convolutions instead of max pooling were
measured and left, with needle's Linear initialisation: with them D won the game (it told
the domains apart at the end, d_source above 0.9) and DANN's target accuracy stayed at
source-only's (0.24 against 0.24 at width 16, seed 0).

Measured with these defaults (`python -m benchmarks.dann_seeds`: seeds 0 1 2, 2000 test
digits per domain, mean +- standard error over the seeds): target accuracy 0.542 +- 0.021
against source-only's 0.386 +- 0.009, per seed 0.560, 0.500, 0.566 against 0.388, 0.400,
0.369. That is a gain on every seed (0.17, 0.10, 0.20; mean 0.157, std 0.050), for 0.03 of
source accuracy (0.943 +- 0.005 against 0.975). Seeds 3 and 4 gain too (0.578 against
0.386, 0.486 against 0.368; over the five seeds 0.538 +- 0.019 against 0.382 +- 0.006, the
smallest gain 0.10). Before C and D were drawn PyTorch's way the figures were
0.356 +- 0.037 against 0.316 +- 0.011, a gain on one seed of three. A default run (seed 0,
one thread) takes 182 s of CPU time with DANN and 76 s source-only; on the busy shared
machine that was 27 and 3.6 minutes of wall time.
"""
import numpy as np

from gan import Adversarial, Trainer
from gan.objectives import Minimax
from gan.recipes.dann import (DANNRecipe, DomainDiscriminator, FeatureExtractor,
                              LabelClassifier, dann_batches)
from gan.shifted_mnist import Domains, load_domains
from needle.optim import Adam

from .cli import AppParser, beta, finish, learning_rate, nonnegative_int, positive_int
from .common import (add_common_options, load_mnist_named, resolve_device, saved_args,
                     trainer_config)

__all__ = ["build_parser", "main", "build"]

APP = "train_dann"


def build_parser():
    parser = AppParser(APP, __doc__)
    add_common_options(parser, "dann", epochs=8, checkpoint_every=250, sample_every=250)
    parser.set_defaults(limit=10000)
    add = parser.add_argument
    add("--lr", type=learning_rate, default=1e-3,
        help="Adam learning rate of F, C and D before the annealing")
    add("--d_lr", "--d-lr", type=learning_rate, default=None,
        help="D's learning rate (default: --lr); with --resume, replaces the saved "
             "one%(default).0s")
    add("--g_lr", "--g-lr", type=learning_rate, default=None,
        help="F and C's learning rate (default: --lr); with --resume, replaces the saved "
             "one%(default).0s")
    add("--beta1", type=beta, default=0.5, help="Adam beta1, in [0, 1)")
    add("--beta2", type=beta, default=0.999, help="Adam beta2, in [0, 1)")
    add("--source_only", "--source-only", action="store_true",
        help="train F and C on the labelled source alone (no domain discriminator): the "
             "baseline")
    add("--domain_seed", "--domain-seed", type=nonnegative_int, default=0,
        help="seed of the shifted domain's textures and colours (the test set's is this + 1)")
    add("--width", type=positive_int, default=32,
        help="F's channel unit: conv layers of width and 3 * width // 2 channels (the "
             "paper's 32 and 48)")
    add("--hidden", type=positive_int, default=100,
        help="hidden units of C's two layers and D's one (the paper: 100)")
    add("--num_samples", "--num-samples", type=positive_int, default=12,
        help="test digits per domain in each sample picture")
    add("--eval_samples", "--eval-samples", type=positive_int, default=2000,
        help="test digits per domain scored at each epoch end (MNIST has 10000)")
    return parser


def load_data(args):
    """The Domains: gan.shifted_mnist's, or with --dry_run random images."""
    if not args.dry_run:
        return load_domains(args.data_dir, seed=args.domain_seed, limit=args.limit,
                            test_limit=args.eval_samples, load=load_mnist_named)
    rng = np.random.RandomState(args.seed)
    count, tests = min(args.limit, 64), min(args.eval_samples, 16)

    def images(n):
        return rng.uniform(-1, 1, (n, 3, 28, 28)).astype(np.float32)
    return Domains(images(count), rng.randint(0, 10, count), images(count), images(tests),
                   images(tests), rng.randint(0, 10, tests))


def build(args):
    """(the DANNRecipe, its batches) that the options describe."""
    device = resolve_device(args.device)
    domains = load_data(args)
    np.random.seed(args.seed)  # the initial weights come from NumPy's global RNG
    kw = dict(device=device)
    features = FeatureExtractor(3, args.width, **kw)
    classifier = LabelClassifier(features.feature_dim, hidden=args.hidden, **kw)
    optimizer = Adam(features.parameters() + classifier.parameters(),
                     lr=args.g_lr or args.lr, beta1=args.beta1, beta2=args.beta2)
    adversarial = None
    if not args.source_only:
        discriminator = DomainDiscriminator(features.feature_dim, hidden=args.hidden, **kw)
        adversarial = Adversarial(
            discriminator, Minimax(),  # D's loss: the logistic loss, source 1, target 0
            Adam(discriminator.parameters(), lr=args.d_lr or args.lr, beta1=args.beta1,
                 beta2=args.beta2),
            generator=features)
    recipe = DANNRecipe(features, classifier, optimizer, adversarial,
                        test_source=domains.test_source_images,
                        test_target=domains.test_target_images,
                        test_labels=domains.test_labels, eval_samples=args.eval_samples,
                        num_samples=args.num_samples, device=device)
    data = dann_batches(domains.source_images, domains.source_labels, domains.target_images,
                        args.batch_size)
    return recipe, data


def main(argv=None):
    args = build_parser().parse_args(argv)
    return finish(APP, lambda: train(args), args.out_dir, debug=args.debug)


def train(args):
    recipe, data = build(args)
    config = trainer_config(args, APP, num_samples=args.num_samples)
    return Trainer(recipe, data, config, run_info={"args": saved_args(args)}).train()


if __name__ == "__main__":
    main()
