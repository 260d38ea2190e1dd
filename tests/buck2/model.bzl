# The Starlark half of the Buck2 model (see harness.py): Buck2's rule API for prelude-free
# workspaces. Evaluated once per Workspace and loaded by every BUCK and .bzl file, so that
# `RunInfo`, `DefaultInfo` and the `attrs` descriptors have one identity across files.
#
# The Python callables `harness_py_*` are added to this module by harness.py before evaluation.
# Values cross the Python boundary as JSON only, which is why artifacts, providers and
# command lines are turned into plain data (`_plain`, `_render`) before they are handed over.

# Buck2's global type names, usable in annotations such as `def f(ctx: AnalysisContext)`.
AnalysisContext = typing.Any
Provider = typing.Any
Artifact = typing.Any
OutputArtifact = typing.Any
Dependency = typing.Any
ProviderCollection = typing.Any
Label = typing.Any
ConfiguredTargetLabel = typing.Any
TargetLabel = typing.Any
CommandLineArgLike = typing.Any
CellPath = typing.Any
Attr = typing.Any

_NO_DEFAULT = struct(_kind = "no_default")

# As in Buck2 (attrs_global.rs), `default`, `doc` and the other options of `attrs.*` are
# named-only: `attrs.string("x")` is an error, not a default.

def _attr(kind, default, doc, **extra):
    return struct(_kind = "attr", type = kind, default = default, doc = doc, **extra)

def _attr_string(*, default = _NO_DEFAULT, validate = None, doc = ""):
    return _attr("string", default, doc)

def _attr_bool(*, default = _NO_DEFAULT, doc = ""):
    return _attr("bool", default, doc)

def _attr_int(*, default = _NO_DEFAULT, doc = ""):
    return _attr("int", default, doc)

def _attr_any(*, default = _NO_DEFAULT, doc = ""):
    return _attr("any", default, doc)

def _attr_list(inner, *, default = _NO_DEFAULT, doc = ""):
    return _attr("list", default, doc, inner = inner)

def _attr_dict(key, value, *, sorted = False, default = _NO_DEFAULT, doc = ""):
    return _attr("dict", default, doc, key = key, value = value, sorted = sorted)

def _attr_option(inner, *, default = _NO_DEFAULT, doc = ""):
    if default != _NO_DEFAULT and default != None:
        harness_py_error("load", "`attrs.option` `default` parameter must be `None` or absent")
    return _attr("option", None, doc, inner = inner)

def _attr_one_of(*alternatives, default = _NO_DEFAULT, doc = ""):
    return _attr("one_of", default, doc, alternatives = list(alternatives))

def _attr_tuple(*items, default = _NO_DEFAULT, doc = ""):
    return _attr("tuple", default, doc, alternatives = list(items))

def _attr_enum(variants, *, default = _NO_DEFAULT, doc = ""):
    for variant in variants:
        if variant != variant.lower():
            harness_py_error("load", "enum.attr() variant names must all be lowercase, got `{}`".format(variant))
    return _attr("enum", default, doc, variants = list(variants))

def _attr_source(*, allow_directory = False, default = _NO_DEFAULT, doc = ""):
    return _attr("source", default, doc, allow_directory = allow_directory)

def _attr_dep(*, providers = [], default = _NO_DEFAULT, doc = ""):
    return _attr("dep", default, doc, providers = list(providers))

def _attr_exec_dep(*, providers = [], default = _NO_DEFAULT, doc = ""):
    return _attr("exec_dep", default, doc, providers = list(providers))

def _attr_toolchain_dep(*, providers = [], default = _NO_DEFAULT, doc = ""):
    return _attr("toolchain_dep", default, doc, providers = list(providers))

def _attr_label(*, default = _NO_DEFAULT, doc = ""):
    return _attr("label", default, doc)

def _attr_default_only(inner, *, doc = ""):
    if inner.default == _NO_DEFAULT:
        harness_py_error("load", "`attrs.default_only` argument must have a default")
    return _attr("default_only", inner.default, doc, inner = inner)

