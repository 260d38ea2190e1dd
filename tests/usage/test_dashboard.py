"""The HTML dashboard of ``monitor --html``: escaping, content, determinism, and the page as
headless Chromium draws it (screenshot, DOM, console)."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from bsr_team_cache.errors import UsageError
from bsr_team_cache.usage.dashboard import render_dashboard
from bsr_team_cache.usage.events import UsageEvent
from bsr_team_cache.usage.log import open_event_log
from bsr_team_cache.usage.metrics import compute

FIGURE_IDS = ["hit-rate", "bandwidth", "fetch-time", "top-modules", "peak-hours"]
NO_DATA_NOTES = [
    "No data yet: no module requests recorded.",
    "No data yet: no module requests recorded.",
    "No data yet: no fetches recorded.",
    "No data yet: no module requests recorded.",
    "No data yet: no module requests recorded.",
]
# Every element the page may contain: its own HTML, and what matplotlib's SVG is made of.
ALLOWED_TAGS = {
    "html", "head", "meta", "title", "style", "body", "header", "h1", "h2", "p", "bdi", "dl",
    "div", "dt", "dd", "ul", "li", "main", "figure", "figcaption", "footer",
    "svg", "defs", "g", "path", "use", "text", "clippath", "rect",
}  # fmt: skip
TIER_COLORS = {"local": "#009E73", "team": "#0072B2", "bundle": "#E69F00", "bsr": "#D55E00"}
HOSTILE_MODULE = "<script>alert(1)</script>"
HOSTILE_MEMBER = "<img src=x onerror=alert(1)>"
HOSTILE_TEAM = '"><b>team</b>'
HOSTILE_LINE = "</li><script>alert(2)</script>"
MATH_MODULE = "buf.build/acme/$x^2$"


# --- reports built by hand, in the shape usage.metrics.compute returns -------------------------


def _day(date: dt.date, index: int) -> dict:
    tiers = {"local": 30, "team": 5, "bundle": 3, "bsr": 2}
    return {
        "period": date.isoformat(),
        "requests": 40,
        "tiers": tiers,
        "hit_rate": 0.95,
        "team_hit_rate": 0.8,
        "bandwidth_saved_bytes": 1_000_000,
        "bundle_usage_rate": 0.375,
        "fetches": 5,
        "mean_fetch_seconds": 1.2,
        "measured_seconds": 6.0 + index % 3,
        "estimated_bsr_seconds": 20.0,
    }


def _report(days: int = 3) -> dict:
    start = dt.date(2026, 11, 26) - dt.timedelta(days=days)
    return {
        "team": "platform-team",
        "member": None,
        "since": "2026-10-27T00:00:00Z",
        "until": "2026-11-26T00:00:00Z",
        "timezone": "UTC",
        "requests": 1200,
        "fetches": 130,
        "builds": 120,
        "members": ["alice", "bob", "ci"],
        "hosts": 5,
        "tiers": {
            "local": {"requests": 800, "bytes": 800_000},
            "team": {"requests": 250, "bytes": 250_000},
            "bundle": {"requests": 80, "bytes": 80_000},
            "bsr": {"requests": 70, "bytes": 70_000},
        },
        "hit_rate": 0.942,
        "team_hit_rate": 0.81,
        "bandwidth_saved_bytes": 1_247_300_000,
        "team_bandwidth_saved_bytes": 400_000_000,
        "build_time_improvement": 0.285,
        "build_time": {
            "measured_seconds": 120.5,
            "estimated_bsr_seconds": 168.4,
            "model": {"latency_seconds": 0.3, "bytes_per_second": 5_000_000, "samples": 42},
        },
        "shared_cache_efficiency": 0.678,
        "bundle_usage_rate": 0.452,
        "storage": {"registry_bytes": 1000, "member_store_bytes": 3000, "ratio": 1000 / 3000},
        "trends": {
            "daily": [_day(start + dt.timedelta(days=i), i) for i in range(days)],
            "weekly": [],
            "changes": {},
        },
        "lines": ["Hit rate improved 5.2 points this week", "Bundle usage increased 12.0 points"],
        "top_modules": [
            {"module": "buf.build/googleapis/googleapis", "requests": 310, "bytes": 3_000},
            {"module": "buf.build/bufbuild/protovalidate", "requests": 120, "bytes": 1_200},
            {"module": "buf.build/grpc/grpc", "requests": 45, "bytes": 450},
        ],
        "peak_hours": {
            "timezone": "UTC",
            "heatmap": [[(d + h) % 5 if 8 <= h <= 18 else 0 for h in range(24)] for d in range(7)],
        },
    }


def _empty_report() -> dict:
    report = _report(days=0)
    report.update(
        requests=0, fetches=0, builds=0, members=[], hosts=0, hit_rate=None, team_hit_rate=None,
        bandwidth_saved_bytes=0, team_bandwidth_saved_bytes=0, build_time_improvement=None,
        build_time={"measured_seconds": 0.0, "estimated_bsr_seconds": None, "model": None},
        shared_cache_efficiency=None, bundle_usage_rate=None,
        storage={"registry_bytes": 0, "member_store_bytes": 0, "ratio": None},
        lines=[], top_modules=[],
        peak_hours={"timezone": "UTC", "heatmap": [[0] * 24 for _ in range(7)]},
    )  # fmt: skip
    return report


# --- reading the page back --------------------------------------------------------------------


class Page(HTMLParser):
    """What a browser would see: elements, attributes, text, and each figure's parts."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: Counter[str] = Counter()
        self.attributes: list[tuple[str, str, str]] = []  # (tag, name, value)
        self.text: list[str] = []
        self.title = ""
        self.figures: list[dict] = []
        self.headline: list[list[str]] = []
        self._open: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._start(tag, attrs)
        if tag not in ("meta",):
            self._open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._start(tag, attrs)

    def _start(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] += 1
        self.attributes += [(tag, name, value or "") for name, value in attrs]
        if tag == "figure":
            self.figures.append({"id": dict(attrs).get("id"), "tags": Counter(), "text": []})
        elif self.figures and "figure" in self._open:
            self.figures[-1]["tags"][tag] += 1
        if tag == "div" and "dl" in self._open:
            self.headline.append([])

    def handle_endtag(self, tag: str) -> None:
        while self._open and self._open.pop() != tag:
            pass

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if "title" in self._open:
            self.title += data
        if "figure" in self._open and data.strip():
            self.figures[-1]["text"].append(data.strip())
        if "dd" in self._open or "dt" in self._open:
            self.headline[-1].append(data)

    def figure(self, key: str) -> dict:
        return next(figure for figure in self.figures if figure["id"] == key)

    def all_text(self) -> str:
        return "".join(self.text)


