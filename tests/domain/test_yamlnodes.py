"""Reading YAML: PyYAML is imported by the first parse only; libyaml's loader, used when PyYAML
has it, reads buf.yaml and buf.lock exactly as PyYAML's own loader does (the same result, or the
same error with the same line)."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bsr_team_cache.domain.buflock import (
    BufLock,
    LockedDep,
    format_buf_lock,
    parse_buf_lock,
    parse_with_yaml,
)
from bsr_team_cache.domain.bufyaml import parse_buf_yaml
from bsr_team_cache.domain.digest import parse_digest
from bsr_team_cache.domain.moduleref import parse_module_name
from bsr_team_cache.errors import BSRTeamCacheError

needs_libyaml = pytest.mark.skipif(
    not yaml.__with_libyaml__, reason="PyYAML is built without libyaml here"
)
PLUGINS = "plugins:\n  - name: buf.build/protocolbuffers/go\n    commit: " + "d4" * 16 + "\n"


def test_yaml_is_imported_by_the_first_parse_only() -> None:
    probe = (
        "import sys\n"
        "import bsr_team_cache.bsr.client, bsr_team_cache.domain.buflock\n"
        "assert 'yaml' not in sys.modules\n"
        "bsr_team_cache.domain.buflock.parse_buf_lock('version: v2\\n')\n"
        "assert 'yaml' in sys.modules\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr


def _lock(version: str, count: int) -> BufLock:
    deps = []
    for i in range(count):
        h = hashlib.sha256(str(i).encode()).hexdigest()
        module = parse_module_name(f"buf.build/owner{i % 17}/module-{i:03d}")
        digest = f"b5:{h}{h}" if version == "v2" else f"shake256:{h}{h}"
        deps.append(LockedDep(module, h[:32], parse_digest(digest)))
    deps.sort(key=lambda d: str(d.module))  # as the writer orders them
    return BufLock(version, tuple(deps), extra=PLUGINS if version == "v2" else "")


@needs_libyaml
@pytest.mark.parametrize("version", ["v1", "v2"])
def test_a_200_dep_lock_reads_the_same_with_both_loaders(
    version: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    lock = _lock(version, 200)
    text = format_buf_lock(lock)
    loaders = []
    compose = yaml.compose

    def recording_compose(stream, Loader):
        loaders.append(Loader)
        return compose(stream, Loader=Loader)

    monkeypatch.setattr(yaml, "compose", recording_compose)
    # (parse_buf_lock reads a lock in buf's own form without YAML: the YAML reader is asked.)
    with_libyaml = parse_with_yaml(text)
    assert loaders[0] is yaml.CSafeLoader  # a lock as buf writes it is read by libyaml
    monkeypatch.setattr(yaml, "__with_libyaml__", False)
    assert with_libyaml == parse_with_yaml(text) == parse_buf_lock(text) == lock


SEEDS = [
    format_buf_lock(_lock("v2", 3)),
    format_buf_lock(_lock("v1", 2)),
    "version: v2\nmodules:\n  - path: proto\n    name: buf.build/acme/shop\n  - path: vendor\n"
    "deps:\n  - buf.build/googleapis/googleapis\n  - localhost:8443/acme/pets:v1\n",
    "%YAML 1.1\n---\nversion: v2 # c\ndeps: &d\n  - a\n  - 'q ''x'''\nplugins: *d\n"
    'w: "e \\u00e9 \\x41 \\\n  cont"\n<<: *d\n...\n',
    "{version: v2, deps: [], plugins: [{name: 'buf.build/x', c: \"a\\tb\"}]}\n",
    "version: v2\nx: |\n  text\n   more\ny: >-\n  folded\n\n  line\n? complex\n: value\n",
]
# What makes the two loaders differ, if anything does: indicators, odd whitespace and breaks.
FRAGMENTS = [
    *":-[]{}?,&*!|>'\"#%@`~\\ \t\n\r\x00\x85\ufeff\u2028",
    "é",
    "- ",
    ": ",
    "? ",
    "&a ",
    "*a",
    "!!str ",
    "<<",
    "---\n",
    "...\n",
    "\r\n",
    "\n  ",
    "\\x41",
    "\\u00e9",
    "1e3",
    "null",
    "- " * 40,
    "k" * 300,
]
edits = st.lists(
    st.tuples(st.integers(min_value=0), st.integers(0, 6), st.sampled_from(FRAGMENTS)),
    min_size=1,
    max_size=5,
)


def _mutate(text: str, changes: list[tuple[int, int, str]]) -> str:
    for position, op, fragment in changes:
        at = position % (len(text) + 1)
        if op < 4:
            text = text[:at] + fragment + text[at:]
        elif op < 6:
            text = text[:at] + text[at + op - 3 :]
        else:
            text = text[:at] + text[at // 2 : at // 2 + 20] + text[at:]
    return text


def _outcome(parse, text: str, *, libyaml: bool) -> tuple:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(yaml, "__with_libyaml__", libyaml)
        try:
            return ("read", parse(text, "buf.file"))
        except BSRTeamCacheError as exc:
            return ("refused", type(exc), str(exc))


@needs_libyaml
@settings(max_examples=400, deadline=None)
@given(st.sampled_from(SEEDS), edits)
@example(  # a directive libyaml accepts and the pure loader refuses: "%YAML 1.1#"
    seed="%YAML 1.1\n---\nversion: v2 # c\n", changes=[(9, 0, "#")]
)
def test_both_loaders_read_alike_or_fail_alike(seed: str, changes) -> None:
    text = _mutate(seed, changes)
    for parse in (parse_buf_lock, parse_buf_yaml):
        assert _outcome(parse, text, libyaml=True) == _outcome(parse, text, libyaml=False)


def _read_back_as_itself(value: str) -> bool:
    """What scalar_text's full check asks of a plain value: YAML 1.1 (PyYAML) and 1.2 (buf)
    read it back as the same string."""
    from bsr_team_cache.domain._yamlnodes import _YAML12_NUMBER

    return yaml.safe_load(value) == value and not _YAML12_NUMBER.fullmatch(value)


@given(st.text(alphabet="0123456789abcdef", min_size=1, max_size=40))
@example("0" * 32)
@example("12345678901234567890123456789012")
@example("1234567890123456e890123456789012")  # a 1.2 float
@example("0b01010101010101010101010101010101")  # a 1.1 binary integer
@example("0b0101010101010101010101010101010f")
@example("0755")  # a 1.1 octal integer
@example("1e5")
@example("e12")
@example("deadbeef")
def test_hex_values_are_written_as_the_full_check_writes_them(value: str) -> None:
    from bsr_team_cache.domain._yamlnodes import scalar_text

    expected = value if _read_back_as_itself(value) else f'"{value}"'
    assert scalar_text(value) == expected


def test_a_module_yaml_with_commits_beginning_with_digits_needs_no_yaml(tmp_path) -> None:
    probe = (
        "import sys\n"
        "from pathlib import Path\n"
        "from bsr_team_cache.bufcache.v3 import write_module\n"
        "from bsr_team_cache.domain.digest import parse_digest\n"
        "from bsr_team_cache.domain.moduleref import parse_module_name\n"
        "dep = (parse_module_name('localhost:8443/acme/money'), '2bb75b8cc22842fa8841c641fb25d3a6',"
        " parse_digest('b5:' + '98' * 64))\n"
        "write_module(Path(sys.argv[1]), parse_module_name('localhost:8443/acme/pets'),"
        " '41b522898fb54799af1f78eb67f18d87', {'a.proto': b'x'}, [dep])\n"
        "assert 'yaml' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", probe, str(tmp_path)], check=True)
    text = next(tmp_path.rglob("module.yaml")).read_text()
    assert "    commit: 2bb75b8cc22842fa8841c641fb25d3a6\n" in text
