"""The modern GAN toolkit's options, shared by the image GAN trainers, and the recipes.

Each flag turns on one technique of gan (see each module's docstring for its paper):

  --spectral_norm        every layer of D spectrally normalised (gan.spectral_norm); D then
                         drops its BatchNorm, as SN-GAN's and StudioGAN's DCGAN do
  --ema DECAY            sample and evaluate an exponential moving average of G's weights
                         (gan.ema), from step --ema_start on
  --diffaugment POLICY   D sees real and generated images through DiffAugment (gan.augment)
  --ada                  ... with ADA's adaptive probability (target --ada_target)
  --r1 GAMMA             R1 penalty on real images (gan.penalties), every --lazy_every steps
  --label_smoothing S    one-sided label smoothing (logit objectives)
  --feature_matching W   G also matches D's mean features (weight W)
  --minibatch_std        a minibatch standard-deviation layer before D's head
  --objective rpgan      the relativistic pairing objective (with --objective)
  --d_lr / --g_lr        separate learning rates (TTUR; add_adam_options)

`--recipe classic|modern` (train_dcgan) picks the values of every technique option not given
on the command line: classic is pytorch/examples' DCGAN (all off), modern the combination
that benchmarks/techniques.py measured best within classic's wall time on 2 cores (see
RECIPES). A resumed run keeps the values it started with.
"""
import argparse

from gan.objectives import SMOOTHABLE

from .cli import float_in, nonnegative_float, nonnegative_int, positive_int

__all__ = ["add_technique_options", "resolve_techniques", "RECIPES", "build_adversarial",
           "build_ema", "discriminator_norm", "TECHNIQUE_DEFAULTS"]

AUGMENTATIONS = ("color", "translation", "cutout")

#: Every technique off: the values of the classic recipe, and of the apps without --recipe.
TECHNIQUE_DEFAULTS = dict(spectral_norm=False, ema=0.0, ema_start=0, diffaugment="", ada=False,
                          ada_target=0.6, r1=0.0, lazy_every=1, label_smoothing=0.0,
                          feature_matching=0.0, minibatch_std=False)

RECIPES = {
    "classic": {},
    # StyleGAN2's lazy R1 (gamma 1 every 16 D steps): the best of the techniques measured
    # by benchmarks/techniques.py at the main job's budget (see the README's table)
    "modern": dict(r1=1.0, lazy_every=16),
}


def augment_policy(text):
    """A comma-separated subset of color, translation, cutout ('' or 'none': off)."""
    text = text.strip()
    if text in ("", "none"):
        return ""
    parts = [part.strip() for part in text.split(",")]
    unknown = [part for part in parts if part not in AUGMENTATIONS]
    if unknown or len(set(parts)) != len(parts):
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated subset of {','.join(AUGMENTATIONS)}, got {text!r}")
    return ",".join(parts)


