"""The team layer: setup, bundles, sharing, warming, sync and eviction, metrics — one object over
a team registry, the BSR client and this machine's local store."""

from __future__ import annotations

import functools
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from bsr_team_cache._threads import ContextThreadPool
from bsr_team_cache.bsr.client import BSRModuleClient
from bsr_team_cache.domain.moduleref import (
    ModuleRef,
    parse_module_name,
    parse_module_ref,
)
from bsr_team_cache.errors import (
    AccessDeniedError,
    BSRTeamCacheError,
    ConfigError,
    InvalidContentError,
    RegistryError,
    UnavailableError,
    UsageError,
)
from bsr_team_cache.oci.artifact import ModuleArtifact, pull_module, push_module
from bsr_team_cache.oci.base import RegistryBackend
from bsr_team_cache.store import LocalStore
from bsr_team_cache.team.bundle_index import record_bundle, with_bundle_index
from bsr_team_cache.team.bundles import (
    ANN_OWNER,
    ANN_PERMISSIONS,
    ANN_READERS,
    LATEST,
    Bundle,
    bundle_context,
    bundle_repository,
    layer_sources,
    new_bundle,
    next_version,
    pull_members,
    push_bundle,
    read_bundle,
    shared_bundle_repository,
    stored_layers,
    validate_bundle_name,
)
from bsr_team_cache.team.config import (
    BundleRecord,
    ShareGrant,
    TeamConfig,
    make_config,
    role_at_least,
    validate_member,
    validate_team_name,
)
from bsr_team_cache.team.fetch import (
    TEAM,
    FetchReport,
    ModuleResult,
    obtain,
    record_fetch,
    team_config_key,
)
from bsr_team_cache.team.labels import LabelRecord, labels_context, update_label_index
from bsr_team_cache.team.resolve import (
    DEFAULT_LABEL_TTL,
    Resolution,
    TeamContext,
    label_writer,
    resolve_refs,
)
from bsr_team_cache.team.trust import update_team_config
from bsr_team_cache.usage.chunks import MergeReport, machine_tag, safe_merge, ship, usage_repository
from bsr_team_cache.usage.events import BUNDLE_PULL, SYNC, WARM, shipping_host
from bsr_team_cache.usage.legacy import adopt_store_usage
from bsr_team_cache.usage.log import EventLog, open_event_log
from bsr_team_cache.usage.metrics import CacheMetrics, compute, top_commits

if TYPE_CHECKING:
    from bsr_team_cache.team.trust import DocumentSigner
    from bsr_team_cache.trust.signatures import SigningContext
    from bsr_team_cache.usage.recommend import Advice

PERMISSIONS = ("read-only", "read-write")


@dataclass
class SyncReport:
    bundle_created: str = ""
    pushed: list[str] = field(default_factory=list)
    pulled: list[str] = field(default_factory=list)
    labels_refreshed: int = 0
    evicted: list[str] = field(default_factory=list)
    events_shipped: int = 0
    events_merged: int = 0
    audit_shipped: int = 0
    audit_merged: int = 0
    warnings: list[str] = field(default_factory=list)


def _audited(operation: str, refs: Callable[..., list[str]]) -> Callable:
    """Record the method's call in the audit log: ``refs(self, result, *args, **kwargs)`` on
    success, the error if it raises."""

    def decorate(method: Callable) -> Callable:
        @functools.wraps(method)
        def wrapper(self: TeamCache, *args, **kwargs):
            try:
                result = method(self, *args, **kwargs)
            except BSRTeamCacheError as exc:
                self.audit(operation, [], f"error: {exc}")
                raise
            self.audit(operation, refs(self, result, *args, **kwargs))
            return result

        return wrapper

    return decorate


def _require_role(config: TeamConfig, member: str, needed: str, what: str) -> None:
    """A clear refusal before the registry's: in a team with roles (one with an admin), only
    members with ``needed`` or a stronger role do ``what``. A team from before roles has none,
    and its registry alone decides."""
    if not config.members_with_role("admin") or role_at_least(config.role_of(member), needed):
        return
    role = config.role_of(member)
    who = f"{member!r} ({role})" if role else f"{member!r} (not a member)"
    allowed = config.members_with_role(needed)
    raise UsageError(
        f"only {needed}s of team {config.team} {what}; you are {who}. Ask one of:"
        f" {', '.join(allowed)}"
    )


def _require_admin(config: TeamConfig, member: str) -> None:
    _require_role(config, member, "admin", "change its configuration")


