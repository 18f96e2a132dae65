"""Line charts as inline SVG text, for report.html: no JavaScript, no plotting library.

    svg = line_chart("losses", [("D loss", [(50, 1.2), (100, 1.0)]), ("G loss", [...])])

Each series is (label, [(x, y), ...]). Points whose y is NaN or Inf (or <= 0 on a log
scale) are left out and break the line there; a series longer than MAX_POINTS is thinned
evenly, so a long run's page stays small. A series of fewer than two points, or of a
few dozen, also gets a marker at each point (with its value as a tooltip), so a run with
one logged interval still shows something.
"""
import html
import math

__all__ = ["line_chart", "nice_ticks", "COLOURS"]

#: matplotlib's "tab10" colours, so the report matches losses.png.
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")
WIDTH, HEIGHT = 520, 250
LEFT, RIGHT, TOP, BOTTOM = 58, 14, 44, 34
MARKERS_UP_TO = 40  # points per series drawn with markers
MAX_POINTS = 1000  # per series; a longer one is thinned evenly (its last point kept)


def nice_ticks(low, high, count=5):
    """About `count` round tick values (1, 2 or 5 times a power of ten apart) covering
    [low, high]."""
    if not high > low:
        low, high = low - 1, high + 1
    raw = (high - low) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.floor(low / step) * step
    count = math.ceil((high - first) / step - 1e-9)
    return [first + i * step for i in range(max(count, 1) + 1)]


def _log_ticks(low, high):
    """Ticks (as log10 values) covering [low, high] (log10 values too): powers of ten, and
    2 and 5 times them when the span is two decades or less."""
    decades = list(range(math.floor(low), max(math.ceil(high), math.floor(low) + 1) + 1))
    if len(decades) > 3:
        return decades
    ticks = [d + math.log10(m) for d in decades[:-1] for m in (1, 2, 5)] + decades[-1:]
    first = max(i for i, t in enumerate(ticks) if t <= low + 1e-9)
    last = min(i for i, t in enumerate(ticks) if t >= high - 1e-9)
    return ticks[first:max(last, first + 1) + 1]


def _label(value, step=None):
    """`value` to 4 significant digits, or as many as tell ticks `step` apart."""
    digits = 4
    if step and value:
        digits = max(digits, math.ceil(math.log10(abs(value) / step)) + 1)
    return f"{value:.{digits}g}"


def _thin(points):
    if len(points) <= MAX_POINTS:
        return points
    stride = math.ceil(len(points) / MAX_POINTS)
    return points[::stride] + ([points[-1]] if (len(points) - 1) % stride else [])


def _runs(points, log):
    """The points split where a value is missing (NaN/Inf, or <= 0 on a log scale)."""
    runs, current = [], []
    for x, y in points:
        ok = math.isfinite(x) and math.isfinite(y) and (y > 0 or not log)
        if ok:
            current.append((x, math.log10(y) if log else y))
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    return runs


def line_chart(title, series, x_label="step", log=False, unit_range=False):
    """An <svg> element (text) plotting `series` against x; `log`: y on a log10 scale;
    `unit_range`: y spans [0, 1] when every value lies in it (D's probabilities)."""
    runs = [(label, _runs(_thin(list(points)), log)) for label, points in series]
    xs = [x for _, parts in runs for part in parts for x, _ in part]
    ys = [y for _, parts in runs for part in parts for _, y in part]
    out = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" '
           f'height="{HEIGHT}" role="img" xmlns="http://www.w3.org/2000/svg">',
           f'<title>{html.escape(title)}</title>',
           f'<text x="{LEFT}" y="16" class="chart-title">{html.escape(title)}</text>']
    if not ys:
        out.append(f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" '
                   'class="empty">no values yet</text></svg>')
        return "".join(out)
    x_ticks = nice_ticks(min(xs), max(xs))
    if log:
        y_ticks = _log_ticks(min(ys), max(ys))
    elif unit_range and min(ys) >= 0 and max(ys) <= 1:
        y_ticks = [0, 0.25, 0.5, 0.75, 1]
    else:
        y_ticks = nice_ticks(min(ys), max(ys))
    x0, x1, y0, y1 = x_ticks[0], x_ticks[-1], y_ticks[0], y_ticks[-1]
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def px(x):
        return LEFT + (x - x0) / (x1 - x0) * plot_w

    def py(y):
        return TOP + plot_h - (y - y0) / (y1 - y0) * plot_h

    for y in y_ticks:
        text = _label(10 ** y) if log else _label(y, y_ticks[1] - y_ticks[0])
        out.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{py(y):.1f}" '
                   f'y2="{py(y):.1f}" class="grid"/>'
                   f'<text x="{LEFT - 6}" y="{py(y) + 4:.1f}" text-anchor="end" '
                   f'class="tick">{text}</text>')
    for x in x_ticks:
        out.append(f'<line x1="{px(x):.1f}" x2="{px(x):.1f}" y1="{TOP + plot_h}" '
                   f'y2="{TOP + plot_h + 4}" class="axis"/>'
                   f'<text x="{px(x):.1f}" y="{TOP + plot_h + 17}" text-anchor="middle" '
                   f'class="tick">{_label(x, x_ticks[1] - x_ticks[0])}</text>')
    out.append(f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" '
               'class="frame"/>'
               f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 4}" text-anchor="middle" '
               f'class="tick">{html.escape(x_label)}</text>')
    legend_x = LEFT
    for index, (label, parts) in enumerate(runs):
        colour = COLOURS[index % len(COLOURS)]
        count = sum(len(part) for part in parts)
        for part in parts:
            if len(part) >= 2:
                path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in part)
                out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" '
                           'stroke-width="1.6"/>')
            if count <= MARKERS_UP_TO:
                for x, y in part:
                    value = 10 ** y if log else y
                    out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.8" '
                               f'fill="{colour}"><title>{html.escape(label)} at '
                               f'{_label(x)}: {_label(value)}</title></circle>')
        out.append(f'<rect x="{legend_x}" y="26" width="10" height="10" fill="{colour}"/>'
                   f'<text x="{legend_x + 14}" y="35" class="legend">'
                   f'{html.escape(label)}</text>')
        legend_x += 24 + 7 * len(label)
    out.append("</svg>")
    return "".join(out)