def _caption(page: Page, key: str) -> str:
    return page.figure(key)["text"][-1]


# --- unit tests -------------------------------------------------------------------------------


def test_hostile_names_from_the_team_are_shown_as_text_never_markup() -> None:
    report = _report()
    report["team"] = HOSTILE_TEAM
    report["members"] = ["alice", HOSTILE_MEMBER]
    report["lines"] = [HOSTILE_LINE]
    report["top_modules"][1]["module"] = HOSTILE_MODULE
    report["top_modules"][2]["module"] = MATH_MODULE

    html = render_dashboard(report)
    page = Page(html)

    assert "<script" not in html.lower()
    assert set(page.tags) <= ALLOWED_TAGS
    assert [a for a in page.attributes if a[1].startswith("on")] == []
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;") == 1  # the module's bar label
    assert html.count("&lt;img src=x onerror=alert(1)&gt;") == 1  # the members line
    assert html.count("&quot;&gt;&lt;b&gt;team&lt;/b&gt;") == 2  # <title> and <h1>
    assert html.count("&lt;/li&gt;&lt;script&gt;alert(2)&lt;/script&gt;") == 1
    assert page.title == f"BSR team cache \N{EM DASH} {HOSTILE_TEAM}"
    text = page.all_text()
    for typed in (HOSTILE_MODULE, HOSTILE_MEMBER, HOSTILE_TEAM, HOSTILE_LINE, MATH_MODULE):
        assert typed in text
    modules = page.figure("top-modules")["text"]
    assert modules[modules.index("buf.build/googleapis/googleapis") :][:3] == [
        "buf.build/googleapis/googleapis",
        HOSTILE_MODULE,
        MATH_MODULE,  # a '$' is not math: shown as typed
    ]


