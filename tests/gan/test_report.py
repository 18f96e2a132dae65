"""gan.report: report.html from a hand-made run folder: content, escaping, alive vs final,
and folders that are empty, one record long, without run.json or with a cut-short line."""
import errno
import html.parser
import json
import os
import pathlib

import numpy as np
import pytest

from gan import report
from gan.health import HealthWarning
from gan.images import save_grid

VOID = {"meta", "link", "img", "br", "hr", "input", "source"}
COMMAND = "python -m apps.train_dcgan --out_dir 'runs/<b>&co'"
WARNING = HealthWarning("d_saturated", 100, "D(x) - D(G(z)) saturated: D is certain of every "
                        "image", "D(x) = 0.9990 > 0.99 and D(G(z)) = 0.0010 < 0.01",
                        "lower D's learning rate (--d_lr), use the non-saturating objective")


class Page(html.parser.HTMLParser):
    """Tags with their attributes, the text, and a check that elements nest properly."""

    def __init__(self, text):
        super().__init__(convert_charrefs=True)
        self.tags, self.text, self.open = [], [], []
        self.feed(text)
        self.close()
        assert self.open == [], f"unclosed elements: {self.open}"

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag not in VOID:
            self.open.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        assert self.open and self.open[-1] == tag, f"</{tag}> closes {self.open[-1:]}"
        self.open.pop()

    def handle_data(self, data):
        if self.open[-1:] != ["style"]:
            self.text.append(data)

    def all(self, tag, **attrs):
        return [a for t, a in self.tags if t == tag
                and all(a.get(k) == v for k, v in attrs.items())]

    @property
    def words(self):
        return " ".join(" ".join(self.text).split())


def write_records(folder, records, tail=""):
    with open(folder / "metrics.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
        f.write(tail)


def manifest(**extra):
    return dict({"app": "train_dcgan", "command": COMMAND, "seed": 0, "device": "cpu_numpy()",
                 "run_id": "0123456789abcdef",
                 "args": {"lr": 0.0002, "out_dir": "runs/<b>&co", "epochs": 2},
                 "config": {"epochs": 2, "max_steps": None, "health": True},
                 "checkpoints": [{"step": 200, "file": "checkpoints/step_00000200.safetensors"}],
                 "started": "2026-01-01T10:00:00"}, **extra)


def intervals(steps):
    return [{"step": s, "epoch": s // 100, "time": 1000.0 + s, "d_loss": 1.4 - s / 1000,
             "g_loss": 0.8 + s / 1000, "d_real": 0.5 + s / 1000, "d_fake": 0.5 - s / 1000,
             "d_grad_norm": 3.0, "g_grad_norm": 2.0 + s / 100} for s in steps]


@pytest.fixture
def run(tmp_path):
    """A two-epoch run folder: 4 intervals, 2 epoch-end records, 3 grids, a warning."""
    folder = tmp_path / "run"
    (folder / "samples").mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps(manifest()))
    records = intervals([50, 100])
    records[1]["warnings"] = [str(WARNING)]
    records.append({"step": 100, "epoch": 1, "fid": 42.123456, "digits_covered": 9,
                    "class_histogram": [5, 9, 7, 0, 4, 6, 8, 3, 2, 6]})
    records += intervals([150, 200])
    records.append({"step": 200, "epoch": 2, "fid": 30.5, "digits_covered": 10,
                    "class_histogram": [5] * 10})
    write_records(folder, records)
    rng = np.random.RandomState(0)
    for step in (50, 100, 200):
        save_grid(rng.uniform(-1, 1, (4, 1, 8, 8)), str(folder / "samples" /
                                                        f"step_{step:08d}.png"))
    return folder


def read_page(folder):
    return Page((folder / "report.html").read_text(encoding="utf-8"))


