"""Score a trained generator with the MNIST-classifier metrics: python -m apps.evaluate --help

    python -m apps.evaluate --checkpoint runs/dcgan          # newest checkpoint of a run
    python -m apps.evaluate --checkpoint runs/dcgan/checkpoints/step_00000937.safetensors
    python -m apps.evaluate --checkpoint runs/cgan           # overall and per digit
    python -m apps.evaluate --real                            # the floor: real digits

Runs of train_dcgan, train_cgan, train_wgan_gp --data mnist and train_stylegan (its
outputs clipped to [-1, 1], as its own --evaluate scores them) get fid, confident,
digits_covered, kl_to_uniform, class_histogram, kid and kid_std, precision and recall,
density and coverage, inception_score and inception_score_std (see gan/metrics.py) against
the first --real_count MNIST test images; a train_cgan run also gets label_kept (the share
of samples the classifier gives the digit they were asked for) and, per digit, the FID
against that digit's test images, label_kept and the confident share. A train_wgan_gp run
on 2-D points (ring8, grid25) gets its mixture's modes covered and high-quality share
instead. The run folder's run.json says which app made it.

The scores go to RUN/eval.json (written atomically; with the checkpoint and its step) and
to the screen: a few readable lines, or the JSON object with --json. --real scores
--num_samples MNIST *training* images instead of generated ones: different real digits, so
its FID (not exactly 0) is the best a generator can hope for with that many samples; it
writes no eval.json.

The classifier must record a test accuracy of at least 98% in its metadata (the shipped
gan/weights/mnist_classifier.safetensors records 99.27%); others are refused.
"""
import json
import os
import sys

import numpy as np

import needle as ndl
from gan.metrics import DEFAULT_CLASSIFIER_PATH, Evaluator, load_classifier
from gan.mixtures import MIXTURES
from needle.fileio import atomic_write

from . import train_stylegan
from .cli import USER_ERRORS, AppParser, one_line, positive_int
from .common import DEFAULT_DATA_DIR, DEVICES, load_mnist_named, resolve_device
from .run_models import WEIGHTS, load_generator, open_run

__all__ = ["build_parser", "main", "evaluate_run", "EVAL_NAME"]

APP = "evaluate"
EVAL_NAME = "eval.json"


def build_parser():
    parser = AppParser(APP, __doc__)
    add = parser.add_argument
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint",
                        help="a run folder (its newest intact checkpoint) or one checkpoint "
                             "file of train_dcgan, train_cgan, train_wgan_gp or "
                             "train_stylegan")
    source.add_argument("--real", action="store_true",
                        help="score real MNIST training images instead of a generator")
    add("--data_dir", "--data-dir", default=DEFAULT_DATA_DIR,
        help="folder with the four MNIST .gz files")
    add("--classifier", default=DEFAULT_CLASSIFIER_PATH, help="classifier weights file")
    add("--num_samples", "--num-samples", type=positive_int, default=2000,
        help="images (or 2-D points) to score")
    add("--real_count", "--real-count", type=positive_int, default=10000,
        help="MNIST test images behind the reference feature statistics")
    add("--seed", type=int, default=0, help="seed of the latent samples' own RandomState")
    add("--batch_size", "--batch-size", type=positive_int, default=500,
        help="images per forward pass")
    add("--latent_dim", "--latent-dim", type=positive_int, default=None,
        help="override the run's latent_dim (None: from run.json or the checkpoint)")
    add("--width", type=positive_int, default=None, help="override the run's generator width")
    add("--image_size", "--image-size", type=positive_int, default=None,
        help="override the run's image size")
    add("--device", choices=sorted(DEVICES), default="cpu_numpy",
        help="cpu_numpy: NumPy; cpu: the course's flat-memory device; cuda: CuPy on a GPU")
    add("--weights", choices=sorted(WEIGHTS), default="auto",
        help="auto: the EMA of G's weights when the run kept one (--ema), else G; g: G "
             "itself; ema: the EMA")
    add("--json", action="store_true", help="print the scores as one JSON object")
    add("--debug", action="store_true", help="show the traceback of an error")
    return parser


def _points(generator, count, seed, device):
    """`count` points from generator(z), z ~ N(0, I) from RandomState(seed)."""
    z = np.random.RandomState(seed).randn(count, generator.latent_dim).astype(np.float32)
    with ndl.no_grad():
        return generator(ndl.Tensor(z, device=device, requires_grad=False)).numpy()


