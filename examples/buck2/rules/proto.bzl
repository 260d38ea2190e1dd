# proto_library for Buck2, with BSR dependencies fetched through the team cache
# (prelude-free: only Buck2's built-in API).
#
#   load("//rules:proto.bzl", "proto_library")
#
#   proto_library(
#       name = "shop_proto",
#       srcs = ["acme/shop/v1/cart.proto"],
#       deps = [
#           "buf.build/acme/orders",      # a BSR module, fetched through the team cache
#           "//protos/common:common_proto",  # another proto_library
#       ],
#       team = "backend-team",
#       lock = "buf.lock",                 # pins the BSR deps: hermetic, cacheable builds
#       python = True,                     # also protoc's --python_out
#   )
#
# Actions: `fetch` (only with BSR deps) writes a buf.yaml of the BSR deps next to the pin file
# and runs `bsr-team-cache fetch --export` (local store, team registry, then the BSR) into its
# output directory; `protoc` builds a descriptor set (--include_imports) from the srcs, over
# the exported tree and the include trees of the proto_library deps. Sub-targets: [descriptor_set],
# [deps] (the exported BSR tree), [lock] (the pin file as resolved: copy it to the package),
# [python] with python = True.

load(
    ":bsr_team_cache.bzl",
    "BsrTeamCacheInfo",
    "BsrTeamCacheToolchainInfo",
    "PUBLIC_BSR_HOST",
    "bsr_module_ref",
    "check_bsr_module_ref",
    "target_label",
    "team_flags",
)

ProtoInfo = provider(
    doc = "What a proto_library gives its dependents.",
    # include_dirs: directories for protoc -I (this target's sources, its exported BSR deps,
    #   and those of its deps, transitively); descriptor_set: this target's descriptor set
    #   (with imports); descriptor_sets: the transitive ones; sources: this target's .proto
    #   files as imported (paths under its include dir); bsr_modules: the BSR deps, transitively.
    fields = ["include_dirs", "descriptor_set", "descriptor_sets", "sources", "bsr_modules"],
)

# `sh -c` body of the fetch action: a project directory with the BSR deps' buf.yaml and the
# package's pin file (its module names moved to the configured BSR host), then the fetch
# itself, its --json report into a file. Arguments: project dir, buf.yaml, pin file ("" for
# none), public host, configured host, report file, resolved pin file out, then the fetch
# command (the project directory is appended to it).
_FETCH_SCRIPT = """set -eu
project="$1"; config="$2"; lock="$3"; public="$4"; host="$5"; report="$6"; resolved="$7"
shift 7
mkdir -p "$project"
cp "$config" "$project/buf.yaml"
if [ -n "$lock" ]; then
  sed "s#name: $public/#name: $host/#" "$lock" > "$project/buf.lock"
fi
"$@" "$project" > "$report"
sed "s#name: $host/#name: $public/#" "$project/buf.lock" > "$resolved"
"""

def _is_module_ref(dep) -> bool:
    return type(dep) == "string"

def _fetch_bsr_deps(ctx: AnalysisContext, modules: list[str]):
    """The fetch action: (exported include tree, --json report, resolved pin file)."""
    toolchain = ctx.attrs._bsr_team_cache[BsrTeamCacheToolchainInfo]
    team, registry = ctx.attrs.team, toolchain.registry
    if ctx.attrs.team_cache != None:
        info = ctx.attrs.team_cache[BsrTeamCacheInfo]
        team, registry = team or info.team, info.registry or registry
    config = ctx.actions.write_json(
        ctx.label.name + ".buf.yaml",  # JSON is YAML: buf.yaml v2 with the BSR deps
        {"version": "v2", "deps": [bsr_module_ref(m, toolchain.bsr_host) for m in modules]},
    )
    project = ctx.actions.declare_output("project", dir = True)
    exported = ctx.actions.declare_output("bsr", dir = True)
    report = ctx.actions.declare_output(ctx.label.name + ".fetch.json")
    resolved = ctx.actions.declare_output("buf.lock")
    fetch = cmd_args(
        toolchain.cli,
        "fetch",
        team_flags(toolchain, team, registry),
        "--export",
        exported.as_output(),
        "--no-buf-cache",
        "--json",
    )
    if ctx.attrs.lock == None:
        fetch.add("--update-lock")  # resolves the labels now: pin them with lock = "buf.lock"
    ctx.actions.run(
        cmd_args(
            "/bin/sh",
            "-c",
            _FETCH_SCRIPT,
            "sh",
            project.as_output(),
            config,
            ctx.attrs.lock if ctx.attrs.lock != None else "",
            PUBLIC_BSR_HOST,
            toolchain.bsr_host,
            report.as_output(),
            resolved.as_output(),
            fetch,
        ),
        category = "bsr_fetch",
        # The CLI talks to the team registry and the BSR, and shares the machine's store.
        local_only = True,
    )
    return exported, report, resolved