def membership_changes(before: TeamConfig, after: TeamConfig) -> list[tuple[str, str]]:
    """(audit operation, ref) for each member added or removed and each role changed."""
    out = [
        ("member-add", f"member:{m}:{after.role_of(m)}")
        for m in after.members
        if m not in before.members
    ]
    out += [("member-remove", f"member:{m}") for m in before.members if m not in after.members]
    out += [
        ("role-change", f"member:{m}:{before.role_of(m)}->{after.role_of(m)}")
        for m in after.members
        if m in before.members and before.role_of(m) != after.role_of(m)
    ]
    return out


class TeamCache:
    def __init__(
        self,
        team: str,
        *,
        registry: RegistryBackend,
        bsr: BSRModuleClient,
        store: LocalStore,
        member: str = "",
        namespace: str = "",
        label_ttl: float = DEFAULT_LABEL_TTL,
    ) -> None:
        self.team = validate_team_name(team)
        self.registry = registry
        self.bsr = bsr
        self.store = store
        self.member = member or "unknown"
        self.namespace = namespace
        self.label_ttl = label_ttl
        self.context = TeamContext(registry, self.team, namespace, self.member)

    def sync_audit(self, warnings: list[str], *, ship: bool = True) -> tuple[int, int]:
        """Ship this machine's new audit records (unless ``ship`` is off) and merge the other
        machines'; (shipped, merged). A registry that does not answer is a warning."""
        from bsr_team_cache.audit import team as audit_team

        repo = audit_team.audit_repository(self.team, self.namespace)
        tag = machine_tag(self.member, shipping_host())
        shipped = 0
        try:
            if ship:
                shipped = audit_team.ship(
                    self.store.root, self.registry, repo, team=self.team, tag=tag
                )
            merged = audit_team.merge(
                self.store.root, self.registry, repo, team=self.team, own_tag=tag
            )
        except (BSRTeamCacheError, OSError) as exc:
            warnings.append(f"team audit log not synced ({exc}); showing this machine's")
            return shipped, 0
        warnings.extend(merged.warnings)
        return shipped, merged.merged

    def audit(self, operation: str, refs: list[str], result: str = "ok") -> None:
        from bsr_team_cache.audit.log import record

        record(
            self.store.root,
            team=self.team,
            member=self.member,
            operation=operation,
            refs=refs,
            result=result,
        )

    # -- configuration -------------------------------------------------------------------
    def config(self, warnings: list[str] | None = None) -> TeamConfig:
        """The team configuration this machine trusts (team/trust.py; defaults when there is
        none). With ``warnings``, a malformed or untrusted configuration is reported there and
        the trusted one (or the defaults) applies; without, it is an InvalidContentError."""
        from bsr_team_cache.team.trust import read_trusted_config

        said: list[str] = []
        trusted = read_trusted_config(self.registry, self.team, self.namespace, self.store, said)
        found = trusted.config
        if warnings is not None:
            warnings.extend(said)
        elif said and found is None:
            raise InvalidContentError(said[-1])
        found = with_bundle_index(self.registry, self.team, found, self.namespace, warnings)
        return found or make_config(self.team)

    def config_or_defaults(self, warnings: list[str]) -> TeamConfig:
        """The team configuration; with the registry unreachable, the defaults (said in
        ``warnings``)."""
        try:
            return self.config(warnings)
        except RegistryError as exc:
            warnings.append(f"team configuration unavailable ({exc}); using the defaults")
            return make_config(self.team)

    def _update(self, change) -> TeamConfig:
        from bsr_team_cache.trust.keys import load_signing_key

        saved = update_team_config(
            self.registry,
            self.team,
            change,
            by=self.member,
            namespace=self.namespace,
            signing_key=load_signing_key(),  # signs once the team is signed (admins only)
            store=self.store,
        )
        self.store.kv_put(team_config_key(self.context), json.dumps(saved.to_json()))
        return saved

    @_audited(
        "setup",
        lambda self, config, *a, **k: [
            *(f"member:{m}" for m in config.members),
            f"strategy:{config.cache_strategy}",
        ],
    )
    def setup(
        self,
        members: list[str] | tuple[str, ...] = (),
        *,
        cache_strategy: str | None = None,
        shared_cache: bool | None = None,
        bundle_auto_creation: bool | None = None,
        max_cache_size_mb: int | None = None,
        sync_frequency_minutes: int | None = None,
        remove_members: list[str] | tuple[str, ...] = (),
        roles: dict[str, str] | None = None,
        signing_keys: dict[str, str] | None = None,
        encryption_keys: dict[str, str] | None = None,
        encrypt: bool | None = None,
    ) -> TeamConfig:
        """Create or update the team configuration: members are added (``roles`` adds them
        with a role) or removed, settings replaced, keys added. Whoever creates the team is its
        first admin; after that only admins change members, roles and keys (the registry
        enforces it where access is configured, docs/security.md)."""
        roles = dict(roles or {})
        changes: list[tuple[str, str]] = []

        def change(base: TeamConfig) -> TeamConfig:
            fresh = base.updated_at == 0.0  # nothing stored yet
            if not fresh:
                _require_admin(base, self.member)
            strategy = cache_strategy or base.cache_strategy
            # A new strategy brings its own size and frequency unless they are given.
            keep = not fresh and strategy == base.cache_strategy
            creator = [self.member] if fresh and self.member != "unknown" else []
            listed = [*base.members, *creator, *members, *roles]
            new_roles = {**base.roles, **dict.fromkeys(creator, "admin"), **roles}
            kept = [m for m in listed if m not in remove_members]
            config = make_config(
                self.team,
                members=kept,
                cache_strategy=strategy,
                shared_cache=base.shared_cache if shared_cache is None else shared_cache,
                bundle_auto_creation=base.bundle_auto_creation
                if bundle_auto_creation is None
                else bundle_auto_creation,
                max_cache_size_mb=max_cache_size_mb
                if max_cache_size_mb is not None
                else (base.max_cache_size_mb if keep else None),
                sync_frequency_minutes=sync_frequency_minutes
                if sync_frequency_minutes is not None
                else (base.sync_frequency_minutes if keep else None),
                roles=new_roles,
                signing_keys={**base.signing_keys, **(signing_keys or {})},
                encryption_keys={**base.encryption_keys, **(encryption_keys or {})},
                encrypt=encrypt,
                base=base,
            )
            if base.members_with_role("admin") and not config.members_with_role("admin"):
                raise UsageError(
                    f"team {self.team} would have no admin left: give another member the admin"
                    " role first (--role NAME=admin)"
                )
            if config != base:  # the last look at a config already holding ours changes nothing
                changes[:] = membership_changes(base, config)
            return config

        for member in remove_members:
            validate_member(member)
        change(make_config(self.team))  # bad input fails here, before touching the registry
        changes.clear()
        current = self.config([])
        before = current.recipients() if current.encrypt and current.encryption_keys else None
        saved = self._update(change)
        for operation, ref in changes:
            self.audit(operation, [ref])
        after = saved.recipients()
        if after is not None and before is not None and sorted(after) != sorted(before):
            self.rewrap(after)
        return saved

    def rewrap(self, recipients: list[str] | None = None) -> list[str]:
        """Wrap the keys of the team's encrypted layers for ``recipients`` (default: the
        configuration's), after a membership change: new manifests, the same layer blobs, so
        nothing is uploaded again. The modules are those this store, the team's usage log and
        its bundles know of (a member's token cannot list the registry). Returns the
        ``module:commit`` refs re-wrapped."""
        from bsr_team_cache.oci.artifact import rewrap_module

        config = self.config([])
        recipients = recipients or config.recipients()
        keys = self.context.private_keys()
        if not recipients or not keys:
            raise ConfigError(
                "BSR_TEAM_CACHE_PRIVATE_KEY_FILE",
                "re-wrapping the team's layer keys needs your private key (you must be one of"
                " the current recipients): set it and run setup --rewrap",
            )
        done = []
        for module in sorted(self._known_modules(config)):
            repo = self.context.repo(parse_module_name(module))
            for commit in self.registry.list_tags(repo):
                if len(commit) == 32 and rewrap_module(
                    self.registry, repo, commit, keys, recipients
                ):
                    done.append(f"{module}:{commit}")
        done += self._rewrap_bundles(config, keys, recipients)
        self.audit("rewrap", done)
        return done

    def _rewrap_bundles(self, config: TeamConfig, keys: list, recipients: list[str]) -> list[str]:
        """Each bundle of the index whose layers are encrypted, pushed again as a new version
        with its keys wrapped for ``recipients`` (versions are immutable; layers are mounted,
        not uploaded)."""
        from bsr_team_cache.team.bundles import rewrap_members

        done = []
        for record in config.bundles:
            repo = bundle_repository(self.team, record.name, self.namespace)
            context = bundle_repository(self.team, record.name)
            found = self._read_verified_bundle(repo, context, reference=record.version)
            if found is None or not any(m.encrypted for m in found[0].members):
                continue
            version = next_version(self.registry, repo)
            bundle = replace(rewrap_members(found[0], keys, recipients), version=version)
            self._publish_bundle(bundle, record.description, encrypted=True)
            done.append(f"{repo}:{version}")
        return done

    def _known_modules(self, config: TeamConfig) -> set[str]:
        """The modules this store, the team's bundles and its usage log know of."""
        modules = {entry.module for entry in self.store.entries()}
        for record in config.bundles:
            modules.update(key.rpartition(":")[0] for key in record.modules)
        with self.events([], merge=False) as log:
            return modules | log.module_names(team=self.team)

    # -- modules -------------------------------------------------------------------------
    def _resolve(self, refs: list[str] | tuple[str, ...]) -> Resolution:
        parsed: list[ModuleRef] = [parse_module_ref(r) for r in refs]
        if not parsed:
            raise UsageError("no module references given")
        return resolve_refs(
            parsed, bsr=self.bsr, team=self.context, store=self.store, label_ttl=self.label_ttl
        )

    def _obtain(self, resolution: Resolution, report: FetchReport) -> list[ModuleArtifact]:
        """The resolved modules, from the tiers as fetch takes them (the registry down: the
        BSR, with a warning)."""
        artifacts = obtain(
            list(resolution.lock.deps),
            team=self.context,
            bsr=self.bsr,
            store=self.store,
            report=report,
            labels=resolution.labels,
            registry_down=resolution.registry_down,
        )
        return list(artifacts.values())

    def warm(self, refs: list[str] | tuple[str, ...]) -> FetchReport:
        """Make sure modules (and their deps) are in the local store and the team registry."""
        started = time.time()
        resolution = self._resolve(refs)
        report = FetchReport(warnings=list(resolution.warnings))
        artifacts = self._obtain(resolution, report)
        if report.registry_down is None:  # else said once already, and the BSR served
            try:
                self._publish_missing(artifacts)
            except (RegistryError, InvalidContentError) as exc:
                report.warnings.append(f"could not publish to the team registry: {exc}")
        report.seconds = time.time() - started
        record_fetch(
            self.store, report, started, team=self.team, member=self.member, operation=WARM
        )
        return report

    def _publish_missing(
        self, artifacts: list[ModuleArtifact], config: TeamConfig | None = None
    ) -> list[str]:
        """Push artifacts the team registry lacks (e.g. found only in this machine's store),
        encrypted when the team encrypts (``config``: the team's, read if not given)."""
        recipients = (config or self.config([])).recipients()

        def one(artifact: ModuleArtifact) -> str | None:
            repo = self.context.repo(artifact.module)
            if self.registry.read_manifest(repo, artifact.commit) is not None:
                return None
            push_module(self.registry, repo, artifact, encryption=recipients)
            return f"{artifact.module}:{artifact.commit}"

        pushed: list[str] = []
        if not artifacts:
            return pushed
        with ContextThreadPool(max_workers=min(16, len(artifacts))) as pool:
            for result in pool.map(one, artifacts):
                if result:
                    pushed.append(result)
        return pushed

    # -- bundles -------------------------------------------------------------------------
    @_audited("bundle-create", lambda self, ref, *a, **k: [ref])
    def create_bundle(
        self, refs: list[str] | tuple[str, ...], name: str, description: str = ""
    ) -> str:
        """Resolve, make sure every module (closure included) is in the team registry, push
        one bundle artifact tagged ``v<N>`` and ``latest``. Returns ``<repo>:<version>``."""
        validate_bundle_name(name)
        config = self.config([])
        _require_role(config, self.member, "maintainer", "create bundles")
        resolution = self._resolve(refs)
        report = FetchReport(warnings=list(resolution.warnings))
        artifacts = self._obtain(resolution, report)
        self._publish_missing(artifacts, config)
        repo = bundle_repository(self.team, name, self.namespace)
        version = next_version(self.registry, repo)
        recipients = config.recipients()
        stored = (
            stored_layers(self.registry, artifacts, self.context.repo, recipients)
            if recipients
            else None
        )
        bundle = new_bundle(name, self.team, description, self.member, version, artifacts, stored)
        self._publish_bundle(bundle, description, encrypted=recipients is not None)
        # The next fetch here sees the bundle without waiting for its copy to age (the
        # configuration as read above, with the bundle index that now lists it).
        config = with_bundle_index(self.registry, self.team, config, self.namespace)
        self.store.kv_put(team_config_key(self.context), json.dumps(config.to_json()))
        return f"{repo}:{version}"

    def _publish_bundle(self, bundle: Bundle, description: str, *, encrypted: bool) -> None:
        """Push a bundle of this team (signed in a signed team; its layers mounted from the
        module repositories) and record it in the bundle index."""
        context = bundle_repository(self.team, bundle.name)
        push_bundle(
            self.registry,
            bundle_repository(self.team, bundle.name, self.namespace),
            bundle,
            sources=layer_sources(bundle, self.context.repo),
            tags=(bundle.version, LATEST),
            annotations={ANN_OWNER: self.team},
            require_encrypted=encrypted,
            signer=self._signer(bundle_context(context, bundle.version)),
        )
        keys = tuple(m.key for m in bundle.members)
        record = BundleRecord(bundle.name, bundle.version, description, keys)
        record_bundle(self.registry, self.team, record, self.namespace)

    def _signer(self, context: SigningContext) -> DocumentSigner | None:
        """How this member signs a document of the team at ``context``: None in an unsigned
        team; a UsageError if the team is signed and they cannot (team/trust.py)."""
        from bsr_team_cache.team.trust import document_signer, read_trusted_config
        from bsr_team_cache.trust.keys import load_signing_key

        trusted = read_trusted_config(self.registry, self.team, self.namespace, self.store, [])
        key = load_signing_key() if trusted.signed else None
        signer = document_signer(trusted, self.member, key, f"{context.repository}")
        return signer and signer.at(context)

    def _read_verified_bundle(
        self, repo: str, context_repo: str, owner: str | None = None, reference: str = LATEST
    ) -> tuple[Bundle, dict[str, str]] | None:
        """A bundle of ``owner`` (this team by default), checked against the configuration this
        machine trusts for that team: a signed team's must be signed by a maintainer or admin
        (else an InvalidContentError saying why)."""
        from bsr_team_cache.team.trust import read_trusted_config

        team = owner or self.team
        trusted = read_trusted_config(self.registry, team, self.namespace, self.store, [])
        return read_bundle(
            self.registry, repo, reference, trusted=trusted, context_repo=context_repo
        )

    def pull_bundle(self, name: str, *, owner_team: str | None = None) -> tuple[Bundle, list]:
        """Pull a bundle into the local store: the team's own, or one shared with it."""
        started = time.time()
        repo, bundle = self._find_bundle(name, owner_team)
        artifacts = pull_members(
            self.registry, repo, bundle.members, private_keys=self.context.private_keys()
        )
        for artifact in artifacts:
            self.store.put(artifact)
        seconds = (time.time() - started) / max(1, len(artifacts))
        report = FetchReport()
        ref = f"{bundle.name}:{bundle.version}"
        report.modules = [
            ModuleResult(str(a.module), a.commit, TEAM, a.size, seconds, bundle=ref)
            for a in artifacts
        ]
        record_fetch(
            self.store, report, started, team=self.team, member=self.member, operation=BUNDLE_PULL
        )
        return bundle, artifacts

    def _find_bundle(self, name: str, owner_team: str | None) -> tuple[str, Bundle]:
        validate_bundle_name(name)
        if owner_team in (None, self.team):
            repo = bundle_repository(self.team, name, self.namespace)
            found = self._read_verified_bundle(repo, bundle_repository(self.team, name))
            if found is not None:
                return repo, found[0]
        shared = shared_bundle_repository(name, self.namespace)
        found = read_bundle(self.registry, shared)
        if found is not None:  # verified against its owner's configuration
            found = self._read_verified_bundle(
                shared, shared_bundle_repository(name), found[0].team
            )
        if found is not None:
            bundle, annotations = found
            readers = [r for r in annotations.get(ANN_READERS, "").split(",") if r]
            owner = annotations.get(ANN_OWNER, "")
            if owner_team is not None and owner != owner_team:
                raise BSRTeamCacheError(
                    f"bundle {name}: the shared copy belongs to team {owner!r}, not {owner_team!r}"
                )
            if self.team != owner and self.team not in readers:
                raise BSRTeamCacheError(
                    f"bundle {name} is shared by team {owner!r} with {', '.join(readers)}, not"
                    f" with {self.team!r}; ask team {owner!r} to share it with you"
                )
            return shared, bundle
        raise BSRTeamCacheError(
            f"no bundle named {name!r} for team {self.team!r} (nor shared with it); create it"
            " with `bundle --name ... --deps ...`"
        )

    @_audited(
        "share",
        lambda self, ref, *a, **k: [
            ref,
            *(f"team:{t}" for t in (a[1] if len(a) > 1 else k.get("target_teams", ()))),
        ],
    )
    def share_bundle(
        self, name: str, target_teams: list[str] | tuple[str, ...], permissions: str = "read-only"
    ) -> str:
        """Publish a bundle at ``shared/organization/bundles/<name>`` for ``target_teams`` and
        record the grant. A read-only share owned by another team is never overwritten."""
        if permissions not in PERMISSIONS:
            raise UsageError(
                f"unknown permissions {permissions!r}: expected {' or '.join(PERMISSIONS)}"
            )
        targets = [validate_team_name(t) for t in target_teams]
        if not targets:
            raise UsageError("share_bundle needs at least one target team")
        repo = bundle_repository(self.team, name, self.namespace)
        found = self._read_verified_bundle(repo, bundle_repository(self.team, name))
        if found is None:
            raise BSRTeamCacheError(
                f"team {self.team!r} has no bundle named {name!r}; create it first"
            )
        bundle = found[0]
        # A share lets other teams read: an access grant, kept in the configuration, so the
        # admins' call. The grant is written first: a registry with access control lets the
        # owning team push the shared copy only once its configuration claims it.
        _require_admin(self.config([]), self.member)
        shared = shared_bundle_repository(name, self.namespace)
        try:
            self._check_share_owner(shared)
            known = True
        except AccessDeniedError:  # a registry with access control: readable once we claim it
            known = False
        grant = ShareGrant(name, tuple(sorted(set(targets))), permissions, bundle.version, shared)
        self._update(
            lambda c: replace(c, shares=(*(g for g in c.shares if g.bundle != name), grant))
        )
        if not known:
            try:
                self._check_share_owner(shared)
            except BSRTeamCacheError:
                self._update(lambda c: replace(c, shares=tuple(g for g in c.shares if g != grant)))
                raise
        sources = {m.layer_digest: repo for m in bundle.members}
        push_bundle(
            self.registry,
            shared,
            bundle,
            sources=sources,
            tags=(bundle.version, LATEST),
            annotations={
                ANN_OWNER: self.team,
                ANN_PERMISSIONS: permissions,
                ANN_READERS: ",".join(sorted(set(targets))),
            },
            signer=self._signer(bundle_context(shared_bundle_repository(name), bundle.version)),
        )
        return f"{shared}:{bundle.version}"

    def _check_share_owner(self, shared: str) -> None:
        """Refuse to overwrite a read-only share that another team owns."""
        existing = read_bundle(self.registry, shared)
        if existing is not None:
            owner = existing[1].get(ANN_OWNER, "")
            if owner != self.team and existing[1].get(ANN_PERMISSIONS) != "read-write":
                raise BSRTeamCacheError(
                    f"refusing to overwrite {shared}: it is a read-only share owned by team"
                    f" {owner!r}. Pick another bundle name, or ask team {owner!r} to change it"
                )

    # -- sync, eviction ------------------------------------------------------------------
    def sync_due(self) -> bool:
        """Whether ``sync_frequency_minutes`` have passed since this machine's last sync."""
        last = self.store.kv_get(self._sync_key())
        if last is None:
            return True
        return time.time() - float(last) >= self.config([]).sync_frequency_minutes * 60

    def _sync_key(self) -> str:
        return f"last-sync:{self.registry.describe()}:{self.namespace}:{self.team}"

    @_audited("sync", lambda self, report: [*report.pushed, *report.pulled])
    def sync(self) -> SyncReport:
        """Push local-only modules, publish this member's usage, pull the team's hot set,
        refresh label indexes, evict above the team's size limit."""
        report = SyncReport()
        config = self.config(report.warnings)
        self.store.kv_put(self._sync_key(), str(time.time()))
        artifacts = []
        for entry in self.store.entries():
            try:
                artifact = self.store.get(
                    parse_module_name(entry.module), entry.commit, touch=False
                )
            except BSRTeamCacheError as exc:
                report.warnings.append(str(exc))
                continue
            if artifact is not None:
                artifacts.append(artifact)
        try:
            report.pushed = self._publish_missing(artifacts, config)
        except (RegistryError, InvalidContentError) as exc:
            report.warnings.append(f"could not push local modules: {exc}")
        log = self._event_log()
        try:
            shipped = ship(
                log,
                self.registry,
                self._usage_repo(),
                team=self.team,
                member=self.member,
                host=shipping_host(),
                store_bytes=self.store.stats().bytes,
            )
            report.events_shipped = shipped.events
            report.warnings.extend(shipped.warnings)
        except BSRTeamCacheError as exc:
            report.warnings.append(f"usage events not shipped (the next sync retries): {exc}")
        report.events_merged = self._merge_events(log, report.warnings).events
        report.audit_shipped, report.audit_merged = self.sync_audit(report.warnings)
        report.pulled = self._pull_hot_set(log, config, report)
        report.labels_refreshed = self._refresh_labels(report)
        if config.bundle_auto_creation:
            report.bundle_created = self._auto_bundle(report)
        evicted = self.store.evict(config.max_cache_size_mb * 1024 * 1024)
        report.evicted = [f"{e.module}:{e.commit}" for e in evicted]
        if evicted:
            log.bump({"evictions": len(evicted)})
            self.audit("evict", report.evicted)
        log.close()
        return report

    def _auto_bundle(self, report: SyncReport) -> str:
        """With ``bundle_auto_creation``: bundle the modules the team's builds (every member's
        events, as merged by this sync) keep fetching together that no bundle covers yet
        (named after its content, so every member arrives at the same bundle for the same
        set)."""
        config = self.config([])
        if config.members_with_role("admin") and not role_at_least(
            config.role_of(self.member), "maintainer"
        ):
            return ""  # bundles are the maintainers': their sync creates this one
        keys = self.auto_bundle_candidates()
        if len(keys) < 2:
            return ""
        name = "auto-" + hashlib.sha256("\n".join(keys).encode()).hexdigest()[:12]
        try:  # module:commit refs pin the exact commits
            return self.create_bundle(keys, name, "created by sync from co-fetched modules")
        except BSRTeamCacheError as exc:
            report.warnings.append(f"automatic bundle not created: {exc}")
            return ""

    def auto_bundle_candidates(self) -> list[str]:
        """The refs (module:commit) of sync's automatic bundle (usage/recommend.py)."""
        from bsr_team_cache.usage import recommend

        bundles = self.config_or_defaults([]).bundles
        with self.events([], merge=False) as log:  # sync has just merged
            return recommend.auto_bundle_candidates(log, team=self.team, bundles=bundles)

    # -- usage ---------------------------------------------------------------------------
    def _usage_repo(self) -> str:
        return usage_repository(self.team, self.namespace)

    def _event_log(self) -> EventLog:
        log = open_event_log(self.store.root)
        adopt_store_usage(log, self.store, team=self.team, member=self.member)
        return log

    def _merge_events(self, log: EventLog, warnings: list[str]) -> MergeReport:
        merged = safe_merge(
            log,
            self.registry,
            self._usage_repo(),
            team=self.team,
            own_tag=machine_tag(self.member, shipping_host()),
        )
        warnings.extend(merged.warnings)
        if merged.store_bytes:
            log.set_state(f"store-bytes:{self._usage_repo()}", json.dumps(merged.store_bytes))
        return merged

    def events(self, warnings: list[str] | None = None, *, merge: bool = True) -> EventLog:
        """This machine's event log, with the team's events merged in from the registry first
        (when it answers; else said in ``warnings``, and this machine's events are used)."""
        log = self._event_log()
        if merge:
            self._merge_events(log, [] if warnings is None else warnings)
        return log

    def store_sizes(self, log: EventLog) -> dict[str, int]:
        """The latest local-store size each machine of the team reported, this one's now."""
        try:
            sizes = json.loads(log.get_state(f"store-bytes:{self._usage_repo()}") or "{}")
        except ValueError:
            sizes = {}
        sizes = {k: v for k, v in sizes.items() if isinstance(v, int)}
        sizes[machine_tag(self.member, shipping_host())] = self.store.stats().bytes
        return sizes

    def _pull_hot_set(self, log: EventLog, config: TeamConfig, report: SyncReport) -> list[str]:
        """The team's most requested module commits (last 30 days) this store lacks."""
        started = time.time()
        missing = []
        for name, commit in top_commits(log, team=self.team, limit=config.preload_top):
            module = parse_module_name(name)
            if not self.store.contains(module, commit):
                missing.append((module, commit))
        pulled = []
        results = FetchReport()
        for module, commit in missing:
            t0 = time.time()
            try:
                artifact = pull_module(
                    self.registry,
                    self.context.repo(module),
                    module,
                    commit,
                    private_keys=self.context.private_keys(),
                )
            except BSRTeamCacheError as exc:
                report.warnings.append(f"hot set: {module}:{commit}: {exc}")
                continue
            if artifact is not None:
                self.store.put(artifact)
                pulled.append(f"{module}:{commit}")
                results.modules.append(
                    ModuleResult(str(module), commit, TEAM, artifact.size, time.time() - t0)
                )
        if results.modules:
            record_fetch(
                self.store, results, started, team=self.team, member=self.member, operation=SYNC
            )
        return pulled

    def _refresh_labels(self, report: SyncReport) -> int:
        rows = self.store.labels()
        if not rows:
            return 0
        refs = [parse_module_ref(f"{m}:{label}" if label else m) for m, label, _, _ in rows]
        try:  # GetCommits: one commit per (module, label), however many labels a module has
            commits = self.bsr.resolve(refs)
        except UnavailableError as exc:
            report.warnings.append(f"labels not refreshed: the BSR is unavailable ({exc})")
            return 0
        except BSRTeamCacheError as exc:
            report.warnings.append(f"labels not refreshed: {exc}")
            return 0
        now = time.time()
        refreshed = 0
        try:  # a signed team's indexes: maintainers and admins write them, signed
            writes, signer = label_writer(self.context, self.store, report.warnings)
        except RegistryError as exc:
            report.warnings.append(f"label indexes not refreshed: {exc}")
            writes, signer = False, None
        for ref, info in zip(refs, commits, strict=True):
            commit = info.commit_id
            label = ref.ref or ""
            self.store.remember_label(ref.module, label, commit)
            refreshed += 1
            if not writes:
                continue
            try:
                update_label_index(
                    self.registry,
                    self.context.labels_repo(ref.module),
                    {label: LabelRecord(commit, now)},
                    signer=signer and signer.at(labels_context(self.team, ref.module)),
                )
            except (RegistryError, InvalidContentError) as exc:
                report.warnings.append(f"label index of {ref.module}: {exc}")
        return refreshed

    @_audited("clear", lambda self, removed: [f"modules:{removed}"])
    def clear(self) -> int:
        return self.store.clear()

    # -- metrics -------------------------------------------------------------------------
    def metrics(
        self,
        *,
        member: str | None = None,
        since: float | None = None,
        timezone: str = "UTC",
        merge: bool = True,
    ) -> CacheMetrics:
        """The team's metrics from every member's events (one member's with ``member``)."""
        warnings: list[str] = []
        with self.events(warnings, merge=merge) as log:
            report = compute(
                log,
                team=self.team,
                member=member,
                since=since,
                timezone=timezone,
                store_bytes=self.store_sizes(log),
            )
        report["local_store_bytes"] = self.store.stats().bytes
        return CacheMetrics(report, warnings)

    def analysis(
        self,
        warnings: list[str],
        *,
        member: str | None = None,
        since: float | None = None,
        timezone: str = "UTC",
        top: int = 10,
        merge: bool = True,
    ) -> dict:
        """The analysis of every member's events (usage/analysis.py) up to now: events dated
        later (a wrong clock, a forged chunk) are not counted, nor sets a team bundle holds."""
        from bsr_team_cache.usage.analysis import analyze

        now = time.time()
        with self.events(warnings, merge=merge) as log:
            bundles = self.config_or_defaults(warnings).bundles
            return analyze(
                log,
                team=self.team,
                member=member,
                since=now - 30 * 86400 if since is None else since,
                until=now,
                timezone=timezone,
                top=top,
                bundles=[{ref.rpartition(":")[0] for ref in b.modules} for b in bundles],
            )

    def advise(
        self,
        *,
        member: str | None = None,
        since: float | None = None,
        timezone: str = "UTC",
        merge: bool = True,
        now: float | None = None,
    ) -> Advice:
        """Recommendations from every member's events (usage/recommend.py), merged from the
        team registry first unless ``merge`` is off."""
        from bsr_team_cache.usage import recommend

        warnings: list[str] = []
        config = self.config_or_defaults(warnings)
        with self.events(warnings, merge=merge) as log:
            return recommend.advise(
                log,
                team=self.team,
                store=self.store,
                policy=config,
                member=member,
                since=since,
                timezone=timezone,
                now=now,
                warnings=warnings,
            )


def open_team_cache(
    team: str,
    *,
    registry: str,
    store_dir: Path,
    store_max_mb: int | None = None,
    member: str = "",
    insecure: bool = False,
    namespace: str = "",
    bsr: BSRModuleClient | None = None,
) -> TeamCache:
    from bsr_team_cache.oci import open_registry

    return TeamCache(
        team,
        registry=open_registry(registry, insecure=insecure),
        bsr=bsr or BSRModuleClient(),
        store=LocalStore(store_dir, max_bytes=store_max_mb * 1024 * 1024 if store_max_mb else None),
        member=member,
        namespace=namespace,
    )