def test_the_page_shows_the_run(run):
    path = report.write_report(str(run), alive=False)
    assert path == str(run / "report.html")
    page = read_page(run)
    images = [a["src"] for a in page.all("img")]
    # the latest grid large first, then every grid over time, oldest first
    assert images == ["samples/step_00000200.png", "samples/step_00000050.png",
                      "samples/step_00000100.png", "samples/step_00000200.png"]
    assert all((run / src).is_file() for src in images)
    charts = page.all("svg", **{"class": "chart"})
    assert len(charts) == 3  # losses, D's outputs, gradient norms
    words = page.words
    for text in ("D and G losses", "D loss", "G loss", "D(x)", "D(G(z))", "gradient norms"):
        assert text in words
    # the evaluation table: one row per epoch end, figures rounded, histograms as bars
    assert "42.12" in words and "30.5" in words and "digits_covered" in words
    assert len(page.all("rect", fill="#1f77b4")) >= 20
    # the warning with its remedy, the command and the options
    assert "d_saturated" in words and "100 (1×)" in words
    assert "D(x) = 0.9990 > 0.99" in words and "use the non-saturating objective" in words
    assert COMMAND in words and "0.0002" in words
    assert "finished" in words and "finished at step 200 (2 epochs)" in words
    assert "run 01234567 · started 2026-01-01T10:00:00 · device cpu_numpy()" in words


def test_the_page_is_self_contained(run):
    report.write_report(str(run), alive=True)
    page = read_page(run)
    assert page.all("script") == [] and page.all("link", rel="stylesheet") == []
    for tag, attrs in page.tags:
        for name in ("src", "href"):
            value = attrs.get(name)
            if value is not None:
                assert value.startswith(("samples/", "data:")), (tag, name, value)


def test_text_from_the_run_is_escaped(run):
    hostile = '<img src=x onerror="alert(1)"><script>alert(2)</script>'
    data = manifest(app=hostile, command=hostile, args={hostile: hostile})
    (run / "run.json").write_text(json.dumps(data))
    write_records(run, [dict(intervals([10])[0], warnings=[hostile]),
                        {"step": 10, "epoch": 0, hostile: hostile}])
    report.write_report(str(run), alive=False)
    text = (run / "report.html").read_text()
    page = Page(text)
    assert page.all("script") == []
    assert not any("onerror" in attrs for _, attrs in page.tags)
    assert [a["src"] for a in page.all("img")][0].startswith("samples/")
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in text
    assert page.words.count("alert(2)") >= 5  # title, heading, command, option, warning, score


def test_alive_pages_reload_and_final_ones_do_not(run):
    report.write_report(str(run), alive=True)
    live = read_page(run)
    (refresh,) = live.all("meta", **{"http-equiv": "refresh"})
    assert refresh["content"] == str(report.REFRESH_SECONDS) == "15"
    assert "running" in live.words and "reloads every 15 s" in live.words
    assert "1 steps/s" in live.words  # 50 steps in 50 s, from the records' times
    report.write_report(str(run), alive=False)
    final = read_page(run)
    assert final.all("meta", **{"http-equiv": "refresh"}) == []
    assert "reloads" not in final.words and "running" not in final.words


@pytest.mark.parametrize("case, expected", [
    (dict(status="interrupted"), "interrupted at step 200"),
    (dict(status="diverged"), "diverged at step 200"),
    (dict(target={"steps": 937}), "interrupted at step 200 of 937"),
    (dict(target=200), "finished at step 200 of 200"),
    (dict(config={"epochs": 5}), "not running; last at step 200"),
    (dict(config={"max_steps": 200}), "finished at step 200 (max_steps 200)"),
])
def test_the_final_page_says_how_the_run_ended(run, case, expected):
    (run / "run.json").write_text(json.dumps(manifest(**case)))
    report.write_report(str(run), alive=False)
    assert expected in read_page(run).words


