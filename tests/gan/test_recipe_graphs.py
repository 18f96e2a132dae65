"""What GANRecipe's step records and differentiates: only what the step uses.

A critic-only step (n_critic > 1) takes G's output as data, so G's forward records no graph;
a G step backpropagates into G's parameters alone (gan.adversarial.backward_into), so D's
`.grad` from its own step is left as it was and no D weight gradient is computed.
"""
import numpy as np

import needle as ndl
from gan import Adversarial
from gan.models.mlp import MLPCritic, MLPGenerator
from gan.objectives import Wasserstein
from gan.recipes.gan import GANRecipe


def _recipe(n_critic):
    np.random.seed(0)
    G, D = MLPGenerator(latent_dim=2, hidden=8, layers=2), MLPCritic(hidden=8, layers=2)
    adversarial = Adversarial(D, Wasserstein(), ndl.optim.Adam(D.parameters()),
                              n_critic=n_critic)
    return GANRecipe(G, adversarial, ndl.optim.Adam(G.parameters()), latent_dim=2,
                     num_samples=4)


def test_critic_only_steps_record_no_graph_for_g(monkeypatch):
    recipe = _recipe(n_critic=3)
    seen = []
    step_d = recipe.adversarial.discriminator_step

    def spy(real, fake, cond=None):
        seen.append((fake.requires_grad, fake.op is not None))
        return step_d(real, fake, cond)

    monkeypatch.setattr(recipe.adversarial, "discriminator_step", spy)
    batch = (np.random.randn(6, 2).astype(np.float32),)
    figures = [recipe.step(batch, step) for step in range(6)]
    assert seen == [(False, False), (False, False), (True, True)] * 2
    assert ["g_loss" in f for f in figures] == [False, False, True] * 2


def test_g_step_leaves_the_critics_gradients_alone():
    recipe = _recipe(n_critic=1)
    batch = (np.random.randn(6, 2).astype(np.float32),)
    d_params = recipe.adversarial.optimizer.params
    step_d = recipe.adversarial.discriminator_step
    kept = {}

    def remember(real, fake, cond=None):
        figures = step_d(real, fake, cond)
        kept.update({id(p): p.grad for p in d_params})
        return figures

    recipe.adversarial.discriminator_step = remember
    recipe.step(batch, 0)
    assert all(p.grad is kept[id(p)] for p in d_params)  # the D step's, not the G step's
    assert all(p.grad is not None for p in recipe.g_optimizer.params)
