# Rules that go wrong on purpose, for the harness's own error tests.

def _python_action_impl(ctx: AnalysisContext) -> list[Provider]:
    out = ctx.actions.declare_output(ctx.label.name + ".out")
    ctx.actions.run(
        cmd_args("python3", "-c", ctx.attrs.code, out.as_output()),
        category = "python",
        identifier = ctx.label.name,
    )
    return [DefaultInfo(default_output = out)]

python_action = rule(
    impl = _python_action_impl,
    attrs = {
        "code": attrs.string(),
        "deps": attrs.list(attrs.dep(), default = []),
    },
)

def _unbound_impl(ctx: AnalysisContext) -> list[Provider]:
    out = ctx.actions.declare_output("never-written.txt")
    return [DefaultInfo(default_output = out)]

unbound = rule(impl = _unbound_impl, attrs = {})
