load(":naming.bzl", "joined", "loud")

GreetingInfo = provider(fields = ["text", "file"])
ToolInfo = provider(fields = {"name": provider_field(str, default = "tool")})

def _python_tool_impl(ctx: AnalysisContext) -> list[Provider]:
    interpreter = read_config("python", "interpreter", "python3")
    return [
        DefaultInfo(default_output = ctx.attrs.main),
        RunInfo(args = cmd_args(interpreter, ctx.attrs.main)),
        ToolInfo(name = ctx.label.name),
    ]

python_tool = rule(
    impl = _python_tool_impl,
    attrs = {"main": attrs.source()},
    doc = "A single-file Python program, runnable as a tool.",
)

def _greeting_impl(ctx: AnalysisContext) -> list[Provider]:
    config = ctx.actions.write_json(ctx.label.name + ".json", {
        "words": ctx.attrs.words,
        "loud": ctx.attrs.loud,
        "template": ctx.attrs.template,
    })
    out = ctx.actions.declare_output(ctx.label.name + ".txt")
    cmd = cmd_args(ctx.attrs._tool[RunInfo], "--config", config, "--out", out.as_output())
    for dep in ctx.attrs.deps:
        cmd.add("--include", dep[GreetingInfo].file)
    ctx.actions.run(cmd, category = "greet", env = {"GREETING_TARGET": ctx.label.name})
    text = joined(ctx.attrs.words)
    return [
        DefaultInfo(default_output = out, sub_targets = {"config": [DefaultInfo(default_output = config)]}),
        GreetingInfo(text = loud(text) if ctx.attrs.loud else text, file = out),
    ]

greeting = rule(
    impl = _greeting_impl,
    attrs = {
        "words": attrs.list(attrs.string()),
        "loud": attrs.bool(default = False),
        "template": attrs.source(),
        "deps": attrs.list(attrs.dep(providers = [GreetingInfo]), default = []),
        "_tool": attrs.exec_dep(default = "//tools:greet", providers = [RunInfo]),
    },
)

def greeting_pair(name: str, **kwargs):
    """A macro: a greeting and its loud twin."""
    greeting(name = name, **kwargs)
    greeting(name = name + "-loud", loud = True, **kwargs)
