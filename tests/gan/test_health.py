"""The health monitor: constructed metric sequences fire exactly the expected warnings."""
import json

import numpy as np
import pytest

from gan.health import (SYMPTOMS, HealthMonitor, HealthThresholds, HealthWarning,
                        mean_pairwise_distance)
from gan.objectives import Hinge, LeastSquares, Minimax, NonSaturating, Wasserstein

RNG = np.random.RandomState(0)
REAL = RNG.uniform(-1, 1, (16, 1, 8, 8))


def healthy(step, **changes):
    record = {"step": step, "d_loss": 1.1, "d_real": 0.7, "d_fake": 0.35, "g_loss": 1.2,
              "g_grad_norm": 3.0, "d_grad_norm": 6.0}
    record.update(changes)
    return record


def codes(warnings):
    return [w.code for w in warnings]


def test_a_healthy_run_fires_nothing():
    monitor = HealthMonitor(objective=NonSaturating(), real_images=REAL)
    history = []
    for step in range(50, 2001, 50):  # a long healthy sequence, gently drifting
        drift = step / 2000
        record = healthy(step, d_loss=1.2 - 0.6 * drift, d_real=0.6 + 0.3 * drift,
                         d_fake=0.4 - 0.3 * drift, g_grad_norm=2 + 6 * drift)
        assert monitor.check_interval(record, history) == []
        history.append(record)
    # epoch ends: samples as varied as the data, digits steady
    for step in (500, 1000, 1500, 2000):
        samples = RNG.uniform(-1, 1, (16, 1, 8, 8))
        diversity, found = monitor.check_samples(samples, step)
        assert found == [] and 0.8 < diversity < 1.2
        scores = {"digits_covered": 10 if step > 500 else 9}
        assert monitor.check_scores(scores, history, step) == []
        history.append(dict(scores, step=step))


@pytest.mark.parametrize("record, expected", [
    (healthy(100, d_loss=0.004), ["d_loss_collapsed"]),
    (healthy(100, d_real=0.995, d_fake=0.004), ["d_saturated"]),
    (healthy(100, d_loss=0.003, d_real=0.998, d_fake=0.002),
     ["d_loss_collapsed", "d_saturated"]),
    (healthy(100, g_grad_norm=2e-5), ["g_grad_vanished"]),
    (healthy(100, g_grad_norm=5e4), ["g_grad_exploded"]),
    # close to, but not past, the thresholds
    (healthy(100, d_loss=0.02, d_real=0.985, d_fake=0.02, g_grad_norm=2e-3), []),
    (healthy(100, d_real=0.995, d_fake=0.2), []),  # only one side saturated
])
def test_each_interval_symptom_fires_alone(record, expected):
    monitor = HealthMonitor(objective=NonSaturating())
    assert codes(monitor.check_interval(record)) == expected


def test_g_gradient_against_its_early_level():
    """A minimax run whose D wins: G's gradient falls 1000-fold, though never below the
    absolute floor; measured against the run's first intervals it vanishes at step 250."""
    monitor = HealthMonitor(objective=Minimax())
    norms = [3.2, 0.95, 0.22, 0.15, 0.05, 0.02, 0.0093, 0.0057]
    history, fired = [], []
    for i, norm in enumerate(norms):
        record = healthy(50 * (i + 1), g_grad_norm=norm)
        fired += [(w.step, w.code) for w in monitor.check_interval(record, history)]
        history.append(record)
    assert fired == [(350, "g_grad_vanished"), (400, "g_grad_vanished")]
    # early level 0.95 (the median of 3.2, 0.95, 0.22): 0.0093 < 0.0095
    exploding = history[:3] + [healthy(200, g_grad_norm=80.0)]
    assert codes(monitor.check_interval(healthy(250, g_grad_norm=120.0), exploding)) == \
        ["g_grad_exploded"]
    assert "early level 0.95" in str(monitor.check_interval(healthy(250, g_grad_norm=120.0),
                                                            exploding)[0])


def test_a_sequence_that_goes_wrong_fires_from_the_step_it_does():
    monitor = HealthMonitor(objective=NonSaturating())
    fired = {}
    d_losses = [1.2, 1.0, 0.7, 0.3, 0.05, 0.008, 0.001, 0.0004]
    for i, d_loss in enumerate(d_losses):
        step = 50 * (i + 1)
        d_real, d_fake = 1 - d_loss / 2, d_loss / 2
        for w in monitor.check_interval(healthy(step, d_loss=d_loss, d_real=d_real,
                                                d_fake=d_fake)):
            fired.setdefault(w.code, step)
    assert fired == {"d_loss_collapsed": 300, "d_saturated": 300}


