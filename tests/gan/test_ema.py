"""gan.EMA: the average against NumPy, buffers copied, checkpoints, and the recipe with it:
updates after every G step, both generators in the picture and the scores, resume bit-exact."""
import json
import os
import signal

import numpy as np
import pytest
from PIL import Image

import needle as ndl
from gan import Adversarial, GANRecipe, Trainer, TrainerConfig, TrainingInterrupted
from gan.batches import Shuffled
from gan.checkpoint import latest_checkpoint
from gan.ema import EMA
from gan.errors import GANSetupError
from gan.images import grid_picture
from gan.models.dcgan import Discriminator, Generator
from gan.objectives import NonSaturating
from gan.samples import Panels
from needle import nn

IMAGES = np.random.RandomState(0).uniform(-1, 1, (48, 1, 28, 28)).astype(np.float32)


def small_net(dtype="float32"):
    np.random.seed(1)
    return nn.Sequential(nn.Linear(3, 4, dtype=dtype), nn.BatchNorm1d(4, dtype=dtype))


def train_a_little(net, rng, dtype):
    """A stand-in for one G step: new weights, and a train-mode forward moving BN's stats."""
    net.load_state_dict({name: rng.randn(*value.shape).astype(dtype)
                         for name, value in net.state_dict().items() if "running" not in name},
                        strict=False)
    net.train()
    net(ndl.Tensor(rng.randn(5, 3).astype(dtype), dtype=dtype, requires_grad=False))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_update_is_the_exponential_average_after_start_step_and_a_copy_before(dtype):
    net, rng, decay, start = small_net(dtype), np.random.RandomState(2), 0.9, 2
    ema = EMA(net, decay=decay, start_step=start)
    reference = {name: value for name, value in net.state_dict().items()}
    for step in range(6):
        train_a_little(net, rng, dtype)
        ema.update(step)
        for name, value in net.state_dict().items():
            if "running" in name or step < start:  # buffers always, weights before start
                reference[name] = value.copy()
            else:  # in the parameters' dtype: decay as that dtype, as a weak Python float is
                reference[name] = (reference[name] * np.dtype(dtype).type(decay)
                                   + value * np.dtype(dtype).type(1 - decay))
        got = ema.state_dict()
        assert got.keys() == reference.keys()
        for name in reference:
            assert got[name].dtype == np.dtype(dtype), name
            if "running" in name or step < start:
                np.testing.assert_array_equal(got[name], reference[name], err_msg=name)
            else:
                np.testing.assert_allclose(got[name], reference[name], rtol=1e-6, atol=1e-7,
                                           err_msg=f"{name} at step {step}")
    # the averaged weights lag G's: after 4 averaged steps they differ
    assert not np.allclose(ema.state_dict()["modules.0.weight"], net.state_dict()["modules.0.weight"])


def test_batchnorm_statistics_are_copied_not_averaged():
    net, rng = small_net(), np.random.RandomState(3)
    ema = EMA(net, decay=0.99)
    for step in range(3):
        train_a_little(net, rng, "float32")
        ema.update(step)
        for name in ("modules.1.running_mean", "modules.1.running_var"):
            np.testing.assert_array_equal(ema.state_dict()[name], net.state_dict()[name])
    assert not np.allclose(net.state_dict()["modules.1.running_mean"], 0)  # they did move


def test_the_copy_is_independent_in_eval_mode_and_needs_no_gradient():
    G = Generator(latent_dim=8, width=4)
    ema = EMA(G)
    assert type(ema.module) is Generator and ema.module is not G
    assert ema.module.training is False and G.training is True
    ema.module.train()
    assert ema.module.training is False  # eval again whenever read
    assert all(not p.requires_grad for p in ema.module.parameters())
    assert all(p.requires_grad for p in G.parameters())
    for ours, theirs in zip(ema.module.parameters(), G.parameters()):
        assert ours is not theirs and ours.device == theirs.device
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    before = ema.state_dict()
    G.load_state_dict({k: v + 1 for k, v in G.state_dict().items()})
    for key, value in ema.state_dict().items():  # G moved, the average waits for update()
        np.testing.assert_array_equal(value, before[key])
    # the average samples like a generator
    z = ndl.Tensor(np.random.RandomState(0).randn(2, 8).astype(np.float32),
                   requires_grad=False)
    assert ema.module(z).shape == (2, 1, 28, 28)


