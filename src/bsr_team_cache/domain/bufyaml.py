"""buf.yaml (v1beta1, v1, v2): the module names and the dependency references it declares."""

from __future__ import annotations

from pathlib import Path

from bsr_team_cache._records import field, record
from bsr_team_cache.domain import _yamlnodes as yn
from bsr_team_cache.domain.moduleref import (
    ModuleName,
    ModuleRef,
    parse_module_name,
    parse_module_ref,
)
from bsr_team_cache.errors import BSRTeamCacheError, ConfigError

BUF_YAML = "buf.yaml"
VERSIONS = ("v1beta1", "v1", "v2")


@record(frozen=True)
class WorkspaceModule:
    """A module of a v2 workspace (or the single module of a v1 buf.yaml)."""

    path: str
    name: ModuleName | None


@record(frozen=True)
class BufYaml:
    path: Path
    version: str
    modules: tuple[WorkspaceModule, ...]
    deps: tuple[ModuleRef, ...] = field(default=())


def _parse_name(path: Path, node, what: str) -> ModuleName | None:
    text = yn.scalar(path, node, what)
    if not text:
        return None
    try:
        return parse_module_name(text)
    except BSRTeamCacheError as exc:
        raise ConfigError(path, str(exc), line=yn.line_of(node), entry=what) from None


def parse_buf_yaml(text: str, path: Path | str = BUF_YAML) -> BufYaml:
    path = Path(path)
    root = yn.mapping(path, yn.compose(path, text), "buf.yaml")
    version = "v1beta1"
    if "version" in root:
        version = yn.scalar(path, root["version"], "version")
        if version not in VERSIONS:
            raise ConfigError(
                path,
                f"unknown version {version!r}",
                line=yn.line_of(root["version"]),
                hint="expected v1beta1, v1 or v2",
            )
    modules: list[WorkspaceModule] = []
    if version == "v2" and "modules" in root:
        if "name" in root:
            raise ConfigError(
                path,
                "top-level 'name' is not allowed when 'modules' is set",
                line=yn.line_of(root["name"]),
                hint="put the name on the module entry",
            )
        for index, item in enumerate(yn.sequence(path, root["modules"], "modules")):
            entry = yn.mapping(path, item, f"modules[{index}]")
            mod_path = "."
            if "path" in entry:
                mod_path = yn.scalar(path, entry["path"], f"modules[{index}].path") or "."
            name = None
            if "name" in entry:
                name = _parse_name(path, entry["name"], f"modules[{index}].name")
            modules.append(WorkspaceModule(mod_path, name))
    else:
        if version != "v2" and "modules" in root:
            raise ConfigError(
                path,
                f"'modules' needs version v2 (this file is {version})",
                line=yn.line_of(root["modules"]),
            )
        name = _parse_name(path, root["name"], "name") if "name" in root else None
        modules.append(WorkspaceModule(".", name))

    deps: list[ModuleRef] = []
    seen: dict[ModuleName, int] = {}
    for index, item in enumerate(yn.sequence(path, root.get("deps"), "deps")):
        what = f"deps[{index}]"
        text = yn.scalar(path, item, what)
        line = yn.line_of(item)
        try:
            ref = parse_module_ref(text)
        except BSRTeamCacheError as exc:
            raise ConfigError(path, str(exc), line=line, entry=what) from None
        if ref.module in seen:
            raise ConfigError(
                path,
                f"duplicate dependency {ref.module} (first listed on line {seen[ref.module]})",
                line=line,
                entry=what,
                hint="list each module once",
            )
        seen[ref.module] = line
        deps.append(ref)
    return BufYaml(path=path, version=version, modules=tuple(modules), deps=tuple(deps))


def read_buf_yaml(path: Path | str) -> BufYaml:
    path = Path(path)
    if path.is_dir():
        path = path / BUF_YAML
    return parse_buf_yaml(yn.read_text(path), path)
