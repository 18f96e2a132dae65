"""apps.common.run_training: the training apps' shared ending."""
import pytest

from apps.common import run_training
from gan import TrainingDiverged


def test_a_diverged_run_exits_naming_the_app_and_the_reason():
    def diverge():
        raise TrainingDiverged("training stopped at step 3: d_loss is nan")

    with pytest.raises(SystemExit, match="^train_x: training stopped at step 3: d_loss is nan$"):
        run_training("train_x", diverge, "runs/x")


def test_a_finished_run_prints_where_its_outputs_are(capsys):
    assert run_training("train_x", lambda: {"step": 1}, "runs/x") == {"step": 1}
    assert capsys.readouterr().out == "train_x: done; outputs in runs/x: {'step': 1}\n"
