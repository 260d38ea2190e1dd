"""The design document's Python API and CLI (``tools/bsr_client.py``, ``tools/oras_client.py``,
``tools/bsr_team_oras_cache.py``), as adapters over the package. Nothing here decides anything
the package does not: names and signatures follow the document, the work is done by
``team.cache.TeamCache``, ``team.fetch`` and the registry and BSR clients.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from bsr_team_cache._hosts import is_loopback
from bsr_team_cache.bsr.client import BSRModuleClient
from bsr_team_cache.bufcache.export import export_files
from bsr_team_cache.domain.bufyaml import read_buf_yaml
from bsr_team_cache.domain.moduleref import parse_module_ref
from bsr_team_cache.errors import BSRTeamCacheError
from bsr_team_cache.oci import open_registry
from bsr_team_cache.oci.base import RegistryBackend
from bsr_team_cache.oci.url import redact
from bsr_team_cache.settings import load_settings
from bsr_team_cache.store import LocalStore
from bsr_team_cache.team.cache import TeamCache
from bsr_team_cache.team.config import TeamConfig
from bsr_team_cache.team.fetch import FetchReport, obtain
from bsr_team_cache.team.resolve import TeamContext, resolve_refs
from bsr_team_cache.usage.metrics import CacheMetrics
from bsr_team_cache.usage.recommend import Recommendation, format_advice

log = logging.getLogger("bsr_team_cache")


@dataclass
class BSRDependency:
    """``name`` (module), ``version`` (label or commit), ``digest`` (b5, may be empty),
    ``repository`` (``registry/owner``)."""

    name: str
    version: str
    digest: str
    repository: str
    commit: str = ""

    @property
    def module(self) -> str:
        return f"{self.repository}/{self.name}"

    @property
    def ref(self) -> str:
        return f"{self.module}:{self.version}" if self.version else self.module


class BSRClient:
    """Resolves and downloads BSR modules, keeping them in ``cache_dir`` (a local store) and
    sharing them through the team registry of the settings (BSR_TEAM_CACHE_REGISTRY, ...)."""

    def __init__(
        self, registry_url: str = "buf.build", team: str = "", cache_dir: str = ""
    ) -> None:
        settings = load_settings(team=team or None)
        self.registry_url = registry_url
        self.team = team or settings.team or "default"
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else settings.store_dir
        self.bsr = BSRModuleClient()
        self.store = LocalStore(self.cache_dir or _default_store())
        self._team_registry_url = settings.registry
        self._insecure = settings.insecure
        self._registry: RegistryBackend | None = None

    @property
    def team_registry(self) -> RegistryBackend:
        if self._registry is None:
            self._registry = open_registry(self._team_registry_url, insecure=self._insecure)
        return self._registry

    def _context(self) -> TeamContext:
        return TeamContext(self.team_registry, self.team)

    def resolve_dependencies(self, buf_yaml: Path) -> list[BSRDependency]:
        """Every module the buf.yaml's deps need (closure), resolved to commits and digests."""
        config = read_buf_yaml(Path(buf_yaml))
        if not config.deps:
            return []
        resolution = resolve_refs(config.deps, bsr=self.bsr, team=self._context(), store=self.store)
        labels = {str(r.module): r.ref for r in config.deps if r.ref}
        out = []
        for dep in resolution.lock.deps:
            module = dep.module
            out.append(
                BSRDependency(
                    name=module.name,
                    version=labels.get(str(module)) or dep.commit,
                    digest=str(dep.digest),
                    repository=f"{module.registry}/{module.owner}",
                    commit=dep.commit,
                )
            )
        return out

    def download_dependency(self, dep: BSRDependency, output_dir: Path) -> Path:
        """The module's files (not its deps) under ``output_dir/<name>``; returns that path."""
        repository = (
            dep.repository if "/" in dep.repository else (f"{self.registry_url}/{dep.repository}")
        )
        ref = f"{repository}/{dep.name}" + (
            f":{dep.commit or dep.version}" if (dep.commit or dep.version) else ""
        )
        resolution = resolve_refs(
            [parse_module_ref(ref)], bsr=self.bsr, team=self._context(), store=self.store
        )
        module = parse_module_ref(ref).module
        report = FetchReport()
        artifacts = obtain(
            list(resolution.lock.deps),
            team=self._context(),
            bsr=self.bsr,
            store=self.store,
            report=report,
            labels=resolution.labels,
        )
        for warning in report.warnings:
            log.warning("%s", warning)
        artifact = next(a for a in artifacts.values() if a.module == module)
        if dep.digest and dep.digest != str(artifact.digest):
            raise BSRTeamCacheError(
                f"{ref}: digest {artifact.digest} differs from the expected {dep.digest}"
            )
        target = Path(output_dir) / dep.name
        export_files(target, artifact.files, f"{artifact.module}:{artifact.commit}")
        return target