attrs = struct(
    string = _attr_string,
    bool = _attr_bool,
    int = _attr_int,
    any = _attr_any,
    list = _attr_list,
    dict = _attr_dict,
    option = _attr_option,
    enum = _attr_enum,
    one_of = _attr_one_of,
    tuple = _attr_tuple,
    source = _attr_source,
    dep = _attr_dep,
    exec_dep = _attr_exec_dep,
    toolchain_dep = _attr_toolchain_dep,
    label = _attr_label,
    default_only = _attr_default_only,
)

# ---------------------------------------------------------------------------------------------
# Providers

def provider_field(ty, default = None):
    return struct(_kind = "provider_field", ty = ty, default = default)

def _new_provider_type(info, fields):
    """A provider callable; `info` holds its name, set when its module is exported."""
    if type(fields) == "list":
        field_defaults = {field: None for field in fields}
    else:
        field_defaults = {name: spec.default for name, spec in fields.items()}
    this = []

    def make_instance(**kwargs):
        extra = [key for key in kwargs if key not in field_defaults]
        if extra:
            harness_py_error("analysis", "Found `{}` extra named parameter(s) for call to {}".format(
                "` `".join(extra),
                info["name"],
            ))
        values = dict(field_defaults)
        values.update(kwargs)
        return struct(_kind = "provider", _provider = this[0], _info = info, **values)

    this.append(make_instance)
    return make_instance

def harness_new_provider(registry, fields, doc):
    info = {"name": None, "id": None, "fields": list(fields)}
    callable = _new_provider_type(info, fields)
    registry.append(struct(callable = callable, info = info))
    return callable

def _builtin_provider(name, fields):
    info = {"name": name, "id": name, "fields": fields}
    return _new_provider_type(info, fields)

_DefaultInfoRaw = _builtin_provider("DefaultInfo", ["default_outputs", "other_outputs", "sub_targets"])
_RunInfoRaw = _builtin_provider("RunInfo", ["args"])

def DefaultInfo(default_output = None, default_outputs = None, other_outputs = [], sub_targets = {}):
    if default_output != None and default_outputs != None:
        harness_py_error("analysis", "Cannot specify both `default_output` and `default_outputs`.")
    outputs = [default_output] if default_output != None else list(default_outputs or [])
    return _DefaultInfoRaw(
        default_outputs = outputs,
        other_outputs = list(other_outputs),
        sub_targets = {name: _collection(providers) for name, providers in sub_targets.items()},
    )

def RunInfo(args = []):
    return _RunInfoRaw(args = cmd_args(args))

# `DefaultInfo`/`RunInfo` are wrappers; `dep[DefaultInfo]` must find the instance made by the
# raw provider, so dependencies are keyed by both.
_PROVIDER_ALIASES = {_DefaultInfoRaw: DefaultInfo, _RunInfoRaw: RunInfo}

def _is(value, kind):
    return type(value) == "struct" and getattr(value, "_kind", None) == kind

def _collection(providers):
    """A provider collection (what `dep[...]` and sub-targets index) from a list of instances."""
    collection = {}
    for instance in providers:
        collection[instance._provider] = instance
        alias = _PROVIDER_ALIASES.get(instance._provider)
        if alias != None:
            collection[alias] = instance
    return collection

# ---------------------------------------------------------------------------------------------
# Rules

def harness_new_rule(registry, impl, attrs, doc, is_toolchain_rule):
    for attr_name in attrs:
        if attr_name in harness_py_internal_attrs():
            harness_py_error("load", "User provided attribute `{}` overrides internal attribute".format(attr_name))
    info = {"name": None, "id": None}
    record = struct(impl = impl, attrs = attrs, info = info, doc = doc, is_toolchain_rule = is_toolchain_rule)

    def declare_target(**kwargs):
        if info["name"] == None:
            harness_py_error("load", "Rule defined with `rule()` must be assigned to a variable, e.g. `my_rule = rule(...)`")
        specs = {name: _plain_attr(spec) for name, spec in attrs.items()}
        harness_py_declare_target(info["id"], info["name"], specs, kwargs, is_toolchain_rule)

    registry.append(struct(callable = declare_target, record = record))
    return declare_target

