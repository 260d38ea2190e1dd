# Buck2 rules for the BSR team cache (prelude-free: they use only Buck2's built-in API).
#
#   load("//rules:bsr_team_cache.bzl", "setup_team_cache", "dependency_bundle")
#
# setup_team_cache    creates or updates a team's configuration in the team registry
#                     (`bsr-team-cache setup`), bundles the team's common deps, and gives
#                     dependents BsrTeamCacheInfo. With monitor_performance = True it has a
#                     runnable sub-target: `buck2 run //pkg:name[monitor]`.
# dependency_bundle   publishes a bundle of modules in the team registry (`bsr-team-cache bundle`).
# bsr_team_cache_toolchain, system_tool
#                     the tools these rules run, declared once in the workspace's
#                     //toolchains package (see examples/buck2/toolchains/BUCK). The toolchain
#                     is a toolchain rule: rules reach it with attrs.toolchain_dep only.
#
# BSR module names are written as the design document writes them (buf.build/owner/module);
# the toolchain's `bsr_host` sends them to another BSR (a private instance, or a test server).

BsrTeamCacheToolchainInfo = provider(
    doc = "How to run bsr-team-cache and which BSR and team registry it talks to.",
    # cli: cmd_args, the command line prefix; registry / store_dir: "" leaves them to the
    # CLI's own configuration (environment, config file).
    fields = ["cli", "bsr_host", "registry", "store_dir"],
)

BsrTeamCacheInfo = provider(
    doc = "A team cache set up by setup_team_cache, for the targets that use it.",
    # config: the setup action's output (the team configuration as JSON).
    fields = ["team", "registry", "strategy", "members", "config"],
)

BsrBundleInfo = provider(
    doc = "A bundle published by dependency_bundle.",
    # log: the bundle action's output (what `bsr-team-cache bundle` printed).
    fields = ["team", "registry", "bundle_name", "modules", "log"],
)

CACHE_STRATEGIES = ["aggressive", "balanced", "conservative"]

# The BSR host module names are written with in BUCK files and pin files.
PUBLIC_BSR_HOST = "buf.build"

# `sh -c` body: run the command after the first argument, its stdout into that file (the CLI
# prints its result, e.g. `setup --json`, on stdout; Buck2 actions have no stdout redirection).
_STDOUT_TO_FILE = 'out="$1"; shift; "$@" > "$out"'

def _system_tool_impl(ctx: AnalysisContext) -> list[Provider]:
    return [DefaultInfo(), RunInfo(args = cmd_args(ctx.attrs.command))]

# A program of the machine (found on PATH, or an absolute path) as a runnable target.
system_tool = rule(
    impl = _system_tool_impl,
    attrs = {
        "command": attrs.list(attrs.string(), doc = "argv prefix, e.g. [\"protoc\"]"),
    },
)

def _toolchain_impl(ctx: AnalysisContext) -> list[Provider]:
    cli = cmd_args(ctx.attrs.cli)
    return [
        DefaultInfo(),
        RunInfo(args = cli),
        BsrTeamCacheToolchainInfo(
            cli = cli,
            bsr_host = ctx.attrs.bsr_host,
            registry = ctx.attrs.registry,
            store_dir = ctx.attrs.store_dir,
        ),
    ]

bsr_team_cache_toolchain = rule(
    impl = _toolchain_impl,
    attrs = {
        "cli": attrs.list(attrs.string(), default = ["bsr-team-cache"]),
        "bsr_host": attrs.string(default = PUBLIC_BSR_HOST),
        "registry": attrs.string(default = ""),
        "store_dir": attrs.string(default = ""),
    },
    is_toolchain_rule = True,
)

def target_label(ctx: AnalysisContext) -> str:
    """The target as error messages name it: //package:name."""
    return "//{}:{}".format(ctx.label.package, ctx.label.name)

