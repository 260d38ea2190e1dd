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


# The vocabulary of write_large_module: API nouns and adjectives, and the sentences of API
# comments.
_LARGE_NOUNS = """account analysis annotation asset attribute backup batch binding bucket build
cache certificate change channel cluster collection comment config connection consumer container
content context cursor database dataset deployment device document domain endpoint entry
environment event execution export feature field filter firewall folder function gateway group
health history identity image import index instance integration job key label lake listing
location log membership message metric migration model network node notebook notification
operation order organization partition peering permission pipeline policy pool principal profile
project provider queue quota record region registry release replica report repository request
reservation resource revision role route rule run schedule schema secret segment service session
setting shard snapshot spec stage state step storage stream subnet subscription table tag task
template tenant token topic trace transfer trigger trust usage user version volume workflow
workload zone"""
_LARGE_ADJECTIVES = """active archived automatic custom default deleted desired effective enabled
encrypted external failed global internal latest local managed maximum minimum optional pending
primary private public regional remote required reserved scheduled secondary shared total unique"""
_LARGE_VERBS = """created updated deleted replicated scheduled validated exported imported attached
detached restored resized enabled disabled rotated"""
_LARGE_SENTENCES = (
    "The {adj} {noun} of the {noun2}.",
    "Output only. The time when the {noun} was {verb}.",
    "Required. The resource name of the {noun}, in the format"
    " `projects/{{project}}/locations/{{location}}/{noun}s/{{{noun}}}`.",
    "Optional. If set, the {noun} is {verb} only when the {noun2} is {adj}.",
    "The maximum number of {noun}s to return. The service may return fewer than this value."
    " If unspecified, at most 50 {noun}s will be returned.",
    "A page token, received from a previous `List{Noun}s` call. Provide this to retrieve the"
    " subsequent page.",
    "Identifier. The {adj} {noun} that this {noun2} belongs to.",
    "Labels as key value pairs. Keys and values must conform to the {noun} requirements.",
    "Immutable. The {noun2} used to create the {noun}. Changing it after creation is not"
    " supported.",
    "Whether the {noun} is {adj}. Defaults to false.",
    "A list of {noun2}s that are {verb} by this {noun}.",
    "The {noun} is {verb} asynchronously; poll the returned operation for its {adj} state.",
    "Server-assigned unique identifier of the {noun}. This field is set by the service.",
    "See https://cloud.google.com/{noun}/docs/{noun2} for details about {adj} {noun}s.",
    "Must be between {n} and {m} characters long and match the regular expression"
    " `[a-z]([-a-z0-9]*[a-z0-9])?`.",
    "Deprecated: use `{noun2}_{noun}` instead. Will be removed after {n} days.",
    "The {noun} is {verb} when its {noun2} reaches {n} percent of the {adj} quota; values"
    " above {m} are rejected with `INVALID_ARGUMENT`.",
    "Example: `{noun}-{n}.{noun2}.example.com:{m}`.",
    "If the {adj} {noun2} is {verb} while the {noun} is {verb2}, the request fails with"
    " `FAILED_PRECONDITION` and nothing is {verb}.",
    "{Noun}s {verb} before {n} are kept for {m} hours, then {verb2} by the service.",
    "Only {noun}s whose {noun2} is {adj} are listed, ordered by {noun2}_time.",
)
_LARGE_SCALARS = ("string", "string", "string", "int32", "int64", "bool", "double", "bytes")
_PROTO_KEYWORDS = frozenset({"import", "message", "service", "option", "package", "map"})