def test_a_caller_that_knows_the_ending_says_it(run):
    report.write_report(str(run), alive=False, status="interrupted")
    page = read_page(run)
    assert "interrupted at step 200" in page.words
    assert page.all("span", **{"class": "status interrupted"})
    report.write_report(str(run), alive=False, status="<stopped by hand>")
    page = read_page(run)
    assert "<stopped by hand> at step 200" in page.words  # shown as given, escaped
    assert page.all("span", **{"class": "status stopped"})


def test_a_run_json_still_saying_running_after_a_kill_is_not_believed(run):
    (run / "run.json").write_text(json.dumps(manifest(status="running",
                                                      target={"steps": 937})))
    report.write_report(str(run), alive=False)
    assert "interrupted at step 200 of 937" in read_page(run).words
    (run / "run.json").write_text(json.dumps(manifest(status="finished")))
    report.write_report(str(run), alive=False)
    assert "finished at step 200" in read_page(run).words


def test_a_nan_loss_reads_as_divergence(run):
    records = intervals([50, 100])
    records[1]["g_loss"] = float("nan")
    write_records(run, records)
    report.write_report(str(run), alive=False)
    page = read_page(run)
    assert "diverged: g_loss is nan at step 100" in page.words
    report.write_report(str(run), alive=False, status="diverged")
    assert "diverged" in read_page(run).words


def test_an_empty_folder_gets_a_page(tmp_path):
    report.write_report(str(tmp_path), alive=True)
    page = read_page(tmp_path)
    words = page.words
    assert "run.json is not written yet" in words and "No sample grid yet" in words
    assert "no values yet" in words and "No epoch has ended yet" in words
    assert "running: no step yet" in words
    report.write_report(str(tmp_path), alive=False)
    assert "not running; last at no step yet" in read_page(tmp_path).words


def test_one_record_is_drawn_as_markers(run):
    write_records(run, intervals([3]))
    report.write_report(str(run), alive=True)
    page = read_page(run)
    assert page.all("polyline") == []
    assert len(page.all("circle")) == 6  # D/G loss, D(x)/D(G(z)), two gradient norms


def test_a_line_cut_short_and_a_broken_manifest_are_survived(run):
    write_records(run, intervals([50, 100]), tail='{"step": 150, "d_lo')
    (run / "run.json").write_text('{"app": "train_dc')
    report.write_report(str(run), alive=True)
    page = read_page(run)
    assert "run.json could not be read" in page.words
    assert len(page.all("polyline")) == 6  # two-point lines from the intact records
    assert "running: step 100" in page.words


def test_sample_every_is_named_while_no_grid_exists(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps(manifest(args={"sample_every": 25})))
    report.write_report(str(tmp_path), alive=True)
    assert "No sample grid yet (one every 25 steps)" in read_page(tmp_path).words


def test_a_long_run_shows_a_sample_of_its_grids(run):
    for step in range(300, 300 + 60 * 10, 10):
        (run / "samples" / f"step_{step:08d}.png").write_bytes(
            (run / "samples" / "step_00000050.png").read_bytes())
    (run / "samples" / ".step_00000999.png.123.abcdef01.tmp").write_bytes(b"half")
    report.write_report(str(run), alive=True)
    page = read_page(run)
    gallery = [a["src"] for a in page.all("img")][1:]
    assert len(gallery) == report.GALLERY_SIZE
    assert gallery[0] == "samples/step_00000050.png"
    assert gallery[-1] == "samples/step_00000890.png"  # the latest is always shown
    assert f"showing {report.GALLERY_SIZE} of 63" in page.words


def test_the_report_is_replaced_atomically(run, monkeypatch):
    path = pathlib.Path(report.write_report(str(run), alive=True))
    before = path.read_bytes()

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match=r"cannot write .*report\.html: No space left"):
        report.write_report(str(run), alive=False)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(os.listdir(run)) == ["metrics.jsonl", "report.html", "run.json", "samples"]
    with pytest.raises(FileNotFoundError, match="write_report: no run folder"):
        report.write_report(str(run / "missing"))