def bsr_module_ref(ref: str, bsr_host: str) -> str:
    """A module reference as the configured BSR serves it (buf.build/... -> <bsr_host>/...)."""
    prefix = PUBLIC_BSR_HOST + "/"
    if bsr_host != PUBLIC_BSR_HOST and ref.startswith(prefix):
        return bsr_host + "/" + ref[len(prefix):]
    return ref

def check_bsr_module_ref(rule_name: str, ctx: AnalysisContext, attr: str, ref: str):
    """Fail, naming the rule, the target and the attribute, unless ref is registry/owner/module
    with an optional :label (the registry may have a :port)."""
    last_slash = ref.rfind("/")
    module, _, label = ref[last_slash + 1:].partition(":")
    parts = ref[:last_slash].split("/") + [module]
    if len(parts) != 3 or "" in parts or (":" in ref[last_slash + 1:] and not label):
        fail("{} {}: attribute `{}`: `{}` is not a BSR module (expected registry/owner/module[:label], e.g. buf.build/acme/pets:v1)".format(
            rule_name,
            target_label(ctx),
            attr,
            ref,
        ))

def team_flags(toolchain, team: str | None, registry: str) -> list[str]:
    """The CLI's --team/--registry/--store-dir options (each only when known)."""
    flags = []
    if team:
        flags += ["--team", team]
    if registry:
        flags += ["--registry", registry]
    if toolchain.store_dir:
        flags += ["--store-dir", toolchain.store_dir]
    return flags

def run_to_file(ctx: AnalysisContext, stdout, command, category: str, identifier: str | None = None):
    """Run `command` as an action, its standard output written to the declared `stdout`.

    Local only: the CLI talks to the team registry and the BSR, and uses the machine's store."""
    ctx.actions.run(
        cmd_args("/bin/sh", "-c", _STDOUT_TO_FILE, "sh", stdout.as_output(), command),
        category = category,
        identifier = identifier,
        local_only = True,
    )

def _setup_team_cache_impl(ctx: AnalysisContext) -> list[Provider]:
    toolchain = ctx.attrs._bsr_team_cache[BsrTeamCacheToolchainInfo]
    registry = ctx.attrs.registry or toolchain.registry
    flags = team_flags(toolchain, ctx.attrs.team, registry)
    for ref in ctx.attrs.bundle_dependencies:
        check_bsr_module_ref("setup_team_cache", ctx, "bundle_dependencies", ref)

    setup = cmd_args(toolchain.cli, "setup", flags, "--strategy", ctx.attrs.cache_strategy)
    for member in ctx.attrs.members:
        setup.add("--members", member)
    if ctx.attrs.max_cache_size_mb != None:
        setup.add("--max-cache-size-mb", str(ctx.attrs.max_cache_size_mb))
    if ctx.attrs.sync_frequency_minutes != None:
        setup.add("--sync-frequency-minutes", str(ctx.attrs.sync_frequency_minutes))
    setup.add("--shared-cache" if ctx.attrs.shared_cache else "--no-shared-cache")
    setup.add("--json")
    config = ctx.actions.declare_output(ctx.label.name + ".team.json")
    run_to_file(ctx, config, setup, category = "bsr_team_setup")
    outputs = [config]

    if ctx.attrs.bundle_dependencies:
        bundle_name = ctx.attrs.bundle_name or ctx.label.name.replace("_", "-")
        bundle = cmd_args(toolchain.cli, "bundle", flags, "--name", bundle_name, hidden = config)
        for ref in ctx.attrs.bundle_dependencies:
            bundle.add("--deps", bsr_module_ref(ref, toolchain.bsr_host))
        bundle.add("--description", "Dependencies bundled by setup_team_cache " + target_label(ctx))
        log = ctx.actions.declare_output(ctx.label.name + ".bundle.txt")
        run_to_file(ctx, log, bundle, category = "bsr_team_bundle")
        outputs.append(log)

    sub_targets = {}
    if ctx.attrs.monitor_performance:
        monitor = cmd_args(toolchain.cli, "monitor", flags, hidden = config)
        sub_targets["monitor"] = [DefaultInfo(default_output = config), RunInfo(args = monitor)]
    return [
        DefaultInfo(default_outputs = outputs, sub_targets = sub_targets),
        BsrTeamCacheInfo(
            team = ctx.attrs.team,
            registry = registry,
            strategy = ctx.attrs.cache_strategy,
            members = ctx.attrs.members,
            config = config,
        ),
    ]