@pytest.mark.parametrize("objective, fires", [(Minimax(), True), (NonSaturating(), True),
                                              (Hinge(), True), (LeastSquares(), True),
                                              (Wasserstein(), False)])
def test_loss_collapse_needs_a_bounded_loss(objective, fires):
    """Wasserstein's loss is unbounded below: a loss near 0 means nothing there."""
    monitor = HealthMonitor(objective=objective)
    assert ("d_loss_collapsed" in codes(monitor.check_interval(healthy(10, d_loss=0.001)))) \
        == fires


def test_saturation_is_only_for_logit_objectives():
    """A critic's scores are not probabilities: 2.0 and -3.0 are not 'saturated'."""
    for objective, fires in ((NonSaturating(), True), (Wasserstein(), False),
                             (Hinge(), False)):
        found = HealthMonitor(objective=objective).check_interval(
            healthy(10, d_real=2.0 if not fires else 0.999, d_fake=-3.0 if not fires
                    else 0.001))
        assert ("d_saturated" in codes(found)) == fires


def test_mode_collapse_on_near_identical_samples():
    monitor = HealthMonitor(real_images=REAL)
    one = RNG.uniform(-1, 1, (1, 1, 8, 8))
    collapsed = one + RNG.normal(0, 0.01, (16, 1, 8, 8))
    diversity, found = monitor.check_samples(collapsed, step=1000)
    assert diversity < 0.05 and codes(found) == ["mode_collapse"]
    assert "sample diversity" in found[0].figure
    # before the warm-up a BatchNorm G's eval-mode grid is near-constant anyway: no warning
    assert monitor.check_samples(collapsed, step=50)[1] == []
    # faint but varied images are not collapse: contrast does not count
    faint_diversity, found = monitor.check_samples(REAL[::-1] * 0.05, step=1000)
    assert found == [] and faint_diversity == pytest.approx(1.0, abs=0.05)
    # identical (here constant) images are
    assert monitor.check_samples(np.full((16, 1, 8, 8), -1.0), step=1000)[0] == 0.0
    # no reference: nothing to compare with
    assert HealthMonitor().check_samples(collapsed, step=1000) == (None, [])


def test_digits_dropped_against_the_best_so_far():
    monitor = HealthMonitor(HealthThresholds(digits_drop=2))
    history = [{"step": 100, "digits_covered": 9}, {"step": 200, "d_loss": 1.0},
               {"step": 300, "digits_covered": 10}]
    assert monitor.check_scores({"digits_covered": 9}, history, 400) == []
    found = monitor.check_scores({"digits_covered": 7}, history, 400)
    assert codes(found) == ["digits_dropped"] and "best of 10" in found[0].figure
    assert monitor.check_scores({"digits_covered": 3}, [], 100) == []  # nothing earlier
    assert monitor.check_scores({"fid": 3.0}, history, 400) == []  # no digits figure


def test_thresholds_are_configurable():
    strict = HealthMonitor(HealthThresholds(d_loss_floor=0.5, g_grad_low=5.0))
    assert codes(strict.check_interval(healthy(10, d_loss=0.4))) == ["d_loss_collapsed",
                                                                     "g_grad_vanished"]
    lenient = HealthMonitor(HealthThresholds(g_grad_high=1e9))
    assert lenient.check_interval(healthy(10, g_grad_norm=5e4)) == []


def test_warnings_name_symptom_figure_and_remedy():
    monitor = HealthMonitor(objective=NonSaturating())
    found = monitor.check_interval(healthy(250, d_loss=0.002, d_real=0.999, d_fake=0.001,
                                           g_grad_norm=1e-6))
    assert set(codes(found)) <= set(SYMPTOMS)
    for warning in found:
        text = str(warning)
        assert text.startswith(f"[{warning.code}] step 250: ")
        assert warning.figure in text and "Try: " in text and warning.remedy
    assert "0.002" in str(found[0]) and "lr" in found[0].remedy
    json.dumps([str(w) for w in found])  # what goes into metrics.jsonl


def test_onsets_show_a_lasting_symptom_once():
    monitor = HealthMonitor(objective=NonSaturating())
    bad = HealthWarning("d_saturated", 1, "s", "f", "r")
    assert monitor.onsets([bad]) == [bad]
    assert monitor.onsets([bad]) == []          # still there: not shown again
    assert monitor.onsets([]) == []
    assert monitor.onsets([bad]) == [bad]       # back again: shown
    assert monitor.onsets([bad], scope="epoch") == [bad]  # scopes are separate


def test_mean_pairwise_distance():
    points = np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 0.0]])
    assert mean_pairwise_distance(points) == pytest.approx((5 + 5 + 0) / 3)
    with pytest.raises(ValueError, match="at least 2"):
        mean_pairwise_distance(points[:1])