def test_the_page_needs_nothing_from_the_network() -> None:
    html = render_dashboard(_report())
    page = Page(html)

    assert {"script", "img", "image", "link", "iframe", "object", "embed"} & set(page.tags) == set()
    links = [(tag, name, value) for tag, name, value in page.attributes if name in {"src", "href"}]
    assert links == []
    internal = [value for _, name, value in page.attributes if name == "xlink:href"]
    assert internal and all(value.startswith("#") for value in internal)
    assert ("meta", "content", "default-src 'none'; style-src 'unsafe-inline'") in page.attributes
    assert "@import" not in html
    assert "url(http" not in html


def test_the_page_has_five_captioned_figures_each_an_svg() -> None:
    page = Page(render_dashboard(_report()))

    assert page.title == "BSR team cache \N{EM DASH} platform-team"
    assert [figure["id"] for figure in page.figures] == FIGURE_IDS
    assert [(f["tags"]["svg"], f["tags"]["figcaption"]) for f in page.figures] == [(1, 1)] * 5
    assert page.tags["svg"] == 5


def test_the_header_shows_the_reports_numbers() -> None:
    page = Page(render_dashboard(_report()))

    assert page.headline == [
        ["Hit rate", "94.2%", "module requests served without the BSR"],
        ["Team hit rate", "81.0%", "of what a machine lacked, the share the team registry supplied"],
        ["Bandwidth saved", "1,247.3 MB", "400.0 MB of it from the team registry"],
        ["Build time improvement", "28.5%",
         "fetch time against the same requests from the BSR, estimated from 42 recorded cold fetches from the BSR"],
        ["Shared cache efficiency", "67.8%",
         "of the team registry's requests, modules another member fetched first"],
        ["Bundle usage rate", "45.2%", "of the team registry's requests, the share served in bundles"],
        ["Registry storage", "33.3%", "1.0 kB in the team registry for 3.0 kB in members' stores"],
    ]  # fmt: skip
    text = page.all_text()
    assert "Cache performance for team platform-team" in text
    assert (
        "Whole team \N{MIDDLE DOT} 2026-10-27T00:00:00Z to 2026-11-26T00:00:00Z"
        " \N{MIDDLE DOT} times in UTC"
    ) in text
    assert (
        "1,200 module requests in 130 fetches from 120 builds on 5 machines by 3 members:"
        " alice, bob, ci"
    ) in text
    assert "Hit rate improved 5.2 points this weekBundle usage increased 12.0 points" in text


def test_one_members_report_says_whose_it_is() -> None:
    report = _report()
    report["member"] = "alice"
    report["members"] = ["alice"]

    text = Page(render_dashboard(report)).all_text()

    assert "Member alice \N{MIDDLE DOT} 2026-10-27T00:00:00Z" in text
    assert "by 1 member: alice" in text


def test_the_plots_draw_the_reports_series() -> None:
    page = Page(render_dashboard(_report(days=3)))

    hit_rate = page.figure("hit-rate")["text"]
    for label in ("requests: local store", "requests: team registry", "requests: team bundle",
                  "requests: BSR", "hit rate", "team hit rate", "module requests per day",
                  "rate (%)"):  # fmt: skip
        assert label in hit_rate
    assert "MB saved per day" in page.figure("bandwidth")["text"]
    assert _caption(page, "bandwidth") == (
        "Bandwidth saved per day: bytes a cache tier served that would otherwise have come"
        " from the BSR (3.0 MB over the days shown)."
    )
    fetch_time = page.figure("fetch-time")["text"]
    legend = [t for t in fetch_time if t in ("measured", "estimated from the BSR")]
    assert legend == ["measured", "estimated from the BSR"]
    modules = page.figure("top-modules")["text"]
    start = modules.index("buf.build/googleapis/googleapis")
    assert modules[start : start + 3] == [
        "buf.build/googleapis/googleapis",
        "buf.build/bufbuild/protovalidate",
        "buf.build/grpc/grpc",
    ]
    assert [t for t in modules if t in ("310", "120", "45")] == ["310", "120", "45"]
    assert _caption(page, "top-modules") == (
        "The 3 most requested modules (module requests, all tiers)."
    )
    peak = page.figure("peak-hours")["text"]
    assert [t for t in peak if t in ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")] == [
        "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun",
    ]  # fmt: skip
    assert "hour of day (UTC)" in peak


