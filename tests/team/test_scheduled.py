"""``warm --scheduled``'s execution in the team layer: the team's bundles it keeps or pulls,
and the defaults when the team registry does not answer (warming and the weekly refresh, end
to end with a BSR: tests/usage/test_schedule.py)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from bsr_team_cache.bsr.client import BSRModuleClient
from bsr_team_cache.domain.digest import b5_from_contents
from bsr_team_cache.domain.moduleref import parse_module_name
from bsr_team_cache.errors import RegistryError
from bsr_team_cache.oci.artifact import ModuleArtifact
from bsr_team_cache.oci.layout import OCILayoutRegistry
from bsr_team_cache.store import LocalStore
from bsr_team_cache.team.cache import TeamCache
from bsr_team_cache.team.config import BundleRecord
from bsr_team_cache.team.scheduled import run_scheduled
from bsr_team_cache.usage.events import parse_time

WINTER = parse_time("2026-01-14T12:00:00Z")  # a Wednesday


def _cache(tmp_path: Path, registry: OCILayoutRegistry | None = None) -> TeamCache:
    return TeamCache(
        "t",
        registry=registry or OCILayoutRegistry(tmp_path / "registry"),
        bsr=BSRModuleClient(),
        store=LocalStore(tmp_path / "store"),
        member="alice",
    )


def _artifact(name: str, commit: str) -> ModuleArtifact:
    files = {f"{name}.proto": b'syntax = "proto3";\n'}
    return ModuleArtifact(
        parse_module_name(f"buf.build/acme/{name}"), commit, b5_from_contents(files), (), files, ""
    )


class _Unreachable(OCILayoutRegistry):
    """A team registry that answers nothing."""

    def read_manifest(self, repo: str, reference: str) -> tuple[bytes, str] | None:
        raise RegistryError(f"{repo}: connection refused")

    def list_tags(self, repo: str) -> list[str]:
        raise RegistryError(f"{repo}: connection refused")


def test_a_scheduled_run_without_requests_warms_nothing(tmp_path: Path) -> None:
    run = run_scheduled(_cache(tmp_path), now=WINTER)
    assert (run.refs, run.modules, run.refreshed, run.next_refresh) == ([], {}, False, None)
    assert run.lines() == ["warmed nothing: no requests recorded for the team in the last 30 days"]


def test_bundles_this_store_has_are_kept_and_a_failed_pull_is_a_warning(tmp_path: Path) -> None:
    """The team has two bundles: notes, whose module this store has, and pets, which the
    registry lacks (its pull fails: a warning, the run goes on)."""
    cache = _cache(tmp_path)
    notes = _artifact("notes", "2" * 32)
    cache.store.put(notes)
    records = (
        BundleRecord("notes", "v1", "", (f"{notes.module}:{notes.commit}",)),
        BundleRecord("pets", "v3", "", (f"buf.build/acme/pets:{'1' * 32}",)),
    )
    cache._update(lambda c: replace(c, bundles=records))
    run = run_scheduled(cache, now=WINTER)
    assert (run.bundles_pulled, run.bundles_current) == ([], ["notes:v1"])
    assert run.warnings == [
        "bundle pets:v3 not pulled: no bundle named 'pets' for team 't' (nor shared with it);"
        " create it with `bundle --name ... --deps ...`"
    ]


def test_without_the_team_registry_the_run_uses_the_defaults_and_says_so(
    tmp_path: Path,
) -> None:
    cache = _cache(tmp_path, _Unreachable(tmp_path / "registry"))
    run = run_scheduled(cache, now=WINTER)
    assert run.warnings == [
        "team configuration unavailable (teams/t/config: connection refused); using the defaults",
        "team usage not merged (teams/t/usage-events: connection refused); showing this"
        " machine's events",
    ]
    assert (run.refs, run.bundles_pulled, run.bundles_current, run.refreshed) == (
        [], [], [], False,
    )  # fmt: skip
