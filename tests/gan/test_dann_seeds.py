"""benchmarks.dann_seeds: the accuracies read from a run's metrics, finished runs under
--keep read instead of trained, the per-seed list, mean and standard error, the table."""
import json
import statistics

import pytest

from benchmarks import dann_seeds


def write_run(folder, target, source, step=1248):
    folder.mkdir(parents=True)
    records = [{"step": 156, "epoch": 1, "kind": "epoch", "source_accuracy": 0.5,
                "target_accuracy": 0.1},
               {"step": step, "epoch": 8, "kind": "interval", "class_loss": 0.3},
               {"step": step, "epoch": 8, "kind": "epoch", "source_accuracy": source,
                "target_accuracy": target}]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_finished_runs_are_read_and_summarised_over_the_seeds(tmp_path, capsys):
    figures = {("dann", 0): (0.43, 0.84), ("dann", 1): (0.50, 0.90),
               ("source_only", 0): (0.30, 0.97), ("source_only", 1): (0.33, 0.96)}
    for (config, seed), (target, source) in figures.items():
        write_run(tmp_path / f"{config}-seed{seed}", target, source)
    out = tmp_path / "result.json"
    report = dann_seeds.main(["--seeds", "0", "1", "--keep", str(tmp_path), "--out",
                              str(out), "--jobs", "1"])
    dann = report["configs"]["dann"]
    assert [run["target_accuracy"] for run in dann["runs"]] == [0.43, 0.50]
    assert all(run["reused"] and run["step"] == 1248 for run in dann["runs"])
    assert dann["target_accuracy"]["mean"] == pytest.approx(0.465)
    assert dann["target_accuracy"]["sem"] == pytest.approx(
        statistics.stdev([0.43, 0.50]) / 2 ** 0.5)
    assert report["configs"]["source_only"]["command"] == "apps.train_dann --source_only"
    assert json.loads(out.read_text())["configs"]["dann"]["runs"][1]["source_accuracy"] == 0.9
    capsys.readouterr()
    dann_seeds.main(["--table", str(out)])
    table = capsys.readouterr().out.splitlines()
    assert table[2] == ("| source_only | `python -m apps.train_dann --source_only` | "
                        "0.315 ± 0.015 | 0.965 ± 0.005 | 0.300, 0.330 |")
    assert table[3].startswith("| dann | `python -m apps.train_dann` | 0.465 ± 0.035 |")


def test_a_run_without_epoch_scores_is_a_named_error(tmp_path):
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"kind": "interval"}) + "\n")
    with pytest.raises(RuntimeError, match="no epoch-end target_accuracy"):
        dann_seeds.last_accuracies(str(tmp_path))
