"""Sample BSR modules for the demo and the tests.

``acme/*`` are small hand-written modules with transitive deps (``acme/legacy`` keeps the v1
buf.yaml and buf.lock of a module pushed from a v1 workspace); ``grpc/grpc`` (labels main and
v1.5.0) holds a health-checking API written for these samples; ``googleapis/googleapis`` (labels
main and v1.0.0) is made from the .proto files that ``googleapis-common-protos`` ships.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

SAMPLES_DIR = Path(__file__).parent


def googleapis_proto_root() -> Path:
    """The directory holding ``google/api/*.proto`` from googleapis-common-protos."""
    spec = importlib.util.find_spec("google.api")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("googleapis-common-protos is not installed")
    for location in spec.submodule_search_locations:
        root = Path(location).parent.parent
        if any((root / "google" / "api").glob("*.proto")):
            return root
    raise RuntimeError("googleapis-common-protos ships no .proto files here")


def write_googleapis_module(dest: Path) -> int:
    """Copy googleapis-common-protos' .proto files to ``dest``; return the file count."""
    root = googleapis_proto_root()
    count = 0
    for proto in sorted((root / "google").rglob("*.proto")):
        rel = proto.relative_to(root)
        if rel.parts[1] == "protobuf":  # well-known types come with buf and protoc
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(proto, target)
        count += 1
    (dest / "README.md").write_text(
        "# googleapis\n\nCommon Google API protos, as shipped by googleapis-common-protos.\n"
    )
    return count


def write_sample_data(dest: Path) -> Path:
    """Lay out a dev-bsr data directory (``DEST/<owner>/<module>/<label>/``) and return it."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(SAMPLES_DIR / "acme", dest / "acme", dirs_exist_ok=True)
    shutil.copytree(SAMPLES_DIR / "grpc", dest / "grpc", dirs_exist_ok=True)
    write_googleapis_module(dest / "googleapis" / "googleapis" / "main")
    # The labels the design document uses; same content, so the same commit as main.
    for module, label in (("googleapis/googleapis", "v1.0.0"), ("grpc/grpc", "v1.5.0")):
        shutil.copytree(dest / module / "main", dest / module / label, dirs_exist_ok=True)
    _write_legacy_lock(dest)
    return dest


def _write_legacy_lock(data: Path) -> None:
    """acme/legacy was pushed from a v1 workspace: it keeps a v1 buf.lock (b4 digests) of its
    deps, as buf wrote it then. Computed from the other samples, which it depends on."""
    from bsr_team_cache.bsr.devbsr.repository import ModuleRepository, transitive_deps
    from bsr_team_cache.domain.buflock import BufLock, LockedDep, format_buf_lock
    from bsr_team_cache.domain.moduleref import ModuleName

    legacy = data / "acme" / "legacy" / "main"
    (legacy / "buf.lock").unlink(missing_ok=True)
    money = ModuleRepository(data).resolve("acme", "money", None)
    assert money is not None
    deps = [
        LockedDep(ModuleName("buf.build", c.owner, c.module), c.commit_id, c.b4)
        for c in [money, *transitive_deps(money)]
    ]
    (legacy / "buf.lock").write_text(format_buf_lock(BufLock("v1", tuple(deps))))


def write_generated_modules(dest: Path, count: int, owner: str = "bench") -> list[str]:
    """``count`` synthetic modules ``<owner>/lib<i>`` (4 files x 10 messages, ~20 KB each), for
    benchmarks and tests that need many modules. Returns their ``owner/name``s."""
    names = []
    for i in range(count):
        pkg = Path(dest) / owner / f"lib{i}" / "main" / owner / f"lib{i}" / "v1"
        pkg.mkdir(parents=True, exist_ok=True)
        for f in range(4):
            body = "".join(
                f"message M{f}x{m} {{\n  string id = 1;\n  int64 when = 2;\n"
                f"  repeated string tags = 3;\n  map<string, string> labels = 4;\n}}\n"
                for m in range(10)
            )
            (pkg / f"file{f}.proto").write_text(
                f'syntax = "proto3";\npackage {owner}.lib{i}.v1;\n{body}'
            )
        names.append(f"{owner}/lib{i}")
    return names
