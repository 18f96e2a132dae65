"""report.html: the page a person looks at while a run trains, and after.

    write_report("runs/dcgan", alive=True)    # after each sample grid: reloads itself
    write_report("runs/dcgan", alive=False)   # at the end: no reload, says how it ended

The page is built from the run folder alone (run.json, metrics.jsonl, samples/step_*.png), so
it can be rewritten at any moment, by the training process or afterwards by anyone, and is
written atomically (needle.fileio). It is self-contained: one HTML file with inline CSS and
inline SVG charts, the grids referenced by relative paths (samples/...), no script and nothing
from the network. It shows the latest grid large, the grids over time, D/G losses and
D(x)/D(G(z)) against the step, the evaluation scores of each epoch end, the health warnings
with their remedies, and the command and configuration. All text from the run is escaped.

Whether a final page says "finished", "interrupted" or "diverged" comes from `status` when
the caller knows it, else from the folder: a "status" in run.json or in the last record (but
not a "running" that no process is behind any more), a NaN/Inf figure (diverged), the step
reached against the run's target (finished, or interrupted short of it).
"""
import datetime
import html
import json
import math
import os
import re
import urllib.parse

from needle.fileio import atomic_write

from .runfiles import read_history
from .svgchart import COLOURS, line_chart

__all__ = ["write_report", "render_report", "run_status", "REFRESH_SECONDS"]

REFRESH_SECONDS = 15
GALLERY_SIZE = 48  # grids shown over time (evenly spaced, the latest always among them)
STATUSES = ("running", "finished", "interrupted", "diverged")
_GRID = re.compile(r"^step_(\d+)\.(?:png|jpe?g)$")
_WARNING = re.compile(r"^\[(?P<code>[^\]]+)\] step (?P<step>\d+): (?P<what>.*?)"
                      r"(?:\. Try: (?P<remedy>.*))?$", re.S)
_SKIP = ("step", "epoch", "time", "warnings", "status", "event", "kind")
_LABELS = {"d_loss": "D loss", "g_loss": "G loss", "d_real": "D(x)", "d_fake": "D(G(z))"}
_SCORE_ORDER = ("fid", "ema_fid", "kid", "ema_kid", "precision", "recall", "density",
                "coverage", "inception_score", "digits_covered", "ema_digits_covered",
                "confident", "kl_to_uniform", "label_kept", "sample_diversity", "num_samples",
                "class_histogram")

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;
  max-width:1150px;padding:12px 20px;color:#1b1f24;background:#fff}
