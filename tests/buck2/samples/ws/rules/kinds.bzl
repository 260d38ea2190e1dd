load(":defs.bzl", "ToolInfo")

KindsInfo = provider(fields = ["values", "tool_name", "source_path", "source_short_path"])

def _kinds_impl(ctx: AnalysisContext) -> list[Provider]:
    values = {
        "name": ctx.attrs.name,
        "text": ctx.attrs.text,
        "flag": ctx.attrs.flag,
        "count": ctx.attrs.count,
        "items": ctx.attrs.items,
        "table": ctx.attrs.table,
        "maybe": ctx.attrs.maybe,
        "mode": ctx.attrs.mode,
        "fixed": ctx.attrs.fixed,
        "greeting": ctx.attrs.greeting,
        "label": [ctx.label.cell, ctx.label.package, ctx.label.name],
    }
    return [
        DefaultInfo(),
        KindsInfo(
            values = values,
            tool_name = ctx.attrs.tool[ToolInfo].name,
            source_path = ctx.attrs.src.path,
            source_short_path = [ctx.attrs.src.short_path, ctx.attrs.src.basename, ctx.attrs.src.extension],
        ),
    ]

kinds = rule(
    impl = _kinds_impl,
    attrs = {
        "text": attrs.string(),
        "flag": attrs.bool(),
        "count": attrs.int(),
        "items": attrs.list(attrs.string()),
        "table": attrs.dict(attrs.string(), attrs.int()),
        "maybe": attrs.option(attrs.string()),
        "mode": attrs.enum(["fast", "safe"]),
        "src": attrs.source(),
        "tool": attrs.dep(providers = [ToolInfo]),
        "runner": attrs.exec_dep(providers = [RunInfo], default = "//tools:greet"),
        "fixed": attrs.default_only(attrs.string(default = "fixed-value")),
        "greeting": attrs.string(default = "hi"),
    },
)
