"""CycleGAN (Zhu et al. 2017): unpaired translation as two Adversarials and two generators.

    G: A -> B, F: B -> A; adv_B owns D_B (real B vs G(A)), adv_A owns D_A (real A vs F(B)).

    loss_G = adv_B.generator_loss(G(a)) + adv_A.generator_loss(F(b))          # eq. 1, twice
           + cycle_weight * (l1(F(G(a)), a) + l1(G(F(b)), b))                   # eq. 2
           + cycle_weight * identity_weight * (l1(G(b), b) + l1(F(a), a))       # sec. 5.2

with cycle_weight = 10 and identity_weight = 0.5 (the authors' --lambda_identity, relative
to the cycle weight, so each identity term weighs 5). Each D then takes one step on its real
images against generated ones drawn through an ImagePool of 50 (sec. 4, "we update the
discriminators using a history of generated images"). Losses are built from ops and never
call backward(); `CycleGAN.step` alone owns zero_grad, backward and step.

With LeastSquares (the paper's choice), D's loss is E[(r - 1)^2]/2 + E[f^2]/2, exactly the
authors' 0.5 * (MSE(D(real), 1) + MSE(D(fake), 0)); G's adversarial term is
E[(f - 1)^2]/2, half of the authors' MSE(D(G(a)), 1), so next to the cycle term the
adversarial term weighs half as much as in their code (pass adversarial_weight=2 to match).

Names in the figures say which domain an image lives in: d_A_* is D_A on domain-A images
(real A vs F(B)); gan_G is G's adversarial loss (judged by D_B), gan_F is F's; cycle_A is
|F(G(a)) - a|, cycle_B is |G(F(b)) - b|; idt_G is |G(b) - b|, idt_F is |F(a) - a|.
"""
import needle as ndl
from needle import nn

from .adversarial import backward_into
from .models.pool import ImagePool

__all__ = ["CycleGAN"]


class CycleGAN:
    """The two generators, their optimizers, the two Adversarials and the two image pools.

    `step(real_A, real_B)` is one training step: one update of G and F together (Adam per
    generator, which is the same update as the authors' single Adam over both parameter
    lists), then one D_A and one D_B update. `schedule(total)` adds the paper's learning
    rate schedule (`schedule_step()` advances it); `components()` is everything a
    checkpoint needs.
    """

    def __init__(self, G, F, adv_A, adv_B, opt_G, opt_F, cycle_weight=10.0,
                 identity_weight=0.5, adversarial_weight=1.0, pool_size=50):
        self.G, self.F, self.adv_A, self.adv_B = G, F, adv_A, adv_B
        self.opt_G, self.opt_F = opt_G, opt_F
        self.cycle_weight, self.identity_weight = float(cycle_weight), float(identity_weight)
        self.adversarial_weight = float(adversarial_weight)
        self.pool_A, self.pool_B = ImagePool(pool_size), ImagePool(pool_size)
        self.l1 = nn.L1Loss()
        self.schedulers = {}

    # ---- the losses -------------------------------------------------------------------
    def generator_loss(self, real_A, real_B):
        """(total G+F loss Tensor, {term: Tensor}, F(B), G(A)); no backward, no update."""
        fake_B = self.G(real_A)                       # G(A)
        rec_A = self.F(fake_B)                        # F(G(A))
        fake_A = self.F(real_B)                       # F(B)
        rec_B = self.G(fake_A)                        # G(F(B))
        terms = {"gan_G": self.adv_B.generator_loss(fake_B),   # D_B(G(A)) -> real
                 "gan_F": self.adv_A.generator_loss(fake_A),   # D_A(F(B)) -> real
                 "cycle_A": self.l1(rec_A, real_A),             # ||F(G(A)) - A||_1
                 "cycle_B": self.l1(rec_B, real_B)}             # ||G(F(B)) - B||_1
        total = (terms["gan_G"] + terms["gan_F"]) * self.adversarial_weight \
            + (terms["cycle_A"] + terms["cycle_B"]) * self.cycle_weight
        if self.identity_weight:
            terms["idt_G"] = self.l1(self.G(real_B), real_B)    # ||G(B) - B||_1
            terms["idt_F"] = self.l1(self.F(real_A), real_A)    # ||F(A) - A||_1
            total = total + (terms["idt_G"] + terms["idt_F"]) \
                * (self.cycle_weight * self.identity_weight)
        return total, terms, fake_A, fake_B

    # ---- one step ---------------------------------------------------------------------
    def step(self, real_A, real_B):
        """One G+F update, then D_A and D_B on pooled fakes; returns {name: float}.

        As in the authors' code, the generators are updated first and the discriminators
        then see the fakes made before that update (through the pools).
        """
        total, terms, fake_A, fake_B = self.generator_loss(real_A, real_B)
        self.opt_G.reset_grad()
        self.opt_F.reset_grad()
        backward_into(total, self.opt_G, self.opt_F)
        self.opt_G.step()
        self.opt_F.step()
        figures = {"g_loss": float(total.numpy())}
        figures.update({name: float(value.numpy()) for name, value in terms.items()})
        for name, adv, pool, real, fake in (("A", self.adv_A, self.pool_A, real_A, fake_A),
                                            ("B", self.adv_B, self.pool_B, real_B, fake_B)):
            pooled = ndl.Tensor(pool.query(fake.numpy()), device=real.device,
                                dtype=real.dtype, requires_grad=False)
            for key, value in adv.discriminator_step(real, pooled).items():
                key = f"d_{name}_{key[2:]}" if key.startswith("d_") else f"{key}_{name}"
                figures[key] = value
        figures["d_loss"] = figures["d_A_loss"] + figures["d_B_loss"]
        return figures

    # ---- schedule and state -----------------------------------------------------------
    def optimizers(self):
        return {"G": self.opt_G, "F": self.opt_F, "D_A": self.adv_A.optimizer,
                "D_B": self.adv_B.optimizer}

    def schedule(self, total, start=None):
        """The paper's schedule (sec. 7.1: 100 epochs at 2e-4, then 100 decaying linearly to
        0) over `total` units, epochs or steps: the base rate until `start` (default
        total // 2), then linear decay to 0. Call `schedule_step()` after each unit."""
        start = total // 2 if start is None else start
        self.schedulers = {name: ndl.optim.LinearDecay(optimizer, start, total)
                           for name, optimizer in self.optimizers().items()}
        return self

    def schedule_step(self):
        for scheduler in self.schedulers.values():
            scheduler.step()

    def learning_rates(self):
        return {f"lr_{name}": float(opt.lr) for name, opt in self.optimizers().items()}

    def components(self):
        """{name: object with state_dict/load_state_dict} for gan.checkpoint."""
        components = {"G": self.G, "F": self.F, "adv_A": self.adv_A, "adv_B": self.adv_B,
                      "opt_G": self.opt_G, "opt_F": self.opt_F,
                      "pool_A": self.pool_A, "pool_B": self.pool_B}
        components.update({f"lr_schedule_{name}": scheduler
                           for name, scheduler in self.schedulers.items()})
        return components