def test_state_dict_round_trip_continues_bit_exactly():
    net, rng = small_net(), np.random.RandomState(4)
    first = EMA(net, decay=0.8)
    for step in range(3):
        train_a_little(net, rng, "float32")
        first.update(step)
    second = EMA(net, decay=0.8)  # starts as a copy of today's G, not of first's average
    second.load_state_dict(first.state_dict())
    assert set(first.state_dict()) == set(net.state_dict())  # G's own key names
    for step in range(3, 6):
        train_a_little(net, rng, "float32")
        first.update(step)
        second.update(step)
    for key, value in first.state_dict().items():
        np.testing.assert_array_equal(second.state_dict()[key], value, err_msg=key)


@pytest.mark.parametrize("kwargs, message", [
    (dict(decay=1.0), r"EMA: decay must be a number in \[0, 1\), got 1\.0"),
    (dict(decay=-0.1), r"EMA: decay must be a number in \[0, 1\), got -0\.1"),
    (dict(decay="0.9"), r"EMA: decay must be a number in \[0, 1\), got '0\.9'"),
    (dict(start_step=-1), r"EMA: start_step must be an integer >= 0, got -1"),
    (dict(start_step=2.5), r"EMA: start_step must be an integer >= 0, got 2\.5"),
    (dict(start_step=None), r"EMA: start_step must be an integer >= 0, got None"),
])
def test_bad_settings_are_one_line_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EMA(small_net(), **kwargs)


class HoldsAModule(nn.Module):
    """A layer keeping a Python module object, which copy.deepcopy cannot copy."""

    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(2, 2)
        self.backend = np

    def forward(self, x):
        return self.layer(x)


def test_an_uncopyable_generator_names_make_copy_which_then_works():
    with pytest.raises(TypeError, match=r"EMA: cannot copy HoldsAModule .*make_copy"):
        EMA(HoldsAModule())
    source = HoldsAModule()
    ema = EMA(source, make_copy=HoldsAModule)
    for key, value in source.state_dict().items():
        np.testing.assert_array_equal(ema.state_dict()[key], value)
    with pytest.raises(TypeError, match="EMA: expected the generator as a needle nn.Module"):
        EMA(object())


# ---- GANRecipe with an EMA, through gan.Trainer -------------------------------------------
class RecordingEMA(EMA):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.steps = []

    def update(self, step):
        self.steps.append(step)
        super().update(step)


def mean_output(generator):
    """An evaluator: the mean of the generator's images on fixed noise (eval mode)."""
    z = ndl.Tensor(np.random.RandomState(9).randn(4, 8).astype(np.float32),
                   requires_grad=False)
    was = generator.training
    generator.eval()
    with ndl.no_grad():
        value = float(generator(z).numpy().mean())
    generator.train(was)
    return {"mean": value}


def make_run(out_dir, recipe_class=GANRecipe, decay=0.5, start_step=0, n_critic=1,
             **config):
    np.random.seed(0)
    G, D = Generator(latent_dim=8, width=4), Discriminator(width=4)
    adversarial = Adversarial(D, NonSaturating(), ndl.optim.Adam(D.parameters(), lr=1e-3),
                              n_critic=n_critic)
    ema = RecordingEMA(G, decay=decay, start_step=start_step)
    recipe = recipe_class(G, adversarial, ndl.optim.Adam(G.parameters(), lr=1e-3), 8,
                          num_samples=16, evaluate=mean_output, ema=ema)
    settings = dict(out_dir=str(out_dir), epochs=2, batch_size=8, checkpoint_every=4,
                    log_every=1, progress=False, report=False)
    settings.update(config)
    return Trainer(recipe, Shuffled(IMAGES, batch_size=8), TrainerConfig(**settings)), recipe


def final_state(out_dir):
    return ndl.load(latest_checkpoint(os.path.join(out_dir, "checkpoints")))


def loaded(state, prefix):
    G = Generator(latent_dim=8, width=4)
    G.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
    return G


def test_the_recipe_updates_after_every_g_step_and_checkpoints_the_average(tmp_path):
    trainer, recipe = make_run(tmp_path, n_critic=2, epochs=1)
    trainer.train()
    assert recipe.ema.steps == [1, 3, 5]  # the G steps of 6 with n_critic = 2
    state = final_state(tmp_path)
    keys = recipe.generator.state_dict().keys()
    assert {k for k in state if k.startswith("ema.")} == {f"ema.{k}" for k in keys}
    for key in keys:  # what the checkpoint holds is the recipe's average
        np.testing.assert_array_equal(state[f"ema.{key}"], recipe.ema.state_dict()[key])
    weights = [k for k in keys if "running" not in k]
    assert any(not np.array_equal(state[f"ema.{k}"], state[f"generator.{k}"])
               for k in weights)
    assert recipe.ema_generator is recipe.ema.module