def _plain_attr(spec):
    """An attribute descriptor as plain data for the Python side (which checks values)."""
    plain = {"type": spec.type, "doc": spec.doc, "has_default": spec.default != _NO_DEFAULT}
    if spec.default != _NO_DEFAULT:
        plain["default"] = spec.default
    for nested in ("inner", "key", "value"):
        if hasattr(spec, nested):
            plain[nested] = _plain_attr(getattr(spec, nested))
    if hasattr(spec, "alternatives"):
        plain["alternatives"] = [_plain_attr(alternative) for alternative in spec.alternatives]
    if hasattr(spec, "variants"):
        plain["variants"] = spec.variants
    if hasattr(spec, "allow_directory"):
        plain["allow_directory"] = spec.allow_directory
    if hasattr(spec, "sorted"):
        plain["sorted"] = spec.sorted
    if hasattr(spec, "providers"):
        plain["providers"] = [_provider_name(p) for p in spec.providers]
    return plain

def _provider_name(callable):
    # A provider callable does not know its own name, but every instance carries its provider's
    # `info`: a probe instance (all fields defaulted) reveals it.
    return callable()._info["name"]

def harness_export(rules, providers, candidates, module_label):
    """Names the rules and providers a module assigned to top-level variables (Buck2's export)."""
    for name, value in candidates.items():
        for entry in rules:
            if entry.callable == value and entry.record.info["name"] == None:
                entry.record.info["name"] = name
                entry.record.info["id"] = module_label + ":" + name
        for entry in providers:
            if entry.callable == value and entry.info["name"] == None:
                entry.info["name"] = name
                entry.info["id"] = module_label + ":" + name
    return struct(rules = {entry.record.info["id"]: entry.record for entry in rules if entry.record.info["id"] != None})

# ---------------------------------------------------------------------------------------------
# Artifacts and command lines

def _basename(path):
    return path.rsplit("/", 1)[-1]

def _new_artifact(path, short_path, is_source, owner):
    """An artifact: `path` is relative to the project root (where actions run)."""
    this = []
    basename = _basename(path)
    dot = basename.rfind(".")
    artifact = struct(
        _kind = "artifact",
        path = path,
        short_path = short_path,
        basename = basename,
        extension = basename[dot:] if dot > 0 else "",
        is_source = is_source,
        owner = owner,
        as_output = lambda: struct(_kind = "output", artifact = this[0]),
    )
    this.append(artifact)
    return artifact

def cmd_args(*args, hidden = [], delimiter = None, format = None, prepend = None, quote = None, parent = 0, ignore_artifacts = False):
    items = []
    hidden_items = list(hidden) if type(hidden) == "list" else [hidden]
    this = []

    def add(*more):
        items.extend(more)
        return this[0]

    value = struct(
        _kind = "cmd_args",
        _items = items,
        _hidden = hidden_items,
        _delimiter = delimiter,
        _format = format,
        _prepend = prepend,
        _quote = quote,
        _parent = parent,
        _ignore_artifacts = ignore_artifacts,
        # Buck2's cmd_args has `.add()` but no `.hidden()` method any more: `hidden =` only.
        add = add,
    )
    this.append(value)
    items.extend(args)
    return value

def _parent_path(path, levels):
    for _ in range(levels):
        path = path.rsplit("/", 1)[0] if "/" in path else "."
    return path

def _render(value, into):
    """Appends `value`'s command-line strings to `into.args`; artifacts go to `into.inputs`/`.outputs`."""
    if value == None:
        return
    kind = type(value)
    if kind == "string":
        into.args.append(value)
    elif kind == "int":
        into.args.append(str(value))
    elif kind == "list" or kind == "tuple":
        for item in value:
            _render(item, into)
    elif _is(value, "artifact"):
        into.inputs.append(value.path)
        into.args.append(value.path)
    elif _is(value, "output"):
        into.outputs.append(value.artifact.path)
        into.args.append(value.artifact.path)
    elif _is(value, "provider") and value._provider == _RunInfoRaw:
        _render(value.args, into)
    elif _is(value, "cmd_args"):
        _render_cmd_args(value, into)
    else:
        harness_py_error("analysis", "Expected command line item to be a string, artifact, cmd_args or RunInfo, got `{}` (type `{}`)".format(value, kind))