def _proto_library_impl(ctx: AnalysisContext) -> list[Provider]:
    if not ctx.attrs.srcs:
        fail("proto_library {}: attribute `srcs`: at least one .proto file is needed".format(target_label(ctx)))
    modules, proto_deps = [], []
    for dep in ctx.attrs.deps:
        if _is_module_ref(dep):
            check_bsr_module_ref("proto_library", ctx, "deps", dep)
            modules.append(dep)
        else:
            proto_deps.append(dep[ProtoInfo])

    # This target's sources as protoc sees them: paths relative to the package.
    source_root = ctx.actions.symlinked_dir(
        ctx.label.name + "-srcs",
        {src.short_path: src for src in ctx.attrs.srcs},
    )
    include_dirs = [source_root]
    sub_targets = {}
    if modules:
        exported, report, resolved = _fetch_bsr_deps(ctx, modules)
        include_dirs.append(exported)
        sub_targets["deps"] = [DefaultInfo(default_outputs = [exported, report])]
        sub_targets["lock"] = [DefaultInfo(default_output = resolved)]
    for info in proto_deps:
        include_dirs += [d for d in info.include_dirs if d not in include_dirs]

    descriptor_set = ctx.actions.declare_output(ctx.label.name + ".binpb")
    protoc = cmd_args(
        ctx.attrs._protoc[RunInfo],
        cmd_args(descriptor_set.as_output(), format = "--descriptor_set_out={}"),
        "--include_imports",
    )
    for include_dir in include_dirs:
        protoc.add(cmd_args(include_dir, format = "-I{}"))
    outputs = [descriptor_set]
    if ctx.attrs.python:
        python = ctx.actions.declare_output("python", dir = True)
        sub_targets["python"] = [DefaultInfo(default_output = python)]
        outputs.append(python)
    protoc.add([src.short_path for src in ctx.attrs.srcs])  # found under the source root
    if ctx.attrs.python:
        # protoc writes into --python_out but does not create it, nor does Buck2 create a
        # declared output directory before the action runs.
        protoc = cmd_args(
            "/bin/sh",
            "-c",
            'out="$1" && shift && mkdir -p "$out" && exec "$@" --python_out="$out"',
            "sh",
            python.as_output(),
            protoc,
        )
    ctx.actions.run(protoc, category = "protoc")
    sub_targets["descriptor_set"] = [DefaultInfo(default_output = descriptor_set)]

    descriptor_sets = [descriptor_set]
    bsr_modules = list(modules)
    for info in proto_deps:
        descriptor_sets += [d for d in info.descriptor_sets if d not in descriptor_sets]
        bsr_modules += [m for m in info.bsr_modules if m not in bsr_modules]
    return [
        DefaultInfo(default_outputs = outputs, sub_targets = sub_targets),
        ProtoInfo(
            include_dirs = include_dirs,
            descriptor_set = descriptor_set,
            descriptor_sets = descriptor_sets,
            sources = [src.short_path for src in ctx.attrs.srcs],
            bsr_modules = bsr_modules,
        ),
    ]

proto_library = rule(
    impl = _proto_library_impl,
    doc = "Protobuf sources compiled to a descriptor set, with BSR deps from the team cache.",
    attrs = {
        "srcs": attrs.list(attrs.source(), doc = ".proto files, imported by their path in the package."),
        "deps": attrs.list(
            attrs.one_of(attrs.dep(providers = [ProtoInfo]), attrs.string()),
            default = [],
            doc = "proto_library targets and BSR modules (buf.build/owner/module[:label]).",
        ),
        "team": attrs.option(attrs.string(), default = None, doc = "Team whose cache fetches the BSR deps."),
        "team_cache": attrs.option(
            attrs.dep(providers = [BsrTeamCacheInfo]),
            default = None,
            doc = "A setup_team_cache target: its team and registry.",
        ),
        "lock": attrs.option(
            attrs.source(),
            default = None,
            doc = "buf.lock pinning the BSR deps (without it the labels resolve when the fetch first runs).",
        ),
        "python": attrs.bool(default = False, doc = "Also generate Python (protoc --python_out)."),
        "_bsr_team_cache": attrs.toolchain_dep(
            default = "//toolchains:bsr_team_cache",
            providers = [BsrTeamCacheToolchainInfo],
        ),
        "_protoc": attrs.exec_dep(default = "//toolchains:protoc", providers = [RunInfo]),
    },
)
