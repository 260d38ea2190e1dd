"""_records.record behaves as dataclasses.dataclass for the options the project uses, and the
standard library's helpers accept records."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from bsr_team_cache._records import FrozenInstanceError, field, record, replace


@record(frozen=True, order=True)
class Point:
    x: int
    y: int = 0


@record
class Bag:
    name: str
    items: list[str] = field(default_factory=list)
    note: str = field(default="", repr=False, compare=False)


@record(frozen=True)
class Checked:
    value: int
    double: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "double", self.value * 2)


@record(frozen=True)
class OwnHash:
    value: int

    def __hash__(self) -> int:
        return 7


@dataclasses.dataclass(frozen=True)
class Twin:
    x: int
    y: int = 0


def test_init_repr_eq_hash_as_a_dataclass() -> None:
    assert Point(1) == Point(1, 0) == Point(x=1, y=0)
    assert Point(1) != Point(1, 2)
    assert Point(1).__eq__((1, 0)) is NotImplemented
    assert repr(Point(1, 2)) == "Point(x=1, y=2)" == repr(Twin(1, 2)).replace("Twin", "Point")
    assert hash(Point(1, 2)) == hash(Twin(1, 2)) == hash((1, 2))
    assert Point.__match_args__ == ("x", "y")
    with pytest.raises(TypeError, match="missing 1 required positional argument: 'x'"):
        Point()  # type: ignore[call-arg]


def test_order_compares_fields_in_turn() -> None:
    assert sorted([Point(2, 0), Point(1, 5), Point(1, 2)]) == [Point(1, 2), Point(1, 5), Point(2)]
    assert Point(1, 2) <= Point(1, 2) < Point(1, 3) and Point(2) > Point(1, 9) >= Point(1, 9)
    with pytest.raises(TypeError):
        assert Point(1) < Twin(1)  # type: ignore[operator]


def test_frozen_refuses_assignment() -> None:
    point = Point(1, 2)
    with pytest.raises(FrozenInstanceError, match="cannot assign to field 'x'"):
        point.x = 3  # type: ignore[misc]
    with pytest.raises(AttributeError, match="cannot delete field 'y'"):
        del point.y  # type: ignore[misc]
    assert point == Point(1, 2)


def test_mutable_records_are_unhashable_and_get_fresh_defaults() -> None:
    first, second = Bag("a"), Bag("b")
    first.items.append("x")
    assert (first.items, second.items) == (["x"], [])
    first.name = "c"
    assert first == Bag("c", ["x"], note="not compared")
    assert repr(first) == "Bag(name='c', items=['x'])"
    assert Bag.__hash__ is None
    with pytest.raises(TypeError, match="unhashable"):
        hash(first)


def test_post_init_runs_and_a_class_hash_is_kept() -> None:
    assert Checked(4).double == 8
    assert Checked(4) == Checked(4, 99)
    assert hash(OwnHash(1)) == hash(OwnHash(2)) == 7


def test_replace_and_the_standard_helpers() -> None:
    bag = Bag("a", ["x"], "kept")
    assert replace(bag, name="b") == Bag("b", ["x"])
    assert replace(bag, name="b").note == "kept"
    assert replace(Twin(1, 2), y=3) == Twin(1, 3)  # a dataclass: dataclasses.replace
    assert dataclasses.is_dataclass(Point(1)) and dataclasses.is_dataclass(Point)
    assert dataclasses.replace(Point(1, 2), y=5) == Point(1, 5)
    assert dataclasses.asdict(Bag("a", ["x"])) == {"name": "a", "items": ["x"], "note": ""}
    assert [f.name for f in dataclasses.fields(Checked)] == ["value", "double"]
    assert [f.compare for f in dataclasses.fields(Checked)] == [True, False]


def test_a_dataclass_holding_records_converts_them() -> None:
    @dataclasses.dataclass
    class Holder:
        point: Point
        bags: list[Bag]

    assert dataclasses.asdict(Holder(Point(1, 2), [Bag("a")])) == {
        "point": {"x": 1, "y": 2},
        "bags": [{"name": "a", "items": [], "note": ""}],
    }


def test_the_fetch_path_does_not_load_dataclasses() -> None:
    """The modules a cold fetch loads define their value types without dataclasses (and so
    without inspect, dis, ast and tokenize)."""
    code = (
        "import sys\n"
        "import bsr_team_cache.team.fetch, bsr_team_cache.store.local, "
        "bsr_team_cache.team.packs, bsr_team_cache.oci.direct, bsr_team_cache.cli.fetch\n"
        "print(sorted(m for m in ('dataclasses', 'inspect') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_generated_code_takes_any_field_name_and_refuses_shared_defaults() -> None:
    @record
    class Odd:
        self: int
        other: int = 1

    assert (Odd(5).self, Odd(5, other=2)) == (5, Odd(self=5, other=2))
    assert Odd.__init__.__module__ == __name__
    with pytest.raises(ValueError, match="mutable default <class 'list'> for field items"):

        @record
        class Shared:
            items: list[str] = []

    assert dataclasses.fields(Point)[0].default is dataclasses.MISSING


def test_credentials_never_show_their_secrets() -> None:
    from bsr_team_cache.oci.credentials import Credentials

    shown = repr(Credentials("user", "hunter2", "refresh-token"))
    assert shown == "Credentials(username='user')"


def test_a_record_holding_itself_shows_dots_there() -> None:
    bag = Bag("loop")
    bag.items.append(bag)  # type: ignore[arg-type]
    assert repr(bag) == "Bag(name='loop', items=[...])"
    assert Bag.__repr__.__qualname__ == "Bag.__repr__"