def test_before_start_step_the_checkpointed_average_is_g(tmp_path):
    make_run(tmp_path, start_step=100, epochs=1)[0].train()
    state = final_state(tmp_path)
    for key in [k for k in state if k.startswith("generator.")]:
        np.testing.assert_array_equal(state["ema." + key[len("generator."):]], state[key])


class InterruptAt(GANRecipe):
    """SIGINT to this process during step 6 (the engine checkpoints there and stops)."""

    def step(self, batch, step):
        figures = super().step(batch, step)
        if step == 5:
            os.kill(os.getpid(), signal.SIGINT)
        return figures


def test_resume_after_an_interrupt_ends_on_the_uninterrupted_average(tmp_path):
    make_run(tmp_path / "straight")[0].train()
    with pytest.raises(TrainingInterrupted, match="interrupted .* at step 6"):
        make_run(tmp_path / "split", recipe_class=InterruptAt)[0].train()
    make_run(tmp_path / "split", resume=True)[0].train()
    straight, split = final_state(tmp_path / "straight"), final_state(tmp_path / "split")
    assert straight.keys() == split.keys() and any(k.startswith("ema.") for k in straight)
    for key in straight:
        np.testing.assert_array_equal(straight[key], split[key], err_msg=key)


def test_scores_and_picture_show_g_and_the_average(tmp_path):
    trainer, recipe = make_run(tmp_path)
    trainer.train()
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text()
               .splitlines()]
    last = [r for r in records if "ema_mean" in r][-1]
    state = final_state(tmp_path)  # the epoch end at step 12 is the final state
    assert last["step"] == 12
    assert last["mean"] == pytest.approx(mean_output(loaded(state, "generator."))["mean"],
                                         abs=1e-6)
    assert last["ema_mean"] == pytest.approx(mean_output(loaded(state, "ema."))["mean"],
                                             abs=1e-6)
    assert last["mean"] != last["ema_mean"]

    picture = recipe.sample()
    assert isinstance(picture, Panels) and list(picture.panels) == ["G", "EMA(G)"]
    g_images = recipe.generate(recipe.fixed_noise)
    ema_images = recipe.generate(recipe.fixed_noise, generator=recipe.ema_generator)
    np.testing.assert_array_equal(picture.panels["G"].images, g_images)
    np.testing.assert_array_equal(picture.panels["EMA(G)"].images, ema_images)
    assert recipe.generator.training and not recipe.ema_generator.training
    # the saved picture holds each generator's titled grid, G's left of EMA(G)'s
    with Image.open(tmp_path / "samples" / "step_00000012.png") as saved:
        pixels, text = np.asarray(saved.convert("L")), dict(saved.text)
    assert text["step"] == "12" and text["title"].endswith("step 12  epoch 2")
    found = {}
    for name, images in (("G", g_images), ("EMA(G)", ema_images)):
        panel = np.asarray(grid_picture(images, title=name).convert("L"))
        h, w = panel.shape
        found[name] = [(y, x, w) for y in range(pixels.shape[0] - h + 1)
                       for x in range(pixels.shape[1] - w + 1)
                       if np.array_equal(pixels[y:y + h, x:x + w], panel)]
        assert len(found[name]) == 1, f"panel {name} not found once"
    (g_top, g_left, g_width), (e_top, e_left, _) = found["G"][0], found["EMA(G)"][0]
    assert g_top == e_top > 0 and e_left >= g_left + g_width  # side by side, under the title


def test_an_ema_of_another_module_is_refused():
    G, D = Generator(latent_dim=8, width=4), Discriminator(width=4)
    adversarial = Adversarial(D, NonSaturating(), ndl.optim.Adam(D.parameters()))
    with pytest.raises(GANSetupError, match="GANRecipe: ema must be gan.EMA.generator. of "
                                            "this recipe's Generator"):
        GANRecipe(G, adversarial, ndl.optim.Adam(G.parameters()), 8,
                  ema=EMA(Generator(latent_dim=8, width=4)))
