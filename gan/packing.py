"""PacGAN: a discriminator that judges m samples at once (Lin, Khetan, Fanti and Oh 2018,
"PacGAN: The power of two samples in generative adversarial networks", NeurIPS).

Packing (sec. 3): D is given a *pack* of m samples that are either all real or all generated,
concatenated along the feature axis (points, (m * d)) or the channel axis (images,
(m * C, H, W)), and returns one score for the pack. A generator that drops modes makes packs
whose members are too alike, which a packed D sees more easily than single samples: the
m-fold product distributions P^m and Q^m are further apart in total variation the more Q
lacks P's mass (the paper's Theorem 3). Nothing else changes: G, the objective and the
optimisers are those of the unpacked GAN (the paper's PacGAN2 is the GAN of its
experiments with m = 2 and D's first layer m times wider).

    D = Packed(lambda m: MLPCritic(2 * m), pack=2)            # a factory of the wider D,
    D = Packed(Discriminator(channels=3 * 2), pack=2)         # or the wider D itself
    adversarial = Adversarial(D, NonSaturating(), optimizer,
                              penalties=[D.penalty(GradientPenalty(10))])

Batching: a batch of N samples is N / m packs, consecutive samples forming a pack (N must be a
multiple of m). PacGAN's protocol keeps the number of packs per step (100 on the 2-D
mixtures, 64 on Stacked MNIST), so its batches hold 100 m and 64 m samples of each kind;
consecutive samples of a shuffled or freshly drawn batch are independent, so the packs are
random tuples, as the paper draws them. `Packed(x)` returns each pack's score repeated for
its m members, shape (N,) (or (N, 1), ...), so gan.Adversarial and its objectives take it
as one score per sample: a mean over the N repeated scores is the mean over the N / m packs,
value and gradient, exactly PacGAN's loss.

Gradient penalties are taken on packs, as a packed D is a function of the whole pack:
`D.penalty(p)` wraps any gan.penalties penalty so that it sees the packed real and generated
batches (N / m, m * ...) and differentiates D's pack scores with respect to the whole pack,
e.g. WGAN-GP's x_hat = eps * real_pack + (1 - eps) * fake_pack with one eps per pack and
the norm over all m members. The wrapped penalty still goes through Adversarial's scoring (so
through its augmentation, if any); its schedule (`every`, lazy regularisation) is the
wrapped one's. A penalty passed unwrapped would see per-sample gradients of the repeated
scores (m times each member's share), not the pack's: always wrap.
"""
from needle import nn, ops

__all__ = ["Packed", "PackedPenalty", "pack", "unpack"]


class Packed(nn.Module):
    """D on packs of `pack` consecutive samples: (N, ...) -> D's pack scores, each repeated
    `pack` times, (N, ...) (see the module docstring).

    `discriminator` is a module that takes packed input ((N / m, m * d) points, or
    (N / m, m * C, H, W) images), or a factory called as factory(pack) that builds one.
    The module is `self.discriminator` (its state lives under "discriminator." in
    state_dict, as in any parent module).
    """

    def __init__(self, discriminator, pack=2):
        super().__init__()
        if isinstance(pack, bool) or int(pack) != pack or pack < 1:
            raise ValueError(f"Packed: pack must be an integer >= 1, got {pack!r}")
        self.pack = int(pack)
        if not isinstance(discriminator, nn.Module):
            if not callable(discriminator):
                raise TypeError(f"Packed: expected a discriminator module or a factory "
                                f"factory(pack) -> module, got {type(discriminator).__name__}")
            built = discriminator(self.pack)
            if not isinstance(built, nn.Module):
                raise TypeError(f"Packed: the factory returned {type(built).__name__}, not a "
                                "needle nn.Module")
            discriminator = built
        self.discriminator = discriminator

    def pack_scores(self, x):
        """D's scores of the packs of x: (N / m, ...), one per pack."""
        return self.discriminator(pack(x, self.pack))

    def forward(self, x):
        scores = self.pack_scores(x)
        count, rest = scores.shape[0], tuple(scores.shape[1:])
        if count != x.shape[0] // self.pack:
            raise ValueError(f"Packed: {type(self.discriminator).__name__} returned "
                             f"{count} scores for {x.shape[0] // self.pack} packs")
        repeated = ops.broadcast_to(ops.reshape(scores, (count, 1, *rest)),
                                    (count, self.pack, *rest))
        return ops.reshape(repeated, (count * self.pack, *rest))

    def penalty(self, penalty):
        """`penalty` taken on packs (a PackedPenalty): give it to Adversarial's penalties."""
        return PackedPenalty(penalty, self.pack)

    def __repr__(self):
        return f"Packed({type(self.discriminator).__name__}, pack={self.pack})"


class PackedPenalty:
    """A gan.penalties penalty on the packs of a Packed D (see the module docstring).

    Called as Adversarial calls penalties, penalty(score, real, fake) with score running the
    Packed D on (N, ...) samples: the wrapped penalty gets real and fake as packs
    (N / m, m * ...) and a score function of packs whose value is each pack's score and whose
    gradient is the gradient of that score with respect to the whole pack.
    """

    def __init__(self, penalty, pack):
        self.wrapped, self.pack = penalty, int(pack)

    @property
    def every(self):
        return getattr(self.wrapped, "every", 1)

    def applies_at(self, d_step):
        applies = getattr(self.wrapped, "applies_at", None)
        return True if applies is None else applies(d_step)

    def __call__(self, score, real, fake):
        m = self.pack

        def pack_scores(packs):
            repeated = score(unpack(packs, m))  # (N, ...): each pack's score m times
            copies = ops.reshape(repeated, (packs.shape[0], m, *repeated.shape[1:]))
            # the mean of m equal copies is the pack's score; its gradient is the pack's too
            return ops.summation(copies, axes=(1,)) / m

        return self.wrapped(pack_scores, pack(real, m), pack(fake, m))

    def __repr__(self):
        return f"PackedPenalty({self.wrapped!r}, pack={self.pack})"


def pack(x, m):
    """(N, d, ...) -> (N / m, m * d, ...): m consecutive samples side by side on axis 1 (a
    reshape, so free and differentiable); N must be a multiple of m."""
    if len(x.shape) < 2:
        raise ValueError(f"pack: expected a batch of shape (N, features) or (N, C, H, W), "
                         f"got {x.shape}")
    n = x.shape[0]
    if n % m:
        raise ValueError(f"pack: a batch of {n} samples does not split into packs of {m}; "
                         f"use a batch size that is a multiple of {m}")
    return ops.reshape(x, (n // m, m * x.shape[1], *x.shape[2:]))


def unpack(packs, m):
    """The inverse of pack(): (N / m, m * d, ...) -> (N, d, ...)."""
    if len(packs.shape) < 2 or packs.shape[1] % m:
        raise ValueError(f"unpack: packs of shape {packs.shape} do not hold {m} samples "
                         "side by side on axis 1")
    return ops.reshape(packs, (packs.shape[0] * m, packs.shape[1] // m, *packs.shape[2:]))