class OrasClient:
    """The team registry (``registry``: a host, a URL, or ``oci-layout:PATH``) and this
    machine's local store (``cache_dir``)."""

    def __init__(self, registry: str, cache_dir: str = "", *, insecure: bool = False) -> None:
        self.registry_url = _registry_url(registry)
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else None
        self.registry = open_registry(self.registry_url, insecure=insecure)
        self.store = LocalStore(self.cache_dir or _default_store())


class BSRTeamOrasCache:
    def __init__(self, team: str, bsr_client: BSRClient, oras_client: OrasClient) -> None:
        self.team = team
        self.bsr_client = bsr_client
        self.oras_client = oras_client
        self.cache = TeamCache(
            team,
            registry=oras_client.registry,
            bsr=bsr_client.bsr,
            store=oras_client.store,
            member=load_settings().member,
        )

    def enable_shared_cache(
        self, members: list[str], cache_strategy: str | None = None
    ) -> TeamConfig:
        return self.cache.setup(members, cache_strategy=cache_strategy, shared_cache=True)

    def create_dependency_bundle(
        self, dependencies: list[str], bundle_name: str, description: str = ""
    ) -> str:
        return self.cache.create_bundle(dependencies, bundle_name, description)

    def monitor_cache_performance(self) -> CacheMetrics:
        return self.cache.metrics()

    def share_bundle(
        self, bundle_name: str, target_teams: list[str], permissions: str = "read-only"
    ) -> str:
        return self.cache.share_bundle(bundle_name, target_teams, permissions)

    def recommend(self) -> list[Recommendation]:
        return self.cache.advise().recommendations

    def sync(self):
        return self.cache.sync()


def _registry_url(registry: str) -> str:
    """``host[:port][/ns]`` as the document writes it: https, or http for loopback."""
    if registry.startswith(("oci-layout:", "https://", "http://", "oci://", "/", ".")):
        return registry
    host = registry.split("/", 1)[0]
    return f"{'http' if is_loopback(host) else 'https'}://{registry}"


def _default_store() -> Path:
    from bsr_team_cache.store import default_store_dir

    return default_store_dir()


# -- the document's CLI --------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bsr_team_oras_cache.py", description="BSR team cache (the design document's CLI)"
    )
    parser.add_argument("--team", required=True)
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--registry", help="team registry (default: settings, then embedded)")
    parser.add_argument("--cache-dir", help="local store (default: settings)")
    sub = parser.add_subparsers(dest="command", required=True)
    setup = sub.add_parser("setup")
    setup.add_argument("--members", nargs="+", default=[])
    setup.add_argument("--strategy", choices=["aggressive", "balanced", "conservative"])
    bundle = sub.add_parser("bundle")
    bundle.add_argument("--name", required=True)
    bundle.add_argument("--deps", nargs="+", required=True)
    bundle.add_argument("--description", default="")
    sub.add_parser("monitor")
    sub.add_parser("recommend")
    sub.add_parser("sync")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    # --verbose is about this tool's decisions, not the HTTP libraries' internals.
    log.setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    try:
        return _run(args)
    except BSRTeamCacheError as exc:
        print(f"bsr_team_oras_cache: error: {exc}", file=sys.stderr)
        return exc.exit_code


def _run(args: argparse.Namespace) -> int:
    settings = load_settings(registry=args.registry, team=args.team)
    store = args.cache_dir or str(settings.store_dir or _default_store())
    oras = OrasClient(settings.registry, store, insecure=settings.insecure)
    cache = BSRTeamOrasCache(args.team, BSRClient(team=args.team, cache_dir=store), oras)
    log.debug(
        "team %s, registry %s (%s), store %s",
        args.team,
        redact(settings.registry),
        settings.source,
        store,
    )
    if args.command == "setup":
        config = cache.enable_shared_cache(args.members, args.strategy)
        print(f"Team {config.team} set up in {redact(settings.registry)}")
        print(f"  Members: {', '.join(config.members) or '(none)'}")
        print(
            f"  Strategy: {config.cache_strategy} ({config.max_cache_size_mb} MB,"
            f" preload top {config.preload_top}, sync every {config.sync_frequency_minutes} min)"
        )
    elif args.command == "bundle":
        ref = cache.create_dependency_bundle(args.deps, args.name, args.description)
        print(f"Created bundle {ref}")
    elif args.command == "monitor":
        m = cache.monitor_cache_performance()
        for warning in m.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        for line in m.dashboard_lines():
            print(line)
        if args.verbose:
            print(json.dumps(m.to_json(), indent=2, ensure_ascii=False))
    elif args.command == "recommend":
        advice = cache.cache.advise()
        for warning in advice.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        print("\n".join(format_advice(advice)))
    elif args.command == "sync":
        report = cache.sync()
        for warning in report.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        print(
            f"Synced team {args.team}: pushed {len(report.pushed)}, pulled"
            f" {len(report.pulled)}, labels refreshed {report.labels_refreshed}, evicted"
            f" {len(report.evicted)}"
        )
    return 0