class _LargeProtoWriter:
    """The text of write_large_module's files, from one seeded random generator."""

    def __init__(self, seed: int) -> None:
        import random

        self.rng = random.Random(seed)
        self.nouns = _LARGE_NOUNS.split()
        self.adjectives = _LARGE_ADJECTIVES.split()
        self.verbs = _LARGE_VERBS.split()

    def comment(self, indent: str, noun: str) -> str:
        rng = self.rng
        lines = []
        for _ in range(rng.choice((1, 1, 2, 3))):
            text = rng.choice(_LARGE_SENTENCES).format(
                adj=rng.choice(self.adjectives),
                noun=noun,
                noun2=rng.choice(self.nouns),
                Noun=noun.capitalize(),
                verb=rng.choice(self.verbs),
                verb2=rng.choice(self.verbs),
                n=rng.randint(1, 999),
                m=rng.randint(1000, 65535),
            )
            lines.append(f"{indent}// {text}\n")
        return "".join(lines)

    def field(self, noun: str, number: int, taken: set[str]) -> str:
        """One commented field whose name (as JSON spells it) is not in ``taken``."""
        rng = self.rng
        while True:
            words = [rng.choice(self.adjectives), rng.choice(self.nouns)]
            if rng.random() < 0.5 and words[1] not in _PROTO_KEYWORDS:
                words = words[1:]
            name = "_".join(words) + rng.choice(("", "", "_id", "_time", "_count"))
            if name.replace("_", "") not in taken:
                break
        taken.add(name.replace("_", ""))
        roll = rng.random()
        if roll < 0.1:
            type_ = "map<string, string>"
        elif roll < 0.25:
            type_ = "repeated " + rng.choice(_LARGE_SCALARS)
        else:
            type_ = rng.choice(_LARGE_SCALARS)
        return f"{self.comment('  ', noun)}  {type_} {name} = {number};\n"

    def message(self, name: str, noun: str, imported: str | None, use_import: bool) -> str:
        """A commented message: maybe a nested State enum, a field of the imported file's
        message if ``use_import`` (else maybe), then 6-24 fields."""
        rng = self.rng
        out = [self.comment("", noun), f"message {name} {{\n"]
        taken: set[str] = set()
        if rng.random() < 0.3:
            out += [self.comment("  ", noun), "  enum State {\n", "    // Not set.\n"]
            out.append("    STATE_UNSPECIFIED = 0;\n")
            for n, adj in enumerate(rng.sample(self.adjectives, 5), 1):
                out.append(f"{self.comment('    ', noun)}    {adj.upper()} = {n};\n")
            out += ["  }\n\n", f"{self.comment('  ', noun)}  State state = 1;\n"]
            taken.add("state")
        if imported is not None and (use_import or rng.random() < 0.3):
            out.append(f"{self.comment('  ', noun)}  {imported} parent = {len(taken) + 1};\n")
            taken.add("parent")
        for _ in range(rng.randint(6, 24)):
            out.append(self.field(noun, len(taken) + 1, taken))
        out.append("}\n\n")
        return "".join(out)

    def file(
        self, svc: str, version: str, index: int, target: int, imported: tuple[str, str] | None
    ) -> tuple[str, str]:
        """The text of one file of package google.cloud.<svc>.<version>, about ``target``
        bytes, and the name of its first message (which the next file may use)."""
        rng = self.rng
        package = f"google.cloud.{svc}.{version}"
        out = [
            "// Copyright 2024 Bench Authors\n//\n// Licensed under the Apache License, Version"
            ' 2.0 (the "License");\n// you may not use this file except in compliance with'
            " the License.\n\n",
            'syntax = "proto3";\n\n',
            f"package {package};\n\n",
        ]
        if imported is not None:
            out.append(f'import "{imported[0]}";\n\n')
        out += [
            f'option go_package = "cloud.google.com/go/{svc}/api{version}/{svc}pb;{svc}pb";\n',
            "option java_multiple_files = true;\n",
            f'option java_package = "com.google.cloud.{svc}.{version}";\n\n',
        ]
        first = ""
        size = sum(map(len, out))
        while size < target or not first:
            noun = rng.choice(self.nouns)
            # Unique in the package: the file's index and the message's place in it.
            name = f"{rng.choice(self.adjectives).capitalize()}{noun.capitalize()}{index}x{size}"
            # The first message uses the import, so that no import is unused.
            text = self.message(name, noun, imported[1] if imported else None, not first)
            first = first or name
            out.append(text)
            size += len(text)
        service = f"{rng.choice(self.nouns).capitalize()}Service{index}"
        out += [
            self.comment("", "service"),
            f"service {service} {{\n",
            self.comment("  ", "operation"),
            f"  rpc Get{first}({first}) returns ({first});\n",
            "}\n",
        ]
        return "".join(out), first


def write_large_module(
    dest: Path,
    owner: str = "bench",
    name: str = "large",
    files: int = 3900,
    total_bytes: int = 40 << 20,
    seed: int = 0,
) -> str:
    """One googleapis-sized synthetic module ``<owner>/<name>`` (label main): ``files`` .proto
    files of about ``total_bytes`` in all, in packages ``google/cloud/<svc>/<version>/``. Each
    file has commented messages with many fields (some with an enum), a service, and imports
    the previous file of its package (only files of this module). Valid proto3 that buf and
    protoc build; deterministic from ``seed``; gzip compresses it about as much as real protos
    (~6x). Returns ``owner/name``."""
    writer = _LargeProtoWriter(seed)
    rng = writer.rng
    root = Path(dest) / owner / name / "main"
    services: list[str] = []
    for noun in rng.sample(writer.nouns, len(writer.nouns)):
        if noun in _PROTO_KEYWORDS:
            continue
        for suffix in ("", "manager", "insights"):
            services.append(noun + suffix)
    services = services[: max(1, files // 12)]
    last_in_package: dict[str, tuple[str, str]] = {}  # directory -> (file, its first message)
    written = 0
    for i in range(files):
        svc = services[i % len(services)]
        version = ("v1", "v1beta1", "v2")[(i // len(services)) % 3]
        directory = f"google/cloud/{svc}/{version}"
        rel = f"{directory}/{rng.choice(writer.nouns)}_{rng.choice(writer.nouns)}_{i}.proto"
        # Sizes vary around what is left per file still to write, so the total comes out right.
        target = int(max(1, total_bytes - written) / (files - i) * rng.uniform(0.6, 1.4))
        text, first = writer.file(svc, version, i, target, last_in_package.get(directory))
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written += len(text)
        last_in_package[directory] = (rel, first)
    (root / "README.md").write_text(
        f"# {owner}/{name}\n\nA generated module the size of googleapis, for benchmarks.\n"
    )
    return f"{owner}/{name}"
