"""Value classes for the modules every fetch loads: ``record`` is ``dataclasses.dataclass``
for the options this project uses (frozen, order, fields with defaults or factories), made
without importing ``dataclasses`` (which loads ``inspect``, ``dis``, ``ast`` and ``tokenize``)
and with one code generation per class instead of one per method: about 20 ms less before a
fetch's first write, on a start-up that is most of a small fetch's time.

A record is a dataclass to the standard library's helpers too: ``__dataclass_fields__`` is made
when first asked for (importing ``dataclasses`` then), so ``dataclasses.replace``, ``asdict``,
``fields`` and ``is_dataclass`` work on records and on dataclasses holding records.
"""

from __future__ import annotations

import reprlib
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_MISSING: Any = object()


class Field:
    """A field's options, as ``dataclasses.field`` takes them (the ones this project uses)."""

    __slots__ = ("compare", "default", "default_factory", "name", "repr")

    def __init__(
        self, default: Any, default_factory: Callable[[], Any] | Any, repr: bool, compare: bool
    ) -> None:
        self.name = ""
        self.default = default
        self.default_factory = default_factory
        self.repr = repr
        self.compare = compare


def field(
    *,
    default: Any = _MISSING,
    default_factory: Callable[[], Any] | Any = _MISSING,
    repr: bool = True,
    compare: bool = True,
) -> Any:
    if default is not _MISSING and default_factory is not _MISSING:
        raise ValueError("cannot specify both default and default_factory")
    return Field(default, default_factory, repr, compare)


class FrozenInstanceError(AttributeError):
    """Assigning to a field of a frozen record."""


class _DataclassFields:
    """``__dataclass_fields__``, made on first use: the standard library's view of the fields."""

    def __get__(self, instance: object, owner: type) -> dict[str, Any]:
        import dataclasses

        made = {}
        for own in owner.__record_fields__:
            made_field = dataclasses.field(
                default=dataclasses.MISSING if own.default is _MISSING else own.default,
                default_factory=(
                    dataclasses.MISSING if own.default_factory is _MISSING else own.default_factory
                ),
                repr=own.repr,
                compare=own.compare,
            )
            made_field.name = own.name
            made_field.type = owner.__annotations__.get(own.name)
            made_field._field_type = dataclasses._FIELD  # type: ignore[attr-defined]
            made[own.name] = made_field
        type.__setattr__(owner, "__dataclass_fields__", made)  # once per class
        return made


def _fields_of(cls: type) -> list[Field]:
    fields: dict[str, Field] = {}
    for base in reversed(cls.__mro__[1:]):
        for inherited in base.__dict__.get("__record_fields__", ()):
            fields[inherited.name] = inherited
    annotations = cls.__dict__.get("__annotations__", {})  # noqa: RUF063 (spares inspect)
    for name, annotation in annotations.items():
        if isinstance(annotation, str) and annotation.startswith("ClassVar"):
            continue
        value = cls.__dict__.get(name, _MISSING)
        own = value if isinstance(value, Field) else Field(value, _MISSING, True, True)
        own.name = name
        if own.default.__class__.__hash__ is None:  # list, dict, set: shared by every instance
            raise ValueError(
                f"mutable default {type(own.default)} for field {name} is not allowed:"
                " use default_factory"
            )
        if isinstance(value, Field):  # the class attribute is the default, as in dataclasses
            if own.default is _MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, own.default)
        fields[name] = own
    return list(fields.values())