h1{font-size:22px;margin:6px 0}h2{font-size:17px;margin:22px 0 8px;
  border-bottom:1px solid #d0d7de;padding-bottom:3px}
.status{display:inline-block;padding:2px 10px;border-radius:12px;color:#fff;
  font-weight:600;margin-right:8px}
.running{background:#1f6feb}.finished{background:#1a7f37}.interrupted{background:#9a6700}
.diverged{background:#cf222e}.stopped{background:#57606a}
.meta{color:#57606a}.note{color:#9a6700}
.latest img{image-rendering:pixelated;width:100%;max-width:560px;
  border:1px solid #d0d7de}
figure{margin:0}figcaption{color:#57606a;font-size:12px}
.overview{display:flex;flex-wrap:wrap;gap:0 24px}.left{flex:1 1 400px;min-width:0}
.right{flex:0 1 524px}.charts{display:flex;flex-wrap:wrap;gap:10px}
.chart{max-width:100%;height:auto;border:1px solid #d0d7de;background:#fff}
.chart-title{font-weight:600;font-size:13px}.tick,.legend{font-size:11px;fill:#24292f}
.empty{fill:#57606a;font-size:13px}.grid{stroke:#eaeef2}.axis{stroke:#57606a}
.frame{fill:none;stroke:#8c959f}
.gallery{display:flex;flex-wrap:wrap;gap:8px}
.gallery figure{width:132px}.gallery img{width:132px;image-rendering:pixelated;
  border:1px solid #d0d7de}
table{border-collapse:collapse;margin:4px 0}td,th{border:1px solid #d0d7de;
  padding:3px 8px;text-align:left;vertical-align:top}th{background:#f6f8fa}
td.num{text-align:right;font-variant-numeric:tabular-nums}
pre{background:#f6f8fa;padding:8px;overflow-x:auto;white-space:pre-wrap}
code{font-size:12px}.options{columns:3 260px;margin:4px 0 8px}
.options div{break-inside:avoid;padding:1px 0}.warn td:first-child{font-weight:600;color:#cf222e}
"""


# ---- reading the run folder --------------------------------------------------------------
def _read_manifest(out_dir):
    """(run.json as a dict, a note for the page or None)."""
    path = os.path.join(out_dir, "run.json")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return {}, "run.json is not written yet: no command or configuration to show"
    except (OSError, ValueError) as error:
        return {}, f"run.json could not be read ({error})"
    if not isinstance(data, dict):
        return {}, "run.json does not hold an object"
    return data, None


def _read_records(out_dir):
    """(metrics records, a note or None); lines cut short by a kill are skipped."""
    try:
        return read_history(os.path.join(out_dir, "metrics.jsonl")), None
    except (OSError, ValueError) as error:
        return [], f"metrics.jsonl could not be read ({error})"


def _grids(out_dir):
    """[(step, relative path)] of the sample grids, by step."""
    folder = os.path.join(out_dir, "samples")
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    found = [(int(m.group(1)), name) for name in names if (m := _GRID.match(name))]
    return [(step, f"samples/{name}") for step, name in sorted(found)]


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_interval(record):
    """An interval's means (losses, D outputs) rather than an epoch end's scores."""
    if "kind" in record:
        return record["kind"] == "interval"
    return any(key.endswith("_loss") for key in record)


# ---- how the run stands ------------------------------------------------------------------
def _target_steps(manifest):
    """The step the run aims for, where run.json tells it."""
    target = manifest.get("target")
    if _number(target):
        return int(target)
    if isinstance(target, dict):
        for key in ("steps", "total_steps", "max_steps"):
            if _number(target.get(key)):
                return int(target[key])
    return None


def _last_step(records, manifest):
    steps = [r["step"] for r in records if _number(r.get("step"))]
    steps += [c["step"] for c in manifest.get("checkpoints", []) or []
              if isinstance(c, dict) and _number(c.get("step"))]
    return max(steps) if steps else None


def _divergence(records):
    """(step, figure, value) of the first NaN/Inf figure in the records, or None."""
    for record in records:
        for key, value in record.items():
            if key not in _SKIP and _number(value) and not math.isfinite(value):
                return record.get("step"), key, value
    return None


def run_status(manifest, records, alive=False, status=None):
    """(status, one line saying it). The caller's `status` when given (the engine's
    "finished", "interrupted", "diverged"); else "running" while alive; else what the folder
    tells: run.json's or the last record's status (not a "running" that no process is
    behind any more), a NaN/Inf figure, the last step against the target; else "stopped"."""
    step = _last_step(records, manifest)
    target = _target_steps(manifest)
    where = "no step yet" if step is None else f"step {step}"
    if target is not None and step is not None:
        where += f" of {target}"
    diverged = _divergence(records)
    if status or alive:
        state, why = (str(status) if status else "running"), ""
    else:
        state, why = _ending(manifest, records, step, target)
    if state == "running":
        return state, f"running: {where}"
    if state == "diverged" and diverged:
        return state, f"diverged: {diverged[1]} is {diverged[2]} at step {diverged[0]}"
    if state == "stopped":
        return state, f"not running; last at {where}"
    return state, f"{state} at {where}{why}"


def _ending(manifest, records, step, target):
    """(status, why) of a run that no process is training any more, as far as its folder
    tells."""
    last = records[-1] if records else {}
    told = manifest.get("status") or last.get("status") or last.get("event")
    if told in STATUSES and told != "running":
        return told, ""
    if _divergence(records):
        return "diverged", ""
    if target is not None and step is not None:
        return ("finished" if step >= target else "interrupted"), ""
    config = manifest.get("config") or {}
    if step is not None and _number(config.get("max_steps")) and step >= config["max_steps"]:
        return "finished", f" (max_steps {config['max_steps']})"
    ended = [r["epoch"] for r in records if not _is_interval(r) and _number(r.get("epoch"))]
    if _number(config.get("epochs")) and ended and max(ended) >= config["epochs"]:
        return "finished", f" ({config['epochs']} epochs)"
    return "stopped", ""


# ---- page parts --------------------------------------------------------------------------
def _e(value):
    return html.escape(str(value))


def _format(value):
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def _src(relative):
    return html.escape(urllib.parse.quote(relative))


def _header(out_dir, manifest, records, status, line, alive):
    app = manifest.get("app") or "run"
    name = os.path.basename(os.path.abspath(out_dir))
    facts = []
    if manifest.get("run_id"):
        facts.append(f"run {_e(str(manifest['run_id'])[:8])}")
    for key in ("started", "device"):
        if manifest.get(key):
            facts.append(f"{key} {_e(manifest[key])}")
    now = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    facts.append(f"page written {now}")
    rate = _rate(records, manifest)
    if rate and alive:
        facts.append(rate)
    reload = f"; this page reloads every {REFRESH_SECONDS} s" if alive else ""
    style = status if status in STATUSES else "stopped"
    return (f"<h1>{_e(app)} &middot; {_e(name)}</h1>"
            f'<p><span class="status {style}">{_e(status)}</span>{_e(line)}{reload}</p>'
            f'<p class="meta">{" &middot; ".join(facts)}</p>')


def _rate(records, manifest):
    """"N steps/s, about M min left" from the last two timed interval records."""
    timed = [r for r in records if _is_interval(r) and _number(r.get("time"))
             and _number(r.get("step"))]
    if len(timed) < 2 or timed[-1]["time"] <= timed[-2]["time"]:
        return None
    rate = (timed[-1]["step"] - timed[-2]["step"]) / (timed[-1]["time"] - timed[-2]["time"])
    if rate <= 0:
        return None
    text = f"{rate:.3g} steps/s"
    target = _target_steps(manifest)
    if target is not None and target > timed[-1]["step"]:
        text += f", about {math.ceil((target - timed[-1]['step']) / rate / 60)} min left"
    return text


def _latest(grids, manifest):
    if not grids:
        every = (manifest.get("args") or {}).get("sample_every") \
            or (manifest.get("config") or {}).get("sample_every")
        when = f" (one every {_e(every)} steps)" if every else ""
        return f"<h2>Latest samples</h2><p>No sample grid yet{when}.</p>"
    step, path = grids[-1]
    return (f'<h2>Latest samples</h2><figure class="latest"><img src="{_src(path)}" '
            f'alt="samples at step {step}"><figcaption>step {step} '
            f"({len(grids)} grid{'s' if len(grids) != 1 else ''} so far)</figcaption>"
            "</figure>")


def _gallery(grids):
    if len(grids) < 2:
        return ""
    shown = grids
    if len(grids) > GALLERY_SIZE:
        picks = {round(i * (len(grids) - 1) / (GALLERY_SIZE - 1)) for i in range(GALLERY_SIZE)}
        shown = [grids[i] for i in sorted(picks)]
    note = f" (showing {len(shown)} of {len(grids)})" if len(shown) < len(grids) else ""
    items = "".join(f'<figure><img src="{_src(path)}" alt="samples at step {step}" '
                    f'loading="lazy"><figcaption>step {step}</figcaption></figure>'
                    for step, path in shown)
    return f'<h2>Samples over time{note}</h2><div class="gallery">{items}</div>'


def _series(records, keys):
    return [(_LABELS.get(key, key), [(r["step"], float(r[key])) for r in records
                                     if _number(r.get(key)) and _number(r.get("step"))])
            for key in keys]


def _charts(intervals):
    keys = list(dict.fromkeys(k for r in intervals for k, v in r.items()
                              if k not in _SKIP and _number(v)))
    losses = [k for k in keys if k.endswith("_loss")]
    outputs = [k for k in keys if re.fullmatch(r"d(_\w+)?_(real|fake)", k)]
    norms = [k for k in keys if k.endswith("_grad_norm")]
    other = [k for k in keys if k not in losses + outputs + norms]
    charts = [line_chart("D and G losses", _series(intervals, losses or ["d_loss", "g_loss"])),
              line_chart("D's outputs: D(x) and D(G(z))",
                         _series(intervals, outputs or ["d_real", "d_fake"]), unit_range=True)]
    if norms:
        charts.append(line_chart("gradient norms (log scale)", _series(intervals, norms),
                                 log=True))
    if other:
        charts.append(line_chart("other figures", _series(intervals, other)))
    return f'<h2>Training curves</h2><div class="charts">{"".join(charts)}</div>'


def _histogram(counts):
    """A small inline bar chart of a class histogram (counts per class)."""
    if not counts or not all(_number(c) for c in counts):
        return _e(_format(counts))
    top = max(max(counts), 1)
    bars = "".join(f'<rect x="{i * 9}" y="{24 - 22 * c / top:.1f}" width="7" '
                   f'height="{22 * c / top:.1f}" fill="{COLOURS[0]}"><title>{i}: {c}</title>'
                   "</rect>" for i, c in enumerate(counts))
    return (f'<svg width="{9 * len(counts)}" height="24" role="img" '
            f'xmlns="http://www.w3.org/2000/svg"><title>{_e(counts)}</title>{bars}</svg>')


def _scores(epochs):
    rows = [r for r in epochs if any(k not in _SKIP for k in r)]
    if not rows:
        return "<h2>Evaluation</h2><p>No epoch has ended yet.</p>"
    keys = list(dict.fromkeys(k for r in rows for k in r if k not in _SKIP))
    keys.sort(key=lambda k: (_SCORE_ORDER.index(k) if k in _SCORE_ORDER else len(_SCORE_ORDER),
                             k))
    head = "".join(f"<th>{_e(k)}</th>" for k in ["epoch", "step"] + keys)
    body = []
    for r in rows:
        cells = [f'<td class="num">{_e(_format(r.get(k, "")))}</td>' for k in ("epoch", "step")]
        for k in keys:
            value = r.get(k, "")
            if k == "class_histogram" and isinstance(value, list):
                cells.append(f"<td>{_histogram(value)}</td>")
            else:
                kind = ' class="num"' if _number(value) else ""
                cells.append(f"<td{kind}>{_e(_format(value))}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (f"<h2>Evaluation at each epoch end</h2><table><tr>{head}</tr>{''.join(body)}"
            "</table>")


def _parse_warning(warning, record):
    """{code, step, what, remedy} of a warning string (gan.health.HealthWarning's str) or
    dict."""
    if isinstance(warning, dict):
        what = ": ".join(str(warning[k]) for k in ("symptom", "figure") if warning.get(k))
        return {"code": warning.get("code", "warning"),
                "step": warning.get("step", record.get("step")),
                "what": what or json.dumps(warning), "remedy": warning.get("remedy", "")}
    text = str(warning)
    match = _WARNING.match(text)
    if not match:
        return {"code": "warning", "step": record.get("step"), "what": text, "remedy": ""}
    return {"code": match["code"], "step": int(match["step"]), "what": match["what"],
            "remedy": match["remedy"] or ""}


def _health(records, manifest):
    seen = {}
    for record in records:
        for warning in record.get("warnings") or []:
            found = _parse_warning(warning, record)
            entry = seen.setdefault(found["code"], dict(found, first=found["step"], count=0))
            entry.update(found)
            entry["count"] += 1
    off = (manifest.get("config") or {}).get("health") is False
    if not seen:
        text = "Health checks are off for this run." if off else "No health warnings."
        return f"<h2>Health</h2><p>{text}</p>"
    rows = []
    for entry in seen.values():
        steps = f"{entry['first']}" if entry["first"] == entry["step"] else \
            f"{entry['first']} to {entry['step']}"
        rows.append(f"<tr><td>{_e(entry['code'])}</td><td>{_e(steps)} "
                    f"({entry['count']}&times;)</td><td>{_e(entry['what'])}</td>"
                    f"<td>{_e(entry['remedy'])}</td></tr>")
    return ('<h2>Health warnings</h2><table class="warn"><tr><th>symptom</th><th>steps '
            "(times seen)</th><th>what was seen (latest)</th><th>try</th></tr>"
            f"{''.join(rows)}</table>")


def _table(mapping):
    rows = "".join(f"<tr><th>{_e(k)}</th><td><code>{_e(_format(v))}</code></td></tr>"
                   for k, v in mapping.items())
    return f"<table>{rows}</table>"


def _configuration(manifest):
    if not manifest:
        return ""
    parts = ["<h2>Command and configuration</h2>"]
    if manifest.get("command"):
        parts.append(f"<pre><code>{_e(manifest['command'])}</code></pre>")
    options = manifest.get("args") or manifest.get("config")
    if isinstance(options, dict) and options:
        items = "".join(f"<div><b>{_e(k)}</b> <code>{_e(_format(v))}</code></div>"
                        for k, v in options.items())
        parts.append(f'<div class="options">{items}</div>')
    more = {k: manifest[k] for k in ("config", "seed", "versions", "backend", "device",
                                     "resumes", "target") if manifest.get(k) not in (None, [], {})}
    checkpoints = manifest.get("checkpoints") or []
    if checkpoints and isinstance(checkpoints[-1], dict):
        more["latest checkpoint"] = checkpoints[-1].get("file", checkpoints[-1])
    if more:
        parts.append(f"<details><summary>run.json details</summary>{_table(more)}</details>")
    return "".join(parts)


# ---- the page ----------------------------------------------------------------------------
def render_report(out_dir, alive=True, status=None):
    """report.html's text for the run folder `out_dir` (see write_report)."""
    manifest, manifest_note = _read_manifest(out_dir)
    records, records_note = _read_records(out_dir)
    grids = _grids(out_dir)
    state, line = run_status(manifest, records, alive, status)
    intervals = [r for r in records if _is_interval(r)]
    epochs = [r for r in records if not _is_interval(r)]
    notes = "".join(f'<p class="note">{_e(n)}</p>' for n in (manifest_note, records_note) if n)
    refresh = f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">' if alive else ""
    name = os.path.basename(os.path.abspath(out_dir))
    title = f"{manifest.get('app') or 'run'} {state}: {name}"
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'{refresh}<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{_e(title)}</title><link rel="icon" href="data:,">'
            f"<style>{STYLE}</style></head><body>"
            f"{_header(out_dir, manifest, records, state, line, alive)}{notes}"
            f'<div class="overview"><section class="left">{_latest(grids, manifest)}</section>'
            f'<section class="right">{_charts(intervals)}</section></div>{_gallery(grids)}'
            f"{_health(records, manifest)}{_scores(epochs)}{_configuration(manifest)}"
            "</body></html>\n")


def write_report(out_dir, alive=True, status=None):
    """Write `out_dir`/report.html atomically and return its path.

    alive: the run is still training (the page reloads itself every REFRESH_SECONDS);
    status: how the run ended when the caller knows ("finished", "interrupted",
    "diverged"; another word is shown as given), else the folder tells (run_status).
    Safe on a folder with no metrics yet, a single record, no run.json, or a last line cut
    short.
    """
    if not os.path.isdir(out_dir):
        raise FileNotFoundError(f"write_report: no run folder {out_dir!r}")
    return atomic_write(os.path.join(out_dir, "report.html"),
                        render_report(out_dir, alive, status))