def test_without_a_bsr_model_no_estimate_is_drawn() -> None:
    report = _report()
    report["build_time"]["model"] = None
    report["build_time_improvement"] = None

    page = Page(render_dashboard(report))

    assert "estimated from the BSR" not in page.figure("fetch-time")["text"]
    assert _caption(page, "fetch-time") == (
        "Measured fetch time per day (sum of the fetch commands' wall time) against the"
        " estimated time of the same requests from the BSR, which needs a recorded cold fetch from"
        " the BSR to estimate from (none yet)."
    )
    assert page.headline[3][:2] == ["Build time improvement", "\N{EM DASH}"]


def test_an_empty_report_shows_no_data_notes_instead_of_empty_axes() -> None:
    page = Page(render_dashboard(_empty_report()))

    assert [figure["id"] for figure in page.figures] == FIGURE_IDS
    assert page.tags["svg"] == 0
    assert [figure["text"][0] for figure in page.figures] == NO_DATA_NOTES
    assert [figure["tags"]["figcaption"] for figure in page.figures] == [1] * 5
    assert [item[1] for item in page.headline] == [
        "\N{EM DASH}", "\N{EM DASH}", "0.0 MB", "\N{EM DASH}", "\N{EM DASH}", "\N{EM DASH}",
        "\N{EM DASH}",
    ]  # fmt: skip
    text = page.all_text()
    assert "0 module requests in 0 fetches from 0 builds on 0 machines by 0 members" in text
    assert "Not enough data for week-on-week trends yet." in text


def test_the_same_report_gives_the_same_page() -> None:
    first = render_dashboard(_report(days=30))
    second = render_dashboard(_report(days=30))

    assert first == second
    for volatile in ("Matplotlib v", "<metadata", "dc:date", "<?xml", "<!DOCTYPE svg"):
        assert volatile not in first


def test_element_ids_are_unique_across_the_plots() -> None:
    page = Page(render_dashboard(_report(days=30)))

    ids = Counter(value for _, name, value in page.attributes if name == "id")

    assert [key for key, count in ids.items() if count > 1] == []
    assert ids["hit-rate"] == 1


def test_long_series_and_lists_are_cut_to_what_the_page_draws() -> None:
    report = _report(days=400)
    report["members"] = [f"member-{i:02d}" for i in range(45)]
    report["top_modules"] = [
        {"module": f"buf.build/owner/module-{i:02d}", "requests": 100 - i, "bytes": 1}
        for i in range(20)
    ]
    report["top_modules"][0]["module"] = "buf.build/owner/" + "m" * 100

    page = Page(render_dashboard(report))

    assert _caption(page, "bandwidth") == (
        "Bandwidth saved per day: bytes a cache tier served that would otherwise have come"
        " from the BSR (366.0 MB over the days shown). Only the last 366 days are drawn."
    )
    assert _caption(page, "top-modules") == (
        "The 15 most requested modules (module requests, all tiers)."
    )
    modules = page.figure("top-modules")["text"]
    assert "buf.build/owner/" + "m" * 43 + "\N{HORIZONTAL ELLIPSIS}" in modules
    assert "buf.build/owner/module-14" in modules
    assert "buf.build/owner/module-15" not in modules
    assert page.tags["bdi"] == 1 + 40  # the team, and the first 40 members
    assert "member-39 and 5 more" in page.all_text()


def test_a_heatmap_of_the_wrong_shape_is_refused() -> None:
    report = _report()
    report["peak_hours"]["heatmap"] = [[1] * 24 for _ in range(6)]

    with pytest.raises(ValueError, match="7 weekdays of 24 hourly counts"):
        render_dashboard(report)


def test_without_matplotlib_the_error_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("matplotlib", "matplotlib.colors", "matplotlib.dates", "matplotlib.figure"):
        monkeypatch.setitem(sys.modules, name, None)  # makes the import raise ImportError

    with pytest.raises(UsageError) as raised:
        render_dashboard(_report())

    assert str(raised.value) == (
        "the HTML dashboard needs matplotlib: pip install 'bsr-team-cache[dashboard]'"
    )