def _source(cls: type, fields: list[Field], frozen: bool, order: bool) -> list[str]:
    """The methods' code: one compilation for the whole class."""
    params, body = [], []
    for f in fields:
        if f.default_factory is not _MISSING:
            params.append(f"{f.name}=__record_missing__")
            value = f"__record_factory_{f.name}__() if {f.name} is __record_missing__ else {f.name}"
        elif f.default is not _MISSING:
            params.append(f"{f.name}=__record_default_{f.name}__")
            value = f.name
        else:
            params.append(f.name)
            value = f.name
        if frozen:
            body.append(f"  __record_set__(__record_self__, {f.name!r}, {value})")
        else:
            body.append(f"  __record_self__.{f.name} = {value}")
    if hasattr(cls, "__post_init__"):
        body.append("  __record_self__.__post_init__()")
    signature = ", ".join(["__record_self__", *params])  # a field may be named self
    lines = [f"def __init__({signature}):", *(body or ["  pass"])]
    shown = ", ".join(f"{f.name}={{self.{f.name}!r}}" for f in fields if f.repr)
    lines += ["def __repr__(self):", f"  return f'{{type(self).__qualname__}}({shown})'"]
    compared = "".join(f"self.{f.name}," for f in fields if f.compare)
    other = compared.replace("self.", "other.")
    lines += [
        "def __eq__(self, other):",
        "  if other.__class__ is self.__class__:",
        f"    return ({compared}) == ({other})",
        "  return NotImplemented",
    ]
    if frozen:
        lines += [
            "def __hash__(self):",
            f"  return hash(({compared}))",
            "def __setattr__(self, name, value):",
            "  raise __record_frozen__(f'cannot assign to field {name!r}')",
            "def __delattr__(self, name):",
            "  raise __record_frozen__(f'cannot delete field {name!r}')",
        ]
    if order:
        for name, op in (("__lt__", "<"), ("__le__", "<="), ("__gt__", ">"), ("__ge__", ">=")):
            lines += [
                f"def {name}(self, other):",
                "  if other.__class__ is self.__class__:",
                f"    return ({compared}) {op} ({other})",
                "  return NotImplemented",
            ]
    return lines


_METHODS = (
    "__init__",
    "__repr__",
    "__eq__",
    "__setattr__",
    "__delattr__",
    "__lt__",
    "__le__",
    "__gt__",
    "__ge__",
)


def record(cls: type[T] | None = None, /, *, frozen: bool = False, order: bool = False) -> Any:
    """``@record``, ``@record(frozen=True)``, ``@record(frozen=True, order=True)``: the class
    with ``__init__``, ``__repr__``, ``__eq__`` (and, frozen, ``__hash__`` and no assignment;
    with ``order``, comparisons), as ``dataclasses.dataclass`` makes them."""

    def wrap(cls: type[T]) -> type[T]:
        fields = _fields_of(cls)
        namespace: dict[str, Any] = {
            "__record_missing__": _MISSING,
            "__record_set__": object.__setattr__,
            "__record_frozen__": FrozenInstanceError,
        }
        for f in fields:
            namespace[f"__record_default_{f.name}__"] = f.default
            namespace[f"__record_factory_{f.name}__"] = f.default_factory
        own = cls.__dict__
        # As dataclasses: a __hash__ of the class's own is kept (None because the class
        # defines __eq__ is not one); eq without frozen leaves instances unhashable.
        own_hash = "__hash__" in own and not (own["__hash__"] is None and "__eq__" in own)
        code = "\n".join(_source(cls, fields, frozen, order))
        exec(compile(code, f"<record {cls.__qualname__}>", "exec"), namespace)
        for name in _METHODS:
            if name in namespace and name not in own:  # methods the class defines stay
                method = namespace[name]
                method.__qualname__ = f"{cls.__qualname__}.{name}"
                method.__module__ = cls.__module__
                if name == "__repr__":  # a record holding itself shows "..." there
                    method = reprlib.recursive_repr()(method)
                setattr(cls, name, method)
        if not own_hash:
            cls.__hash__ = namespace["__hash__"] if frozen else None  # type: ignore[assignment]
        cls.__record_fields__ = tuple(fields)  # type: ignore[attr-defined]
        cls.__match_args__ = tuple(f.name for f in fields)  # type: ignore[attr-defined]
        cls.__dataclass_fields__ = _DataclassFields()  # type: ignore[attr-defined]
        return cls

    return wrap if cls is None else wrap(cls)


def replace(obj: T, /, **changes: Any) -> T:
    """A copy of the record (or dataclass) ``obj`` with ``changes``, as
    ``dataclasses.replace``."""
    fields = getattr(type(obj), "__record_fields__", None)
    if fields is None:
        import dataclasses

        return dataclasses.replace(obj, **changes)  # type: ignore[type-var]
    for f in fields:
        changes.setdefault(f.name, getattr(obj, f.name))
    return type(obj)(**changes)
