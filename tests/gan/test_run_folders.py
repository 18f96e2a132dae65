"""One run per folder (gan.runfolder): refusal, --overwrite, resume checks, damaged checkpoints
set aside and never the reason an intact one is pruned, the saved target, sample_every."""
import json
import os

import numpy as np
import pytest

import needle as ndl
from gan import RunFolderError
from gan.checkpoint import (checkpoint_info, latest_checkpoint, list_checkpoints,
                            save_checkpoint)
from tests.gan.test_trainer import make_trainer, read_metrics


def manifest(folder):
    return json.loads((folder / "run.json").read_text())


def names(folder):
    return sorted(os.listdir(folder))


def truncate(path):
    raw = path.read_bytes()
    path.write_bytes(raw[:len(raw) // 2])


def test_a_run_records_its_id_app_and_target_in_run_json_and_every_checkpoint(tmp_path):
    make_trainer(tmp_path, app="train_x", max_steps=4).train()
    run = manifest(tmp_path)
    assert len(run["run_id"]) == 32 and run["app"] == "train_x"
    assert run["target"] == {"epochs": 2, "max_steps": 4, "steps": 4}
    assert run["status"] == "finished" and run["step"] == 4
    for path in list_checkpoints(str(tmp_path / "checkpoints")):
        info = checkpoint_info(path)
        assert info["run_id"] == run["run_id"] and info["app"] == "train_x"


def test_a_new_run_in_a_folder_with_a_run_is_refused_and_changes_nothing(tmp_path):
    make_trainer(tmp_path, app="train_x", max_steps=2).train()
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(RunFolderError) as error:
        make_trainer(tmp_path, app="train_x", max_steps=4).train()
    message = str(error.value)
    assert message.startswith(f"{tmp_path} already holds a train_x run (run ")
    assert "step 2 of 2" in message and "--resume" in message and "--overwrite" in message
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_overwrite_moves_the_old_run_aside_and_starts_afresh(tmp_path):
    run = tmp_path / "run"
    make_trainer(run, max_steps=2).train()
    old_id = manifest(run)["run_id"]
    make_trainer(run, max_steps=4, overwrite=True).train()
    (moved,) = [p for p in tmp_path.iterdir() if p.name.startswith("run.old-")]
    assert manifest(moved)["run_id"] == old_id and manifest(moved)["step"] == 2
    assert manifest(run)["run_id"] != old_id and manifest(run)["step"] == 4
    assert [r["step"] for r in read_metrics(run) if "d_loss" in r] == [1, 2, 3, 4]


def test_resume_refuses_another_apps_run(tmp_path):
    make_trainer(tmp_path, app="train_cgan", max_steps=2).train()
    with pytest.raises(RunFolderError, match=r"holds a train_cgan run \(run \w+, step 2 of "
                                             r"2\), not a train_dcgan run; resume it with "
                                             r"python -m apps\.train_cgan --resume"):
        make_trainer(tmp_path, app="train_dcgan", resume=True).train()


def test_resume_refuses_a_checkpoint_of_another_run(tmp_path):
    """Two runs mixed in one folder (by hand): the checkpoint's run id is not run.json's."""
    make_trainer(tmp_path / "a", max_steps=2).train()
    make_trainer(tmp_path / "b", max_steps=4).train()
    foreign = tmp_path / "b" / "checkpoints" / "step_00000004.safetensors"
    os.replace(foreign, tmp_path / "a" / "checkpoints" / "step_00000004.safetensors")
    with pytest.raises(RunFolderError, match=r"step_00000004\.safetensors belongs to run \w+, "
                                             r"not to run \w+ .*the folder mixes two runs"):
        make_trainer(tmp_path / "a", resume=True).train()


def test_a_truncated_newest_checkpoint_is_set_aside_and_the_older_one_resumes(tmp_path,
                                                                              capsys):
    make_trainer(tmp_path / "straight", max_steps=6).train()
    make_trainer(tmp_path / "run", max_steps=4).train()
    folder = tmp_path / "run" / "checkpoints"
    truncate(folder / "step_00000004.safetensors")
    make_trainer(tmp_path / "run", max_steps=6, resume=True).train()
    err = capsys.readouterr().err
    assert "checkpoint " in err and "step_00000004.safetensors is damaged (" in err
    assert "set aside as step_00000004.safetensors.corrupt" in err
    assert "from step 2 of 6" in err
    assert "step_00000004.safetensors.corrupt" in names(folder)
    expected = ndl.load(str(tmp_path / "straight" / "checkpoints" / "step_00000006.safetensors"))
    got = ndl.load(str(folder / "step_00000006.safetensors"))
    for key in expected:
        np.testing.assert_array_equal(expected[key], got[key], err_msg=key)


def test_pruning_never_removes_an_intact_checkpoint_for_a_damaged_one(tmp_path):
    """Checkpoints 2 (intact) and 4 (damaged): saving 6 with keep=2 keeps 6 and 2 and sets
    4 aside, where counting files would have kept 6 and the damaged 4 and deleted 2."""
    G = make_trainer(tmp_path / "models").recipe.generator
    folder = tmp_path / "checkpoints"
    for step in (2, 4):
        save_checkpoint(str(folder), step, {"generator": G}, {"epoch": 0, "position": step})
    truncate(folder / "step_00000004.safetensors")
    heard = []
    save_checkpoint(str(folder), 6, {"generator": G}, {"epoch": 0, "position": 6},
                    report=heard.append)
    assert names(folder) == ["step_00000002.safetensors", "step_00000004.safetensors.corrupt",
                             "step_00000006.safetensors"]
    assert len(heard) == 1 and "step_00000004.safetensors is damaged" in heard[0]
    save_checkpoint(str(folder), 8, {"generator": G}, {"epoch": 0, "position": 8})
    assert names(folder) == ["step_00000004.safetensors.corrupt", "step_00000006.safetensors",
                             "step_00000008.safetensors"]
    assert latest_checkpoint(str(folder)).endswith("step_00000008.safetensors")


def test_resume_with_only_a_damaged_checkpoint_says_so(tmp_path):
    make_trainer(tmp_path, max_steps=2).train()
    truncate(tmp_path / "checkpoints" / "step_00000002.safetensors")
    with pytest.raises(RunFolderError, match=r"nothing to resume in .*has no intact "
                                             r"checkpoint.*--overwrite"):
        make_trainer(tmp_path, resume=True).train()
    assert names(tmp_path / "checkpoints") == ["step_00000002.safetensors.corrupt"]


def test_resume_continues_to_the_saved_target_unless_a_new_one_is_given(tmp_path):
    make_trainer(tmp_path, epochs=2, max_steps=3, checkpoint_every=1).train()
    assert make_trainer(tmp_path, epochs=None, resume=True).train()["step"] == 3  # saved cap
    assert make_trainer(tmp_path, epochs=None, max_steps=5, resume=True).train()["step"] == 5
    assert make_trainer(tmp_path, epochs=None, resume=True).train()["step"] == 5
    assert make_trainer(tmp_path, epochs=2, resume=True).train()["step"] == 12  # new target
    assert manifest(tmp_path)["target"] == {"epochs": 2, "max_steps": None, "steps": 12}


def test_sample_every_writes_grids_between_epoch_ends(tmp_path):
    make_trainer(tmp_path, sample_every=4).train()  # 2 epochs of 6 steps
    grids = names(tmp_path / "samples")
    assert grids == ["step_00000004.png", "step_00000006.png", "step_00000008.png",
                     "step_00000012.png"]
    assert (tmp_path / "report.html").exists()


def test_a_new_run_refuses_a_folder_of_other_files_and_overwrite_moves_it_aside(tmp_path):
    """--out_dir . or ~ by mistake: the run would scatter its files among the user's."""
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(RunFolderError, match=r"mine is not empty \(1 entries: notes\.txt\) "
                                             r"and holds no run; give a new or empty"):
        make_trainer(tmp_path / "mine", max_steps=1).train()
    assert names(tmp_path / "mine") == ["notes.txt"]
    make_trainer(tmp_path / "mine", max_steps=1, overwrite=True).train()
    (moved,) = [p for p in tmp_path.iterdir() if p.name.startswith("mine.old-")]
    assert (moved / "notes.txt").read_text() == "keep me"
    assert "notes.txt" not in names(tmp_path / "mine")


def test_leftovers_of_a_run_killed_before_its_first_checkpoint_count_as_a_run(tmp_path):
    make_trainer(tmp_path, max_steps=1, checkpoint_every=1000).train()
    for path in (tmp_path / "checkpoints").iterdir():
        path.unlink()
    with pytest.raises(RunFolderError, match=r"already holds a gan\.Trainer run \(run \w+, no "
                                             r"checkpoint yet\); start afresh with "
                                             r"--overwrite"):
        make_trainer(tmp_path, max_steps=1).train()


def test_a_run_training_now_is_refused_even_with_overwrite(tmp_path):
    """run.json says "running" in a live process (this machine's init, pid 1, stands in)."""
    import socket

    make_trainer(tmp_path / "run", max_steps=1).train()
    path = tmp_path / "run" / "run.json"
    run = json.loads(path.read_text())
    run.update(status="running", pid=1, host=socket.gethostname())
    path.write_text(json.dumps(run))
    for settings in ({"overwrite": True}, {"resume": True}):
        with pytest.raises(RunFolderError, match=r"run is in use: a gan\.Trainer run \(run \w+, "
                                                 r"step 1 of 1\) is training in process 1; "
                                                 r"wait for it, stop it"):
            make_trainer(tmp_path / "run", max_steps=2, **settings).train()
    assert not [p for p in tmp_path.iterdir() if ".old-" in p.name]
    run.update(pid=2 ** 22 + 12345)  # above pid_max: a process that is gone (killed)
    path.write_text(json.dumps(run))
    make_trainer(tmp_path / "run", max_steps=2, resume=True).train()


def test_a_killed_but_unreaped_process_does_not_hold_the_folder():
    """A rank killed under mpiexec can linger as a zombie where nothing reaps orphans."""
    import socket
    import subprocess
    import time

    from gan.runfolder import _live_pid

    child = subprocess.Popen(["sleep", "0"])
    time.sleep(0.3)  # exited, not yet waited for: a zombie
    manifest = {"status": "running", "pid": child.pid, "host": socket.gethostname()}
    try:
        assert _live_pid(manifest) is None
    finally:
        child.wait()
    alive = subprocess.Popen(["sleep", "30"])
    try:
        assert _live_pid(dict(manifest, pid=alive.pid)) == alive.pid
    finally:
        alive.kill()
        alive.wait()


def test_a_dry_run_that_fails_before_writing_leaves_no_empty_folder(tmp_path):
    import subprocess
    import sys

    env = dict(os.environ, TMPDIR=str(tmp_path))
    result = subprocess.run([sys.executable, "-m", "apps.train_dcgan", "--dry_run", "--device",
                             "cuda"], cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                            env=env, capture_output=True, text=True)
    if result.returncode == 0:
        pytest.skip("cuda() is available here: the dry run did not fail")
    assert "dry run: writing to" in result.stderr
    assert list(tmp_path.iterdir()) == []
