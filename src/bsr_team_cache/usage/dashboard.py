"""The HTML dashboard of ``monitor --html``: one self-contained page drawn from a metrics report.

The page opens with no network: no script, fonts, images or style sheets from elsewhere, the
plots inline as SVG drawn by matplotlib, and a Content-Security-Policy that blocks anything
else a browser might try to load. Module and member names come from team members' events and
may be hostile: every string from the report is HTML-escaped (in the plots, matplotlib escapes
SVG text and math parsing is off), so nothing in it can become markup or script.

The output depends only on the report: matplotlib's metadata (creator, date) is left out and
the ids it derives from hashes use a fixed salt, so the same report gives the same bytes.
"""

from __future__ import annotations

import datetime as dt
import html
import io
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bsr_team_cache.errors import UsageError
from bsr_team_cache.usage.events import TIERS

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# Bounds on what the page draws, whatever the size of the report: the most recent days of the
# daily series, the busiest modules, the members named in the header, the trend lines.
MAX_DAYS = 366
MAX_MODULES = 15
MAX_MEMBERS_LISTED = 40
MAX_LINES = 20
MAX_LABEL = 60  # characters of a module name on the top-modules axis
MARKERS_UP_TO_DAYS = 45

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
NO_VALUE = "\N{EM DASH}"

# Okabe-Ito colours: told apart with the common colour-vision deficiencies.
TIER_COLORS = {"local": "#009E73", "team": "#0072B2", "bundle": "#E69F00", "bsr": "#D55E00"}
TIER_LABELS = {
    "local": "local store",
    "team": "team registry",
    "bundle": "team bundle",
    "bsr": "BSR",
}
HIT_RATE_COLOR = "#000000"
TEAM_HIT_RATE_COLOR = "#7B3294"  # dark purple: visible over every tier colour
MEASURED_COLOR = "#0072B2"
ESTIMATED_COLOR = "#D55E00"
SAVED_COLOR = "#009E73"
HEATMAP_LEVELS = 8  # a stepped colour scale: few enough levels to read, and drawn as vectors

# Text stays text ('none'): smaller than glyph outlines, selectable and read by screen
# readers; the browser draws it with its own sans-serif if DejaVu Sans is not installed.
# Math parsing is off so a '$' in a module name is shown as typed.
MATPLOTLIB_STYLE: dict[str, object] = {
    "svg.fonttype": "none",
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans"],
    "font.size": 9.0,
    "text.parse_math": False,
    "text.usetex": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.grid.axis": "y",
    "grid.color": "#dddddd",
    "grid.linewidth": 0.6,
    "axes.axisbelow": True,
    "legend.frameon": False,
}
SVG_METADATA = {"Creator": None, "Date": None, "Format": None, "Type": None}

# A tag of matplotlib's SVG: text in it never holds '<' or '>' (it writes &lt; and &gt;), so
# this matches tags only, never text that came from the report.
SVG_TAG = re.compile(r"<[^<>]*>")
# Where an SVG tag names or refers to an id (id="…", xlink:href="#…", url(#…)).
ID_REFERENCE = re.compile(r'(\sid="|href="#|url\(#)')

CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5rem auto; max-width: 72rem;
       padding: 0 1rem; color: #1a1a1a; background: #ffffff; }
