"""Score a trained DCGAN with the MNIST-classifier metrics: python -m apps.evaluate --help

    python -m apps.evaluate --checkpoint runs/dcgan          # newest checkpoint of a run
    python -m apps.evaluate --checkpoint runs/dcgan/checkpoints/step_00000937.safetensors
    python -m apps.evaluate --real                            # the floor: real digits

Prints one JSON object: fid, confident, digits_covered, kl_to_uniform, class_histogram (see
gan/metrics.py), with the checkpoint and its step. The reference statistics are those of
the first --real_count MNIST test images. --real scores --num_samples MNIST *training*
images instead of generated ones: different real digits, so its FID (not exactly 0) is the
best a generator can hope for with that many samples.
"""
import json
import os

import numpy as np

import needle as ndl
from gan.checkpoint import latest_checkpoint
from gan.metrics import DEFAULT_CLASSIFIER_PATH, Evaluator, load_classifier
from gan.models.dcgan import Generator
from needle.data import load_mnist
from needle.serialization import load_metadata

from .common import DEFAULT_DATA_DIR, DEVICES, make_parser, resolve_device

__all__ = ["build_parser", "main", "find_checkpoint", "load_generator"]

_GENERATOR_PREFIX = "generator."


def build_parser():
    parser = make_parser(__doc__.splitlines()[0])
    add = parser.add_argument
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="a train_dcgan run folder (its newest checkpoint) "
                                             "or one checkpoint file")
    source.add_argument("--real", action="store_true",
                        help="score real MNIST training images instead of a generator")
    add("--data_dir", "--data-dir", default=DEFAULT_DATA_DIR,
        help="folder with the four MNIST .gz files")
    add("--classifier", default=DEFAULT_CLASSIFIER_PATH, help="classifier weights file")
    add("--num_samples", "--num-samples", type=int, default=2000, help="images to score")
    add("--real_count", "--real-count", type=int, default=10000,
        help="MNIST test images behind the reference feature statistics")
    add("--seed", type=int, default=0, help="seed of the latent samples' own RandomState")
    add("--batch_size", "--batch-size", type=int, default=500, help="images per forward pass")
    add("--latent_dim", "--latent-dim", type=int, default=None,
        help="override the run's latent_dim (None: from run.json or the checkpoint)")
    add("--width", type=int, default=None, help="override the run's generator width")
    add("--image_size", "--image-size", type=int, default=None,
        help="override the run's image size")
    add("--device", choices=sorted(DEVICES), default="cpu_numpy",
        help="cpu_numpy: NumPy; cpu: the course's flat-memory device; cuda: CuPy on a GPU")
    return parser


def find_checkpoint(path):
    """(checkpoint file, run folder) for a run folder or a checkpoint file."""
    if os.path.isfile(path):
        folder = os.path.dirname(os.path.abspath(path))
        run_dir = os.path.dirname(folder) if os.path.basename(folder) == "checkpoints" \
            else folder
        return path, run_dir
    if not os.path.isdir(path):
        raise SystemExit(f"evaluate: {path} is neither a run folder nor a checkpoint file")
    for folder in (os.path.join(path, "checkpoints"), path):
        checkpoint = latest_checkpoint(folder) if os.path.isdir(folder) else None
        if checkpoint is not None:
            return checkpoint, path
    raise SystemExit(f"evaluate: no intact checkpoint under {path}")


def _run_settings(run_dir, checkpoint):
    """The run's generator settings: run.json's args, else the checkpoint's trainer config."""
    settings = {"latent_dim": 100, "width": 64, "image_size": 28}
    run_json = os.path.join(run_dir, "run.json")
    if os.path.exists(run_json):
        with open(run_json) as f:
            info = json.load(f)
        recorded = dict(info.get("config", {}), **info.get("args", {}))
    else:
        info = json.loads(load_metadata(checkpoint).get("gan.trainer", "{}"))
        recorded = info.get("config", {})
    settings.update({key: recorded[key] for key in settings if recorded.get(key) is not None})
    return settings


def load_generator(checkpoint, run_dir, device=None, **overrides):
    """The DCGAN Generator stored (under "generator.") in `checkpoint`, in eval mode."""
    settings = _run_settings(run_dir, checkpoint)
    settings.update({key: value for key, value in overrides.items() if value is not None})
    generator = Generator(settings["latent_dim"], channels=1, image_size=settings["image_size"],
                          width=settings["width"], device=device)
    state = ndl.load(checkpoint)
    generator.load_state_dict({key[len(_GENERATOR_PREFIX):]: value
                               for key, value in state.items()
                               if key.startswith(_GENERATOR_PREFIX)})
    return generator.eval(), settings


def main(argv=None):
    args = build_parser().parse_args(argv)
    device = resolve_device(args.device)
    classifier = load_classifier(args.classifier, device=device)
    evaluator = Evaluator.from_mnist(args.data_dir, args.real_count, classifier,
                                     num_samples=args.num_samples, seed=args.seed,
                                     batch_size=args.batch_size)
    if args.real:
        train = load_mnist(args.data_dir, train=True)
        images = train.images[:args.num_samples].reshape(-1, 1, 28, 28) * 2 - 1
        scores = dict(evaluator(np.ascontiguousarray(images)), source="mnist-train")
    else:
        checkpoint, run_dir = find_checkpoint(args.checkpoint)
        generator, settings = load_generator(checkpoint, run_dir, device=device,
                                             latent_dim=args.latent_dim, width=args.width,
                                             image_size=args.image_size)
        info = json.loads(load_metadata(checkpoint).get("gan.trainer", "{}"))
        scores = dict(evaluator(generator), source="generator", checkpoint=checkpoint,
                      step=info.get("step"), **settings)
    scores["reference"] = f"first {min(args.real_count, 10000)} MNIST test images"
    print(json.dumps(scores))
    return scores


if __name__ == "__main__":
    main()
