"""apps.cli.finish: how every training app ends (final line, one-line errors, exit codes)."""
import pytest

from apps.cli import final_line, finish
from gan import TrainingDiverged
from gan.trainer import TrainingAborted, TrainingInterrupted


def test_a_diverged_run_exits_naming_the_app_and_the_reason():
    def diverge():
        raise TrainingDiverged("training stopped at step 3: d_loss is nan")

    with pytest.raises(SystemExit, match="^train_x: training stopped at step 3: d_loss is nan$"):
        finish("train_x", diverge, "runs/x")


def test_a_user_error_is_one_line_and_a_traceback_only_with_debug():
    def missing():
        raise FileNotFoundError(2, "No such file or directory", "data/x.gz")

    with pytest.raises(SystemExit, match="^train_x: No such file or directory: data/x.gz$"):
        finish("train_x", missing, "runs/x")
    with pytest.raises(FileNotFoundError):
        finish("train_x", missing, "runs/x", debug=True)


def test_a_bug_is_not_hidden():
    def bug():
        raise KeyError("oops")

    with pytest.raises(KeyError):
        finish("train_x", bug, "runs/x")


@pytest.mark.parametrize("stop, line", [
    (TrainingInterrupted(212, "runs/x/checkpoints/step_00000212.safetensors", "SIGINT"),
     "train_x: interrupted at step 212; continue with: python -m apps.train_x --resume "
     "--out_dir 'runs/my x'"),
    (TrainingAborted(212, "runs/x/checkpoints/step_00000200.safetensors"),
     "train_x: stopped at once during step 213; the last checkpoint "
     "runs/x/checkpoints/step_00000200.safetensors is intact; continue with: "
     "python -m apps.train_x --resume --out_dir 'runs/my x'"),
])
def test_interrupts_exit_130_with_the_command_to_continue(capsys, stop, line):
    def interrupted():
        raise stop

    with pytest.raises(SystemExit) as exit_:
        finish("train_x", interrupted, "runs/my x")
    assert exit_.value.code == 130
    assert capsys.readouterr().err == line + "\n"


def test_a_finished_run_prints_one_human_line(capsys):
    record = {"step": 937, "epoch": 1, "time": 1796166474.9483018, "d_loss": 0.35012,
              "g_loss": 2.2861, "d_real": 0.8531, "d_fake": 0.1522, "fid": 19.93}
    assert finish("train_x", lambda: record, "runs/x") is record
    out = capsys.readouterr().out
    assert out.startswith("train_x: done in ") and out.count("\n") == 1
    assert out.endswith(": step 937, epoch 1; D loss 0.35, G loss 2.29, D(x) 0.853, "
                        "D(G(z)) 0.152, FID 19.9; outputs in runs/x (open report.html)\n")
    assert "1796166474" not in out


def test_final_line_durations_and_points():
    record = {"step": 1500, "epoch": 1, "modes_covered": 7, "n_modes": 8,
              "high_quality": 0.8312}
    line = final_line("train_wgan_gp", record, "runs/w", 3725)
    assert line == ("train_wgan_gp: done in 1 h 2 min: step 1500, epoch 1; modes covered 7 "
                    "of 8, high quality 83.1%; outputs in runs/w (open report.html)")
    assert "done in 4 min 11 s: step 3;" in final_line("x", {"step": 3, "epoch": 0}, "o", 251)