def _render_cmd_args(value, into):
    nested = struct(args = [], inputs = into.inputs, outputs = into.outputs)
    for item in value._items:
        if value._parent and (_is(item, "artifact") or _is(item, "output")):
            artifact = item if _is(item, "artifact") else item.artifact
            if _is(item, "artifact"):
                into.inputs.append(artifact.path)
            nested.args.append(_parent_path(artifact.path, value._parent))
        else:
            _render(item, nested)
    _render(value._hidden, struct(args = [], inputs = into.inputs, outputs = into.outputs))
    rendered = []
    for arg in nested.args:
        if value._format != None:
            arg = value._format.replace("{}", arg)
        if value._quote == "shell":
            arg = harness_py_shell_quote(arg)
        rendered.append(arg)
    if value._prepend != None:
        rendered = [x for arg in rendered for x in (value._prepend, arg)]
    if value._delimiter != None:
        rendered = [value._delimiter.join(rendered)] if rendered else []
    into.args.extend(rendered)

def _command_line(value):
    into = struct(args = [], inputs = [], outputs = [])
    _render(value, into)
    return into

def _plain(value):
    """Plain (JSON) data for Python: artifacts become paths, command lines lists of strings."""
    kind = type(value)
    if kind in ("string", "int", "bool", "NoneType", "float"):
        return value
    if kind == "list" or kind == "tuple":
        return [_plain(item) for item in value]
    if kind == "dict":
        return {_plain_key(key): _plain(item) for key, item in value.items()}
    if _is(value, "artifact"):
        return value.path
    if _is(value, "output"):
        return value.artifact.path
    if _is(value, "cmd_args"):
        return _command_line(value).args
    if _is(value, "provider"):
        return _plain_provider(value)
    if _is(value, "dependency"):
        return value.label
    if _is(value, "label"):
        return value.raw
    if kind == "struct":
        return {key: _plain(getattr(value, key)) for key in dir(value)}
    return str(value)

def _plain_key(key):
    if _is(key, "artifact"):
        return key.path
    if type(key) == "function":
        return _provider_name(key)
    return key if type(key) == "string" else str(key)

def _plain_provider(instance):
    fields = {}
    for field in instance._info["fields"]:
        value = getattr(instance, field)
        fields[field] = _plain(value) if field != "sub_targets" else {
            name: _plain_collection(collection)
            for name, collection in value.items()
        }
    return fields

def _plain_collection(collection):
    plain = {}
    for instance in collection.values():
        plain[instance._info["name"]] = _plain_provider(instance)
    return plain

# ---------------------------------------------------------------------------------------------
# Analysis: `ctx`, `ctx.actions`, and the driver that runs rule implementations in order

_LOWER = "abcdefghijklmnopqrstuvwxyz"
_DIGITS = "0123456789"

def _is_snake_case_category(category):
    """Buck2's category syntax (buck2_core category.rs): `^[a-z][a-z0-9]*(_[a-z][a-z0-9]*)*$`."""
    if type(category) != "string":
        return False
    for section in category.split("_"):
        if not section or section[0] not in _LOWER:
            return False
        for char in section.elems():
            if char not in _LOWER and char not in _DIGITS:
                return False
    return True

