"""benchmarks.generative_table: the scores read from a run folder, the markdown table, and
--reuse taking a finished run's scores instead of training."""
import json

import pytest

from benchmarks import generative_table


def run_folder(path, fid):
    path.mkdir()
    records = [{"step": 50, "kind": "interval", "reconstruction": 180.0},
               {"step": 100, "kind": "epoch", "fid": 99.0, "kid": 1.0},
               {"step": 937, "kind": "epoch", "fid": fid, "kid": 0.02, "precision": 0.8,
                "recall": 0.5, "digits_covered": 10, "test_mse": 0.2, "inception_score": 9}]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def test_the_last_epoch_scores_and_the_table(tmp_path):
    run = run_folder(tmp_path / "vae", fid=30.5)
    assert generative_table.scores(run) == {"fid": 30.5, "kid": 0.02, "precision": 0.8,
                                            "recall": 0.5, "digits_covered": 10,
                                            "test_mse": 0.2, "step": 937}
    report = generative_table.main(["--models", "vae", "--reuse", f"vae={run}",
                                    "--out", str(tmp_path / "table.json")])
    row = report["models"]["vae"]
    assert row["fid"] == {"mean": 30.5, "sem": None} and row["runs"][0]["run"] == run
    saved = json.loads((tmp_path / "table.json").read_text())
    assert saved["reused"] == {"vae": run}
    table = generative_table.markdown_table(saved).splitlines()
    assert table[0].startswith("| model | command | FID | KID | precision | recall |")
    assert table[2] == ("| vae | `python -m apps.train_aae --model vae` | 30.5 | 0.020 | "
                        "0.80 | 0.50 | 10.0 | 0.200 |  |")


def test_reuse_mistakes_and_runs_without_scores(tmp_path, capsys):
    with pytest.raises(SystemExit):
        generative_table.main(["--reuse", "gan=somewhere"])
    assert "expected MODEL=RUN_DIR with MODEL one of vae, aae" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        generative_table.main(["--reuse", "vae=x", "--seeds", "0", "1"])
    assert "give one --seeds value" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "metrics.jsonl").write_text("")
    with pytest.raises(RuntimeError, match="no epoch-end scores in metrics.jsonl"):
        generative_table.scores(str(tmp_path / "empty"))