def add_technique_options(parser, models=True, recipes=False):
    """The toolkit flags; `models`: also the ones that need gan.models.dcgan's D
    (--minibatch_std, --feature_matching); `recipes`: --recipe classic|modern."""
    add = parser.add_argument
    by = "by --recipe" if recipes else "off"
    if recipes:
        add("--recipe", choices=sorted(RECIPES), default="classic",
            help="classic: pytorch/examples' DCGAN; modern: the toolkit combination measured "
                 "best (apps/techniques.py RECIPES); sets every technique option not given")
    add("--spectral_norm", "--spectral-norm", action="store_const", const=True, default=None,
        help=f"spectral normalisation on every layer of D, which then has no BatchNorm "
             f"(default: {by})%(default).0s")
    add("--ema", type=float_in(0.0, 1.0), default=None, metavar="DECAY",
        help=f"sample and evaluate an EMA of G's weights with this decay, e.g. 0.999; 0: "
             f"off (default: {by})%(default).0s")
    add("--ema_start", "--ema-start", type=nonnegative_int, default=None, metavar="STEP",
        help=f"the EMA copies G's weights until this step (default: {by})%(default).0s")
    add("--diffaugment", type=augment_policy, default=None, metavar="POLICY",
        help=f"DiffAugment for D: comma-separated subset of {','.join(AUGMENTATIONS)}; "
             f"'none': off (default: {by})%(default).0s")
    add("--ada", action="store_const", const=True, default=None,
        help="adaptive augmentation probability (StyleGAN2-ADA) for --diffaugment's policy "
             f"(default: {by})%(default).0s")
    add("--ada_target", "--ada-target", type=float_in(0.0, 1.0, high_included=True),
        default=None, metavar="T", help=f"ADA's target for E[sign D(real)] (default: 0.6, {by})%(default).0s")
    add("--r1", type=nonnegative_float, default=None, metavar="GAMMA",
        help=f"R1 gradient penalty on real images with this gamma; 0: off (default: {by})%(default).0s")
    add("--lazy_every", "--lazy-every", type=positive_int, default=None, metavar="K",
        help=f"lazy regularisation: the gradient penalty every K D steps, times K "
             f"(default: 1, {by})%(default).0s")
    add("--label_smoothing", "--label-smoothing", type=float_in(0.0, 0.5), default=None,
        metavar="S",
        help=f"one-sided label smoothing: real targets 1 - S (default: 0, {by})%(default).0s")
    if models:
        add("--feature_matching", "--feature-matching", type=nonnegative_float, default=None,
            metavar="W", help=f"add W * feature matching on D's features to G's loss "
                              f"(default: 0, {by})%(default).0s")
        add("--minibatch_std", "--minibatch-std", action="store_const", const=True,
            default=None, help=f"minibatch standard-deviation layer in D (default: {by})%(default).0s")


def resolve_techniques(parser, args):
    """Fill every technique option left unset (None) from the recipe, else off; after
    parse_args, so a resumed run's saved values stand."""
    recipe = RECIPES[getattr(args, "recipe", None) or "classic"]
    for name, off in TECHNIQUE_DEFAULTS.items():
        if getattr(args, name, None) is None:
            setattr(args, name, recipe.get(name, off))
    objective = getattr(args, "objective", None)
    if args.label_smoothing and objective is not None and objective not in SMOOTHABLE:
        parser.error(f"--label_smoothing applies to the {' and '.join(SMOOTHABLE)} "
                     f"objectives, not --objective {objective}")
    if args.ada and not args.diffaugment:
        parser.error("--ada adapts the probability of --diffaugment's transforms: give "
                     "--diffaugment POLICY too (e.g. translation,cutout)")
    return args


def discriminator_norm(args, norm="batch"):
    """D's normalisation: none under spectral normalisation."""
    return "none" if args.spectral_norm else norm


def build_adversarial(args, discriminator, objective, optimizer, penalties=(), n_critic=1):
    """gan.Adversarial with the options' techniques: SN on D, augmentation, R1 (lazy with
    --lazy_every), feature matching; `penalties` are the app's own."""
    from gan import Adversarial

    if args.spectral_norm:
        from gan.spectral_norm import spectral_norm
        spectral_norm(discriminator)
    penalties = list(penalties)
    if args.r1:
        from gan.penalties import R1
        penalties.append(R1(gamma=args.r1, every=args.lazy_every))
    return Adversarial(discriminator, objective, optimizer, penalties=penalties,
                       n_critic=n_critic, augment=_augment(args),
                       feature_matching=getattr(args, "feature_matching", 0.0) or 0.0)


def _augment(args):
    if not args.diffaugment:
        return None
    from gan.augment import AdaptiveAugment, DiffAugment
    if args.ada:
        return AdaptiveAugment(DiffAugment(args.diffaugment), target=args.ada_target)
    return DiffAugment(args.diffaugment)


def build_ema(args, generator):
    """gan.ema.EMA of G with --ema and --ema_start, or None."""
    if not args.ema:
        return None
    from gan.ema import EMA
    return EMA(generator, decay=args.ema, start_step=args.ema_start)