setup_team_cache = rule(
    impl = _setup_team_cache_impl,
    doc = "A team's cache configuration in the team registry (bsr-team-cache setup).",
    attrs = {
        "team": attrs.string(doc = "Team name."),
        "members": attrs.list(attrs.string(), default = [], doc = "Members to add."),
        "cache_strategy": attrs.enum(CACHE_STRATEGIES, default = "balanced"),
        "bundle_dependencies": attrs.list(
            attrs.string(),
            default = [],
            doc = "Modules (registry/owner/module[:label]) bundled for the team's builds.",
        ),
        "bundle_name": attrs.option(attrs.string(), default = None, doc = "Default: the target name."),
        "monitor_performance": attrs.bool(
            default = False,
            doc = "Add the runnable sub-target [monitor]: the team's cache dashboard.",
        ),
        "registry": attrs.option(attrs.string(), default = None, doc = "Default: the toolchain's."),
        "max_cache_size_mb": attrs.option(attrs.int(), default = None),
        "sync_frequency_minutes": attrs.option(attrs.int(), default = None),
        "shared_cache": attrs.bool(default = True),
        "_bsr_team_cache": attrs.toolchain_dep(
            default = "//toolchains:bsr_team_cache",
            providers = [BsrTeamCacheToolchainInfo],
        ),
    },
)

def _dependency_bundle_impl(ctx: AnalysisContext) -> list[Provider]:
    toolchain = ctx.attrs._bsr_team_cache[BsrTeamCacheToolchainInfo]
    registry = ctx.attrs.registry or toolchain.registry
    if not ctx.attrs.dependencies:
        fail("dependency_bundle {}: attribute `dependencies`: a bundle needs at least one module".format(target_label(ctx)))
    modules = []
    for ref in ctx.attrs.dependencies:
        check_bsr_module_ref("dependency_bundle", ctx, "dependencies", ref)
        modules.append(bsr_module_ref(ref, toolchain.bsr_host))
    bundle = cmd_args(
        toolchain.cli,
        "bundle",
        team_flags(toolchain, ctx.attrs.team, registry),
        "--name",
        ctx.attrs.bundle_name,
    )
    for module in modules:
        bundle.add("--deps", module)
    if ctx.attrs.description:
        bundle.add("--description", ctx.attrs.description)
    log = ctx.actions.declare_output(ctx.label.name + ".bundle.txt")
    run_to_file(ctx, log, bundle, category = "bsr_team_bundle")
    return [
        DefaultInfo(default_output = log),
        BsrBundleInfo(
            team = ctx.attrs.team,
            registry = registry,
            bundle_name = ctx.attrs.bundle_name,
            modules = modules,
            log = log,
        ),
    ]

dependency_bundle = rule(
    impl = _dependency_bundle_impl,
    doc = "A bundle of modules (and their deps) in the team registry (bsr-team-cache bundle).",
    attrs = {
        "bundle_name": attrs.string(doc = "Bundle name (lowercase, digits, . _ -)."),
        "dependencies": attrs.list(attrs.string(), doc = "registry/owner/module[:label] refs."),
        "team": attrs.string(doc = "The team that owns the bundle."),
        "description": attrs.string(default = ""),
        "registry": attrs.option(attrs.string(), default = None, doc = "Default: the toolchain's."),
        "_bsr_team_cache": attrs.toolchain_dep(
            default = "//toolchains:bsr_team_cache",
            providers = [BsrTeamCacheToolchainInfo],
        ),
    },
)