h1 { font-size: 1.5rem; margin: 0 0 0.3rem; }
h2 { font-size: 1.1rem; margin: 1.2rem 0 0.4rem; }
p { margin: 0.2rem 0; }
.scope { color: #555555; }
.headline { display: grid; grid-template-columns: repeat(auto-fill, minmax(14rem, 1fr));
            gap: 0.6rem; margin: 1rem 0; }
.headline div { border: 1px solid #dddddd; border-radius: 6px; padding: 0.5rem 0.7rem; }
.headline dt { font-size: 0.85rem; color: #555555; }
.headline dd { margin: 0; }
.headline .value { font-size: 1.4rem; font-weight: 600; }
.headline .note { font-size: 0.8rem; color: #555555; }
figure { margin: 1.5rem 0; }
figcaption { font-size: 0.9rem; color: #333333; margin-top: 0.3rem; }
figure svg { max-width: 100%; height: auto; }
.no-data { border: 1px dashed #bbbbbb; border-radius: 6px; padding: 1.5rem; color: #555555;
           text-align: center; }
footer { font-size: 0.8rem; color: #555555; margin-top: 2rem; }
"""

# Only inline styles may apply; everything else (scripts, images, fonts, fetches) is refused.
CONTENT_SECURITY_POLICY = "default-src 'none'; style-src 'unsafe-inline'"


@dataclass(frozen=True)
class Plot:
    """One figure of the page: its SVG, or the reason it has none yet."""

    key: str
    caption: str  # plain text, escaped when written
    svg: str | None
    no_data: str = ""


@dataclass(frozen=True)
class Day:
    """One entry of the report's daily trend, with the values the plots read."""

    date: dt.date
    requests: int
    tiers: dict[str, int]
    hit_rate: float | None
    team_hit_rate: float | None
    bandwidth_saved_bytes: int
    fetches: int
    measured_seconds: float | None
    estimated_bsr_seconds: float | None


def render_dashboard(report: dict[str, Any]) -> str:
    """The self-contained HTML page for a ``usage.metrics`` report.

    Raises UsageError when matplotlib (the ``dashboard`` extra) is not installed.
    """
    matplotlib = _import_matplotlib()
    days, days_left_out = _days(report)
    with matplotlib.rc_context(MATPLOTLIB_STYLE):
        plots = [
            _hit_rate_plot(days, days_left_out),
            _bandwidth_plot(days, days_left_out),
            _fetch_time_plot(days, days_left_out, report),
            _top_modules_plot(report.get("top_modules") or []),
            _peak_hours_plot(report.get("peak_hours") or {}),
        ]
    return _page(report, plots)


def _import_matplotlib() -> Any:
    # Imported here: matplotlib is an optional dependency, and slow to import for commands
    # that never draw.
    try:
        import matplotlib
        import matplotlib.colors
        import matplotlib.dates
        import matplotlib.figure
    except ImportError:
        raise UsageError(
            "the HTML dashboard needs matplotlib: pip install 'bsr-team-cache[dashboard]'"
        ) from None
    return matplotlib


# --- reading the report ---------------------------------------------------------------------


def _days(report: dict[str, Any]) -> tuple[list[Day], int]:
    """The daily series in date order, cut to the last MAX_DAYS, and how many were cut."""
    daily = (report.get("trends") or {}).get("daily") or []
    days = sorted((_day(entry) for entry in daily), key=lambda day: day.date)
    left_out = max(0, len(days) - MAX_DAYS)
    return days[left_out:], left_out


def _day(entry: dict[str, Any]) -> Day:
    tiers = entry.get("tiers") or {}
    return Day(
        date=dt.date.fromisoformat(entry["period"]),
        requests=int(entry.get("requests") or 0),
        tiers={tier: int(tiers.get(tier) or 0) for tier in TIERS},
        hit_rate=_optional_float(entry.get("hit_rate")),
        team_hit_rate=_optional_float(entry.get("team_hit_rate")),
        bandwidth_saved_bytes=int(entry.get("bandwidth_saved_bytes") or 0),
        fetches=int(entry.get("fetches") or 0),
        measured_seconds=_optional_float(entry.get("measured_seconds")),
        estimated_bsr_seconds=_optional_float(entry.get("estimated_bsr_seconds")),
    )


def _optional_float(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


def _or_nan(value: float | None, scale: float = 1.0) -> float:
    """A value for a line plot: missing values are NaN, which breaks the line there."""
    return math.nan if value is None else value * scale


# --- the plots ------------------------------------------------------------------------------


def _hit_rate_plot(days: list[Day], left_out: int) -> Plot:
    caption = (
        "Hit rate and team hit rate per day (lines, right axis) over the module requests "
        "each tier served (stacked bars, left axis)." + _cut_note(left_out)
    )
    if not any(day.requests for day in days):
        return Plot("hit-rate", caption, None, "No data yet: no module requests recorded.")
    figure = _figure(9.0, 3.8)
    bars = figure.add_subplot()
    dates = [day.date for day in days]
    bottom = [0] * len(days)
    for tier in TIERS:
        counts = [day.tiers[tier] for day in days]
        bars.bar(
            dates,
            counts,
            width=0.8,
            bottom=bottom,
            color=TIER_COLORS[tier],
            label=f"requests: {TIER_LABELS[tier]}",
        )
        bottom = [below + count for below, count in zip(bottom, counts, strict=True)]
    bars.set_ylabel("module requests per day")
    # Headroom over the tallest bar: the rates (mostly high) are drawn above the bars.
    bars.set_ylim(0, max(bottom) * 1.6)
    rates = bars.twinx()
    _line(rates, dates, [_or_nan(d.hit_rate, 100) for d in days], HIT_RATE_COLOR, "hit rate")
    _line(
        rates,
        dates,
        [_or_nan(day.team_hit_rate, 100) for day in days],
        TEAM_HIT_RATE_COLOR,
        "team hit rate",
        dashed=True,
    )
    rates.set_ylim(0, 105)
    rates.set_ylabel("rate (%)")
    rates.grid(False)
    rates.spines["right"].set_visible(True)
    _date_axis(bars)
    handles = bars.get_legend_handles_labels()[0] + rates.get_legend_handles_labels()[0]
    figure.legend(handles=handles, loc="outside lower center", ncols=6, fontsize=8)
    return Plot("hit-rate", caption, _svg(figure, "hit-rate"))


def _bandwidth_plot(days: list[Day], left_out: int) -> Plot:
    total = sum(day.bandwidth_saved_bytes for day in days)
    caption = (
        "Bandwidth saved per day: bytes a cache tier served that would otherwise have come "
        f"from the BSR ({_format_bytes(total)} over the days shown)." + _cut_note(left_out)
    )
    if not any(day.requests for day in days):
        return Plot("bandwidth", caption, None, "No data yet: no module requests recorded.")
    divisor, unit = _byte_unit(max(day.bandwidth_saved_bytes for day in days))
    figure = _figure(9.0, 3.0)
    axes = figure.add_subplot()
    axes.bar(
        [day.date for day in days],
        [day.bandwidth_saved_bytes / divisor for day in days],
        width=0.8,
        color=SAVED_COLOR,
    )
    axes.set_ylabel(f"{unit} saved per day")
    _date_axis(axes)
    return Plot("bandwidth", caption, _svg(figure, "bandwidth"))


def _fetch_time_plot(days: list[Day], left_out: int, report: dict[str, Any]) -> Plot:
    model = (report.get("build_time") or {}).get("model")
    caption = (
        "Measured fetch time per day (sum of the fetch commands' wall time) against the "
        "estimated time of the same requests from the BSR, "
        + _model_text(model)
        + "."
        + _cut_note(left_out)
    )
    if not any(day.fetches for day in days):
        return Plot("fetch-time", caption, None, "No data yet: no fetches recorded.")
    figure = _figure(9.0, 3.2)
    axes = figure.add_subplot()
    dates = [day.date for day in days]
    _line(axes, dates, [_or_nan(d.measured_seconds) for d in days], MEASURED_COLOR, "measured")
    if model:  # without one the report's daily estimates are zeros, not estimates
        estimates = [_or_nan(day.estimated_bsr_seconds) for day in days]
        _line(axes, dates, estimates, ESTIMATED_COLOR, "estimated from the BSR", dashed=True)
    axes.set_ylim(bottom=0)
    axes.set_ylabel("seconds per day")
    axes.legend(loc="upper left", fontsize=8)
    _date_axis(axes)
    return Plot("fetch-time", caption, _svg(figure, "fetch-time"))


def _top_modules_plot(top_modules: Sequence[dict[str, Any]]) -> Plot:
    shown = list(top_modules)[:MAX_MODULES]
    caption = f"The {len(shown)} most requested modules (module requests, all tiers)."
    if not shown:
        caption = "The most requested modules (module requests, all tiers)."
        return Plot("top-modules", caption, None, "No data yet: no module requests recorded.")
    figure = _figure(9.0, 0.9 + 0.28 * len(shown))
    axes = figure.add_subplot()
    positions = list(range(len(shown)))
    counts = [int(entry.get("requests") or 0) for entry in shown]
    container = axes.barh(positions, counts, height=0.7, color=TIER_COLORS["team"])
    axes.set_yticks(positions, labels=[_short_label(str(entry["module"])) for entry in shown])
    axes.invert_yaxis()  # the busiest module on top
    axes.bar_label(container, labels=[f"{count:,}" for count in counts], padding=3, fontsize=8)
    axes.set_xlabel("module requests")
    axes.grid(axis="x")
    axes.grid(axis="y", visible=False)
    axes.margins(x=0.1)
    return Plot("top-modules", caption, _svg(figure, "top-modules"))


def _peak_hours_plot(peak_hours: dict[str, Any]) -> Plot:
    timezone = str(peak_hours.get("timezone") or "UTC")
    caption = f"Module requests by weekday and hour of day ({timezone}); white: none."
    grid = _heatmap(peak_hours.get("heatmap"))
    if not any(any(row) for row in grid):
        return Plot("peak-hours", caption, None, "No data yet: no module requests recorded.")
    import matplotlib

    figure = _figure(9.0, 3.0)
    axes = figure.add_subplot()
    # Stepped blues from a visible light blue, and white below 1: an hour with a few requests
    # must not look like one with none.
    blues = matplotlib.colormaps["Blues"]
    steps = [blues(0.2 + 0.8 * level / (HEATMAP_LEVELS - 1)) for level in range(HEATMAP_LEVELS)]
    colormap = matplotlib.colors.ListedColormap(steps).with_extremes(under="#ffffff")
    peak = max(max(row) for row in grid)
    mesh = axes.pcolormesh(
        grid, cmap=colormap, vmin=1, vmax=max(peak, 2), edgecolors="#eeeeee", linewidth=0.5
    )
    axes.set_xticks([hour + 0.5 for hour in range(24)], labels=[str(h) for h in range(24)])
    axes.set_yticks([day + 0.5 for day in range(7)], labels=list(WEEKDAYS))
    axes.invert_yaxis()  # Monday on top, as in a calendar
    axes.set_xlabel(f"hour of day ({timezone})")
    axes.tick_params(length=0)
    axes.grid(False)
    for side in ("left", "bottom"):
        axes.spines[side].set_visible(False)
    figure.colorbar(mesh, ax=axes, label="module requests", pad=0.01)
    return Plot("peak-hours", caption, _svg(figure, "peak-hours"))


def _heatmap(value: object) -> list[list[int]]:
    """The report's 7 x 24 counts; missing means no data, any other shape is a bug upstream."""
    if value is None:
        return [[0] * 24 for _ in range(7)]
    rows = list(value)  # type: ignore[call-overload]
    if len(rows) != 7 or any(len(row) != 24 for row in rows):
        raise ValueError("peak_hours.heatmap must be 7 weekdays of 24 hourly counts")
    return [[int(count) for count in row] for row in rows]


def _figure(width: float, height: float) -> Figure:
    # A bare Figure, not pyplot: no global figure registry, no GUI backend chosen.
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _line(
    axes: Axes,
    dates: list[dt.date],
    values: list[float],
    color: str,
    label: str,
    *,
    dashed: bool = False,
) -> None:
    # Markers only while days are far enough apart to tell them from the line.
    marker = "o" if len(dates) <= MARKERS_UP_TO_DAYS else None
    axes.plot(
        dates,
        values,
        color=color,
        label=label,
        marker=marker,
        markersize=3,
        linewidth=1.6,
        linestyle="--" if dashed else "-",
    )


def _date_axis(axes: Axes) -> None:
    import matplotlib.dates

    locator = matplotlib.dates.AutoDateLocator(minticks=3, maxticks=10)
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(matplotlib.dates.ConciseDateFormatter(locator))


def _svg(figure: Figure, key: str) -> str:
    """The figure as an ``<svg>`` element to inline in HTML: no XML prologue, no metadata,
    its ids prefixed with ``key`` so they stay unique among the page's other plots.

    The fixed salt makes the ids matplotlib derives from hashes (clip paths, markers) the same
    on every run; it draws a random one otherwise.
    """
    import matplotlib

    out = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": "bsr-team-cache"}):
        figure.savefig(out, format="svg", metadata=SVG_METADATA)
    text = out.getvalue()
    svg = text[text.index("<svg") :].strip()
    return SVG_TAG.sub(lambda tag: _prefix_ids(tag.group(), key), svg)


def _prefix_ids(tag: str, key: str) -> str:
    return ID_REFERENCE.sub(lambda ref: f"{ref.group()}{key}-", tag)


def _short_label(module: str) -> str:
    if len(module) <= MAX_LABEL:
        return module
    return module[: MAX_LABEL - 1] + "\N{HORIZONTAL ELLIPSIS}"


def _cut_note(left_out: int) -> str:
    return f" Only the last {MAX_DAYS} days are drawn." if left_out else ""


def _model_text(model: dict[str, Any] | None) -> str:
    if not model or not model.get("samples"):
        return "which needs a recorded cold fetch from the BSR to estimate from (none yet)"
    samples = int(model["samples"])
    noun = "fetch" if samples == 1 else "fetches"
    return f"estimated from {samples:,} recorded cold {noun} from the BSR"


# --- the page -------------------------------------------------------------------------------


def _page(report: dict[str, Any], plots: list[Plot]) -> str:
    team = str(report.get("team") or "")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>BSR team cache \N{EM DASH} {_e(team)}</title>",
        f"<style>{CSS}</style>",
        "</head>",
        "<body>",
        *_header(report),
        "<main>",
        *(_figure_html(plot) for plot in plots),
        "</main>",
        "<footer><p>Drawn by bsr-team-cache from the team's recorded fetch events; "
        "docs/metrics.md defines each number.</p></footer>",
        "</body>",
        "</html>",
    ]
    return "\n".join(parts) + "\n"


def _header(report: dict[str, Any]) -> Iterator[str]:
    team = str(report.get("team") or "")
    yield "<header>"
    yield f"<h1>Cache performance for team <bdi>{_e(team)}</bdi></h1>"
    yield f'<p class="scope">{_scope(report)}</p>'
    yield f"<p>{_activity(report)}</p>"
    yield '<dl class="headline">'
    for label, value, note in _headline(report):
        yield (
            f'<div><dt>{_e(label)}</dt><dd class="value">{_e(value)}</dd>'
            f'<dd class="note">{_e(note)}</dd></div>'
        )
    yield "</dl>"
    yield "<h2>Recent trends</h2>"
    lines = [str(line) for line in (report.get("lines") or [])][:MAX_LINES]
    if lines:
        yield "<ul>" + "".join(f"<li>{_e(line)}</li>" for line in lines) + "</ul>"
    else:
        yield "<p>Not enough data for week-on-week trends yet.</p>"
    yield "</header>"


def _scope(report: dict[str, Any]) -> str:
    member = report.get("member")
    who = "Whole team" if member is None else f"Member <bdi>{_e(str(member))}</bdi>"
    since = _e(str(report.get("since") or NO_VALUE))
    until = _e(str(report.get("until") or NO_VALUE))
    timezone = _e(str(report.get("timezone") or "UTC"))
    return f"{who} \N{MIDDLE DOT} {since} to {until} \N{MIDDLE DOT} times in {timezone}"


def _activity(report: dict[str, Any]) -> str:
    members = [str(name) for name in (report.get("members") or [])]
    listed = ", ".join(f"<bdi>{_e(name)}</bdi>" for name in members[:MAX_MEMBERS_LISTED])
    if len(members) > MAX_MEMBERS_LISTED:
        listed += f" and {len(members) - MAX_MEMBERS_LISTED:,} more"
    counts = (
        f"{_count(report, 'requests')} module requests in {_count(report, 'fetches')} "
        f"fetches from {_count(report, 'builds')} builds on {_count(report, 'hosts')} machines"
    )
    noun = "member" if len(members) == 1 else "members"
    return f"{counts} by {len(members):,} {noun}" + (f": {listed}" if listed else "")


def _headline(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The headline numbers as (label, value, what it means) — plain text."""
    build_time = report.get("build_time") or {}
    storage = report.get("storage") or {}
    team_saved = _megabytes(report.get("team_bandwidth_saved_bytes") or 0)
    registry = _format_bytes(int(storage.get("registry_bytes") or 0))
    stores = _format_bytes(int(storage.get("member_store_bytes") or 0))
    model = _model_text(build_time.get("model"))
    return [
        ("Hit rate", _percent(report.get("hit_rate")), "module requests served without the BSR"),
        (
            "Team hit rate",
            _percent(report.get("team_hit_rate")),
            "of what a machine lacked, the share the team registry supplied",
        ),
        (
            "Bandwidth saved",
            _megabytes(report.get("bandwidth_saved_bytes")),
            f"{team_saved} of it from the team registry",
        ),
        (
            "Build time improvement",
            _percent(report.get("build_time_improvement")),
            f"fetch time against the same requests from the BSR, {model}",
        ),
        (
            "Shared cache efficiency",
            _percent(report.get("shared_cache_efficiency")),
            "of the team registry's requests, modules another member fetched first",
        ),
        (
            "Bundle usage rate",
            _percent(report.get("bundle_usage_rate")),
            "of the team registry's requests, the share served in bundles",
        ),
        (
            "Registry storage",
            _percent(storage.get("ratio")),
            f"{registry} in the team registry for {stores} in members' stores",
        ),
    ]


def _figure_html(plot: Plot) -> str:
    body = plot.svg if plot.svg is not None else f'<p class="no-data">{_e(plot.no_data)}</p>'
    return (
        f'<figure id="{plot.key}">\n{body}\n<figcaption>{_e(plot.caption)}</figcaption>\n</figure>'
    )


# --- formatting -----------------------------------------------------------------------------


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _count(report: dict[str, Any], key: str) -> str:
    return f"{int(report.get(key) or 0):,}"


def _percent(value: object) -> str:
    return NO_VALUE if value is None else f"{float(value) * 100:.1f}%"  # type: ignore[arg-type]


def _megabytes(value: object) -> str:
    # The design's text dashboard shows bandwidth in (decimal) megabytes: "1,247.3MB".
    return NO_VALUE if value is None else f"{int(value) / 1e6:,.1f} MB"  # type: ignore[call-overload]


def _byte_unit(largest: int) -> tuple[float, str]:
    """The decimal unit an axis whose largest value is ``largest`` bytes reads best in."""
    for divisor, unit in ((1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if largest >= divisor:
            return divisor, unit
    return 1.0, "bytes"


def _format_bytes(size: int) -> str:
    divisor, unit = _byte_unit(size)
    return f"{size:,} bytes" if divisor == 1.0 else f"{size / divisor:,.1f} {unit}"
