"""gan.svgchart: tick values, point positions computed by hand, gaps, markers, log scale."""
import math
import re
import xml.etree.ElementTree as ET

import pytest

from gan import svgchart
from gan.svgchart import BOTTOM, HEIGHT, LEFT, RIGHT, TOP, WIDTH, line_chart, nice_ticks

SVG = "{http://www.w3.org/2000/svg}"


def parse(svg):
    return ET.fromstring(svg)  # also checks that the markup is well-formed XML


def polylines(root):
    return [[tuple(map(float, p.split(","))) for p in line.get("points").split()]
            for line in root.iter(f"{SVG}polyline")]


@pytest.mark.parametrize("low, high, expected", [
    (0, 100, [0, 20, 40, 60, 80, 100]),
    (3, 937, [0, 200, 400, 600, 800, 1000]),
    (0.13, 0.87, [0, 0.2, 0.4, 0.6, 0.8, 1.0]),
    (-0.5, 2.3, [-1, 0, 1, 2, 3]),
    (5, 5, [4, 4.5, 5, 5.5, 6]),  # one value: a unit either side
])
def test_nice_ticks(low, high, expected):
    ticks = nice_ticks(low, high)
    assert ticks == pytest.approx(expected)
    assert ticks[0] <= low and ticks[-1] >= high


def test_points_land_where_the_axes_say():
    points = [(0, 0.0), (50, 0.25), (100, 1.0)]
    root = parse(line_chart("D's outputs", [("D(x)", points)], unit_range=True))
    (line,) = polylines(root)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    expected = [(LEFT + x / 100 * plot_w, TOP + plot_h - y * plot_h) for x, y in points]
    for (px, py), (ex, ey) in zip(line, expected):
        assert px == pytest.approx(ex, abs=0.051) and py == pytest.approx(ey, abs=0.051)
    labels = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "tick"]
    assert labels[:5] == ["0", "0.25", "0.5", "0.75", "1"]  # y ticks of unit_range


def test_non_finite_values_break_the_line():
    points = [(0, 1.0), (1, 2.0), (2, float("nan")), (3, 1.5), (4, float("inf")), (5, 1.0),
              (6, 0.5)]
    lines = polylines(parse(line_chart("losses", [("D loss", points)])))
    assert [len(line) for line in lines] == [2, 2]  # (3, 1.5) alone: a marker, no line
    circles = list(parse(line_chart("losses", [("D loss", points)])).iter(f"{SVG}circle"))
    assert len(circles) == 5


def test_one_point_is_a_marker_with_its_value():
    root = parse(line_chart("losses", [("G loss", [(3, 1.0435)]), ("D loss", [])]))
    assert polylines(root) == []
    (circle,) = root.iter(f"{SVG}circle")
    assert circle.find(f"{SVG}title").text == "G loss at 3: 1.044"


def test_long_series_have_no_markers():
    points = [(i, math.sin(i)) for i in range(svgchart.MARKERS_UP_TO + 1)]
    root = parse(line_chart("x", [("s", points)]))
    assert len(polylines(root)[0]) == len(points) and not list(root.iter(f"{SVG}circle"))


def test_log_scale_ticks_are_powers_of_ten():
    points = [(0, 0.02), (1, 3.0), (2, 0.0), (3, 450.0)]  # 0 cannot be shown on a log axis
    root = parse(line_chart("norms", [("g_grad_norm", points)], log=True))
    labels = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "tick"]
    assert labels[:6] == ["0.01", "0.1", "1", "10", "100", "1000"]  # 10^-2 <= y <= 10^3
    assert [len(line) for line in polylines(root)] == [2]


def test_empty_chart_says_so_and_text_is_escaped():
    svg = line_chart("a <b> & c", [("<x>", [])])
    root = parse(svg)
    assert "no values yet" in svg and "<b>" not in svg
    assert root.find(f"{SVG}title").text == "a <b> & c"


def test_close_values_get_enough_digits():
    svg = line_chart("x", [("s", [(0, 5.0), (1, 5.0000001)])])
    labels = [t.text for t in parse(svg).iter(f"{SVG}text") if t.get("class") == "tick"]
    y_labels = labels[:len(nice_ticks(5.0, 5.0000001))]
    assert len(set(y_labels)) == len(y_labels), y_labels
    assert re.fullmatch(r"5\.0+5", y_labels[1])


def test_a_narrow_log_span_gets_ticks_at_two_and_five():
    root = parse(line_chart("norms", [("g", [(0, 3.0), (1, 4.0)])], log=True))
    labels = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "tick"]
    assert labels[:2] == ["2", "5"]


def test_a_long_series_is_thinned_keeping_its_ends():
    points = [(i, float(i % 7)) for i in range(5 * svgchart.MAX_POINTS + 3)]
    (line,) = polylines(parse(line_chart("x", [("s", points)])))
    assert len(line) <= svgchart.MAX_POINTS + 1
    plot_w = WIDTH - LEFT - RIGHT
    assert line[0][0] == pytest.approx(LEFT, abs=0.05)
    x_ticks = nice_ticks(0, len(points) - 1)
    last_x = LEFT + (len(points) - 1 - x_ticks[0]) / (x_ticks[-1] - x_ticks[0]) * plot_w
    assert line[-1][0] == pytest.approx(last_x, abs=0.05)