def _new_actions(target):
    """`ctx.actions` of one target; records its actions with the Python side."""
    declared = {}  # path -> artifact, for outputs this target declared
    bound = {}  # path -> True once an action produces it
    identifiers_by_category = {}  # category -> identifiers its actions were given

    def declare(name, is_dir = False):
        path = target["out_dir"] + "/" + name
        if path in declared:
            harness_py_error("analysis", "Output `{}` of `{}` was declared more than once".format(name, target["label"]))
        artifact = _new_artifact(path, name, False, target["label"])
        declared[path] = struct(artifact = artifact, is_dir = is_dir)
        return artifact

    def declare_output(prefix_or_filename, filename = None, dir = False, has_content_based_path = None, uses_experimental_content_based_path_hashing = None):
        name = prefix_or_filename + "/" + filename if filename != None else prefix_or_filename
        return declare(name, dir)

    def bind(path):
        if path not in declared:
            harness_py_error("analysis", "Artifact `{}` is not an output declared by `{}`; declare it with `ctx.actions.declare_output`".format(path, target["label"]))
        if path in bound:
            harness_py_error("analysis", "Artifact `{}` is already bound to an action of `{}`".format(path, target["label"]))
        bound[path] = True

    def output_of(output, is_dir = False):
        if type(output) == "string":
            return declare(output, is_dir)
        if _is(output, "output"):
            return output.artifact
        if _is(output, "artifact") and not output.is_source:
            return output
        harness_py_error("analysis", "Expected an output path (string) or a declared artifact, got `{}`".format(output))

    def record(kind, category, identifier, outputs, data):
        # Buck2's rule (actions/registry.rs): a category used without an identifier is used
        # once; within a category, identifiers are unique.
        if identifier == None:
            if category in identifiers_by_category:
                harness_py_error("analysis", "Analysis produced multiple actions with category `{}` and at least one of them had no identifier. Add an identifier to these actions to disambiguate them".format(category))
            identifiers_by_category[category] = []
        else:
            identifiers = identifiers_by_category.setdefault(category, [])
            if identifier in identifiers:
                harness_py_error("analysis", "Action category `{}` contains duplicate identifier `{}`; category-identifier pairs must be unique within a rule".format(category, identifier))
            identifiers.append(identifier)
        for path in outputs:
            bind(path)
        harness_py_record_action(target["label"], kind, category, identifier, outputs, data)

    def write(output, content, is_executable = False, allow_args = False, with_inputs = False, absolute = False, uses_experimental_content_based_path_hashing = None):
        artifact = output_of(output)
        if type(content) == "string":
            text, inputs = content, []
        else:
            line = _command_line(content)
            text, inputs = "\n".join(line.args) + ("\n" if line.args else ""), line.inputs
        record("write", "write", artifact.short_path, [artifact.path], {"content": text, "is_executable": is_executable, "inputs": inputs})
        return (artifact, []) if allow_args else artifact

    def write_json(output, content, with_inputs = False, pretty = False, absolute = False, uses_experimental_content_based_path_hashing = None):
        artifact = output_of(output)
        record("write_json", "write_json", artifact.short_path, [artifact.path], {"content": _plain(content), "pretty": pretty})
        return artifact

    def copy_file(dst, src, has_content_based_path = None):
        artifact = output_of(dst)
        record("copy_file", "copy", artifact.short_path, [artifact.path], {"inputs": [src.path], "src": src.path})
        return artifact

    def symlinked_dir(output, srcs, has_content_based_path = None):
        artifact = output_of(output, True)
        links = {name: src.path for name, src in srcs.items()}
        record("symlinked_dir", "symlinked_dir", artifact.short_path, [artifact.path], {"inputs": links.values(), "srcs": links})
        return artifact

    def run(arguments, *, category, identifier = None, env = None, local_only = False, prefer_local = False, prefer_remote = False, always_print_stderr = False, weight = None, allow_cache_upload = False, exe = None, timeout_seconds = None, no_outputs_cleanup = False):
        if not _is_snake_case_category(category):
            harness_py_error("analysis", "Invalid category `{}`. Must be a snake_cased identifier consisting of lowercase alphanumeric characters, e.g. `cxx_compile`. Each section of the snake_cased identifier must begin with a lowercase letter (not a number).".format(category))
        line = _command_line([exe, arguments] if exe != None else arguments)
        env_plain = {}
        for name, value in (env or {}).items():
            rendered = _command_line(value)
            line.inputs.extend(rendered.inputs)
            env_plain[name] = " ".join(rendered.args)
        if not line.outputs:
            harness_py_error("analysis", "Action with category `{}` of `{}` has no outputs; mark them with `.as_output()`".format(category, target["label"]))
        record("run", category, identifier, line.outputs, {"argv": line.args, "env": env_plain, "inputs": line.inputs, "local_only": local_only})

    def check_all_bound():
        for path, entry in declared.items():
            if path not in bound:
                harness_py_error("analysis", "Artifact must be bound by now. If you are intending to use this artifact as the output of `run`, are you missing an `.as_output()` call?\n  Artifact: {} (declared by `{}`)".format(path, target["label"]))

    actions = struct(
        declare_output = declare_output,
        write = write,
        write_json = write_json,
        copy_file = copy_file,
        symlinked_dir = symlinked_dir,
        run = run,
    )
    return actions, check_all_bound