def _evaluator(args, device):
    """The Evaluator against the first --real_count MNIST test images."""
    classifier = load_classifier(args.classifier, device=device)
    return Evaluator.from_dataset(load_mnist_named(args.data_dir, train=False),
                                  args.real_count, classifier, num_samples=args.num_samples,
                                  seed=args.seed, batch_size=args.batch_size)


def evaluate_run(args, device):
    """The scores of the run at args.checkpoint (see the module docstring)."""
    run = open_run(args.checkpoint)
    if run.app == train_stylegan.APP:
        generator = train_stylegan.load_run_generator(run, device, args.weights,
                                                      args.latent_dim, args.width)
    else:
        generator = load_generator(run, device, weights=args.weights,
                                   latent_dim=args.latent_dim, width=args.width,
                                   image_size=args.image_size)
    weights = "ema" if args.weights == "ema" or (args.weights == "auto" and run.args.get("ema")) \
        else "g"
    where = {"app": run.app, "checkpoint": run.checkpoint, "step": run.step,
             "weights": weights}
    if run.is_points:
        mixture = MIXTURES[run.args["data"]]()
        scores = mixture.mode_metrics(_points(generator, args.num_samples, args.seed, device))
        return dict(scores, source="generator", data=run.args["data"],
                    num_samples=args.num_samples, **where), run
    evaluator = _evaluator(args, device)
    made = train_stylegan.clipped_scores(evaluator, generator) \
        if run.app == train_stylegan.APP else evaluator(generator)
    scores = dict(made, source="generator", latent_dim=generator.latent_dim,
                  image_size=generator.image_size, **where)
    scores["reference"] = f"first {min(args.real_count, 10000)} MNIST test images"
    return scores, run


def _summary(scores):
    """A few readable lines for the screen."""
    if "modes_covered" in scores:
        return [f"{scores['modes_covered']} of {scores['n_modes']} modes covered, "
                f"{scores['high_quality']:.1%} of {scores['num_samples']} points of high "
                f"quality ({scores['data']})"]
    lines = [("EMA(G): " if scores.get("weights") == "ema" else "")
             + f"FID {scores['fid']:.2f}, {scores['digits_covered']} of 10 digits covered, "
             f"{scores['confident']:.0%} confident, KL to uniform {scores['kl_to_uniform']:.2f}"
             + (f", label kept {scores['label_kept']:.1%}" if "label_kept" in scores else "")
             + f" ({scores['num_samples']} samples vs the {scores['reference']})",
             f"  KID {scores['kid']:.5f} +- {scores['kid_std']:.5f}, precision "
             f"{scores['precision']:.3f}, recall {scores['recall']:.3f}, density "
             f"{scores['density']:.3f}, coverage {scores['coverage']:.3f}, Inception Score "
             f"{scores['inception_score']:.2f} +- {scores['inception_score_std']:.2f}"]
    for row in scores.get("per_class", []):
        lines.append(f"  digit {row['label']}: FID {row['fid']:.2f}, label kept "
                     f"{row['label_kept']:.1%}, {row['confident']:.0%} confident "
                     f"({row['num_samples']} samples)")
    return lines


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        device = resolve_device(args.device)
        if args.real:
            evaluator = _evaluator(args, device)
            train = load_mnist_named(args.data_dir, train=True)
            images = train.images[:args.num_samples].reshape(-1, 1, 28, 28) * 2 - 1
            scores = dict(evaluator(np.ascontiguousarray(images),
                                    train.labels[:args.num_samples]), source="mnist-train")
            scores["reference"] = f"first {min(args.real_count, 10000)} MNIST test images"
            out, heading = None, "real MNIST training digits"
        else:
            scores, run = evaluate_run(args, device)
            out = atomic_write(os.path.join(run.folder, EVAL_NAME),
                               json.dumps(scores, indent=1) + "\n")
            heading = f"{run.app} run {run.folder}, step {run.step}"
    except USER_ERRORS as error:
        if args.debug:
            raise
        sys.exit(f"{APP}: {one_line(error)}")
    if args.json:
        print(json.dumps(scores))
    else:
        lines = _summary(scores)
        print(f"evaluate: {heading}: {lines[0]}")
        for line in lines[1:]:
            print(line)
        if out is not None:
            print(f"evaluate: scores in {out}")
    return scores


if __name__ == "__main__":
    main()