def test_a_report_computed_from_an_event_log_renders(tmp_path: Path) -> None:
    served = [
        ("alice", "bsr"),
        ("bob", "team"),
        ("alice", "local"),
        ("bob", "bsr"),
        ("ci", "bundle"),
    ]
    events = [_event(i, member, tier) for i, (member, tier) in enumerate(served)]
    with open_event_log(tmp_path) as log:
        log.add(events)
        report = compute(
            log, team="platform-team", until=dt.datetime(2026, 11, 26, tzinfo=dt.UTC).timestamp()
        )

    page = Page(render_dashboard(report))

    assert page.tags["svg"] == 5
    assert page.headline[0] == ["Hit rate", "60.0%", "module requests served without the BSR"]
    assert "5 module requests in 5 fetches from 5 builds on 3 machines by 3 members" in (
        page.all_text()
    )


def _event(index: int, member: str, tier: str) -> UsageEvent:
    """One fetch of one module, an hour after the one before, from 2026-11-23 09:00 UTC."""
    return UsageEvent(
        time=dt.datetime(2026, 11, 23, 9, tzinfo=dt.UTC).timestamp() + index * 3600,
        member=member,
        build=f"b{index}",
        fetch=f"f{index}",
        module=f"buf.build/acme/m{index % 3}",
        commit=f"{index:032x}",
        tier=tier,
        bytes=1000 * (index + 1),
        seconds=0.5,
        fetch_seconds=1.0,
        team="platform-team",
        host=f"{member}-laptop",
    )


# --- the page in a real browser -------------------------------------------------------------


def _chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("Debian's chromium is missing: install it (apt-get install chromium)")
    return path


def _run_chromium(page: Path, work: Path, *args: str) -> tuple[str, list[str]]:
    """Chromium's stdout, and the console messages it logged about the page."""
    command = [
        _chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-extensions", f"--user-data-dir={work / 'profile'}",
        "--enable-logging=stderr", "--v=0", *args, page.as_uri(),
    ]  # fmt: skip
    # A session of its own, so a hung browser and its helpers go down together.
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"chromium did not finish within 180 s: {command}")
    assert proc.returncode == 0, err
    console = [line for line in err.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    return out, console


@pytest.mark.slow
def test_chromium_reports_a_broken_page_on_its_console(tmp_path: Path) -> None:
    # The check the dashboard test relies on: a page error does show in what we read.
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><title>t</title><script>notDefinedAnywhere()</script>")

    _, console = _run_chromium(page, tmp_path, "--dump-dom")

    assert len(console) == 1
    assert "Uncaught ReferenceError: notDefinedAnywhere is not defined" in console[0]


@pytest.mark.slow
def test_the_dashboard_in_headless_chromium(tmp_path: Path) -> None:
    page = tmp_path / "dashboard.html"
    page.write_text(render_dashboard(_report(days=90)), encoding="utf-8")
    screenshot = tmp_path / "dashboard.png"

    _, shot_console = _run_chromium(
        page, tmp_path, f"--screenshot={screenshot}", "--window-size=1280,2400"
    )
    dom, dom_console = _run_chromium(page, tmp_path, "--dump-dom")

    assert shot_console == []
    assert dom_console == []
    drawn = Page(dom)
    assert [figure["id"] for figure in drawn.figures] == FIGURE_IDS
    assert [figure["tags"]["svg"] for figure in drawn.figures] == [1] * 5
    with Image.open(screenshot) as image:
        assert image.size == (1280, 2400)
        colors = {color for _, color in image.convert("RGB").getcolors(maxcolors=1 << 20)}
    # The tier bars are filled with these exact colours: seeing them means the plots were drawn.
    tier_pixels = {tier: _rgb(code) in colors for tier, code in TIER_COLORS.items()}
    assert tier_pixels == dict.fromkeys(TIER_COLORS, True)
    assert len(colors) > 500  # text, anti-aliased lines and the heatmap: far from a blank page


def _rgb(code: str) -> tuple[int, int, int]:
    return int(code[1:3], 16), int(code[3:5], 16), int(code[5:7], 16)