def _resolve(spec, value, target, results):
    """The value a rule implementation sees for an attribute (Buck2's attribute resolution)."""
    kind = spec.type
    if value == None:
        return None
    if kind == "default_only" or kind == "option":
        return _resolve(spec.inner, value, target, results)
    if kind == "list":
        return [_resolve(spec.inner, item, target, results) for item in value]
    if kind == "tuple":
        return tuple([_resolve(spec.alternatives[i], item, target, results) for i, item in enumerate(value)])
    if kind == "one_of":
        return _resolve(spec.alternatives[value["alternative"]], value["value"], target, results)
    if kind == "dict":
        return {
            _resolve(spec.key, key, target, results): _resolve(spec.value, item, target, results)
            for key, item in value.items()
        }
    if kind == "source":
        if "target" in value:
            outputs = _dependency(value["target"], results)[_DefaultInfoRaw].default_outputs
            if len(outputs) != 1:
                harness_py_error("analysis", "Expected a single artifact from `{}` for a source attribute of `{}`, but it has {} default outputs".format(value["target"], target["label"], len(outputs)))
            return outputs[0]
        return _new_artifact(value["path"], value["short_path"], True, None)
    if kind in ("dep", "exec_dep", "toolchain_dep"):
        collection = _dependency(value, results)
        for required in spec.providers:
            if required not in collection:
                harness_py_error("analysis", "Attribute requires a dep that provides `{}`, but it was not found on `{}`. Found these providers: {}".format(
                    _provider_name(required),
                    value,
                    ", ".join([instance._info["name"] for instance in _unique(collection.values())]),
                ))
        return collection
    if kind == "label":
        return _label_struct(value)
    return value

def _dependency(label, results):
    """The provider collection of `root//pkg:t`, or of a sub-target `root//pkg:t[name]`."""
    parts = label.split("[")
    collection = results[parts[0]]
    for part in parts[1:]:
        name = part.removesuffix("]")
        sub_targets = collection[_DefaultInfoRaw].sub_targets
        if name not in sub_targets:
            harness_py_error("analysis", "The sub target `{}` of `{}` is not available. Available sub targets are: {}".format(
                name,
                parts[0],
                ", ".join(["`{}`".format(available) for available in sub_targets]) or "none",
            ))
        collection = sub_targets[name]
    return collection

def _unique(instances):
    seen = []
    for instance in instances:
        if instance not in seen:
            seen.append(instance)
    return seen

def _label_struct(raw):
    cell, rest = raw.split("//", 1)
    package, name = rest.split(":", 1)
    return struct(_kind = "label", raw = raw, cell = cell, package = package, name = name)

def _check_providers(target, returned):
    if type(returned) != "list":
        harness_py_error("analysis", "Rule implementation for `{}` must return a list of providers, got `{}`".format(target["label"], type(returned)))
    names = []
    for instance in returned:
        if not _is(instance, "provider"):
            harness_py_error("analysis", "Rule implementation for `{}` returned `{}`, which is not a provider".format(target["label"], instance))
        name = instance._info["name"]
        if name in names:
            harness_py_error("analysis", "provider of type `{}` specified twice in the providers of `{}`".format(name, target["label"]))
        names.append(name)
    if "DefaultInfo" not in names:
        harness_py_error("analysis", "collection [{}] of `{}` did not receive a `DefaultInfo` provider".format(", ".join(names), target["label"]))

def harness_analyze(plan, exports):
    """Runs the rule implementation of every target of `plan` (in dependency order)."""
    rules = {}
    for export in exports:
        rules.update(export.rules)
    results = {}
    plain = {}
    for target in plan:
        rule = rules[target["rule"]]
        harness_py_begin_analysis(target["label"])
        resolved = {"name": target["name"]}
        for name, spec in rule.attrs.items():
            resolved[name] = _resolve(spec, target["attrs"].get(name), target, results)
        actions, check_all_bound = _new_actions(target)
        ctx = struct(attrs = struct(**resolved), label = _label_struct(target["label"]), actions = actions)
        returned = rule.impl(ctx)
        _check_providers(target, returned)
        check_all_bound()
        results[target["label"]] = _collection(returned)
        plain[target["label"]] = {instance._info["name"]: _plain_provider(instance) for instance in returned}
    return plain

# ---------------------------------------------------------------------------------------------
# Build-file globals

def read_config(section, key, default = None):
    value = harness_py_read_config(section, key)
    return default if value == None else value

def glob(include, exclude = []):
    return harness_py_glob(include, exclude)

def package_name():
    return harness_py_package_name()

native = struct(package_name = package_name, glob = glob, read_config = read_config)
