"""Maximal frequent itemsets over bitsets: which modules builds fetch together.

Each item (a module) comes with its tidset, a Python int whose set bits are the transactions
(builds) that contain it, so the builds with every item of a set are one ``&`` away and their
number one ``bit_count()``. The search is depth-first (Eclat's vertical layout) with the
pruning of MAFIA (Burdick et al., 2001): items with identical tidsets are merged first (a
project's lock file repeats in every one of its builds), a branch whose head and whole tail
pass is recorded at once without visiting its subsets, and a branch inside an itemset already
found is skipped. Two anti-monotone constraints bound the search: support (builds with every
item) and co-occurrence (builds with every item / builds with any), so a set of independent
popular modules is never grown.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass

# The search stops (and says so) after this many branches, or once its intersections have
# touched this many bytes of tidsets (a year of a team's builds is ~100 KB a tidset).
MAX_NODES = 20_000
MAX_WORK = 4_000_000_000


@dataclass(frozen=True)
class Itemset:
    items: tuple  # sorted
    tidset: int  # transactions with every item
    cover: int  # transactions with at least one item

    @property
    def support(self) -> int:
        return self.tidset.bit_count()

    @property
    def co_occurrence(self) -> float:
        """Transactions with every item / transactions with any (1.0: always together)."""
        covered = self.cover.bit_count()
        return self.support / covered if covered else 0.0


@dataclass(frozen=True)
class Mined:
    itemsets: list[Itemset]  # maximal, by decreasing support then items
    nodes: int  # branches visited
    complete: bool  # False: the search ran out of budget, some sets may be missing


@dataclass(frozen=True)
class _Class:
    """Items with one tidset: they always come together."""

    items: tuple
    tidset: int
    support: int


def maximal_itemsets(
    tidsets: Mapping[Hashable, int],
    *,
    min_support: int,
    min_co_occurrence: float = 0.0,
    min_size: int = 2,
    max_nodes: int = MAX_NODES,
    max_work: int = MAX_WORK,
) -> Mined:
    """The maximal itemsets with ``support >= min_support`` and ``co_occurrence >=
    min_co_occurrence`` (a set is maximal when no item can be added without breaking one of
    the two), of at least ``min_size`` items. The search visits at most ``max_nodes``
    branches and intersects at most ``max_work`` bytes of tidsets."""
    miner = _Miner(_classes(tidsets, max(1, min_support)), min_support, min_co_occurrence)
    miner.run(max_nodes, max_work)
    found = _only_maximal(miner.found)
    out = [
        Itemset(tuple(sorted(item for c in head for item in miner.classes[c].items)), t, u)
        for head, t, u in found
    ]
    out = [s for s in out if len(s.items) >= min_size]
    out.sort(key=lambda s: (-s.support, s.items))
    return Mined(out, miner.nodes, miner.complete)


def _classes(tidsets: Mapping[Hashable, int], min_support: int) -> list[_Class]:
    """The frequent items merged by identical tidset, in increasing support (the usual order
    for maximal sets: rare classes head the branches, so tails stay short)."""
    by_tidset: dict[int, list] = {}
    for item, tidset in tidsets.items():
        if tidset.bit_count() >= min_support:
            by_tidset.setdefault(tidset, []).append(item)
    classes = [_Class(tuple(sorted(items)), t, t.bit_count()) for t, items in by_tidset.items()]
    classes.sort(key=lambda c: (c.support, c.items))
    return classes


class _Miner:
    def __init__(self, classes: list[_Class], min_support: int, min_co: float) -> None:
        self.classes = classes
        self.min_support = min_support
        self.min_co = min_co
        self.found: list[tuple[frozenset[int], int, int]] = []
        self.nodes = 0
        self.work = 0  # bytes of tidsets intersected so far
        self.complete = True

    def passes(self, tidset: int, cover: int) -> bool:
        support = tidset.bit_count()
        return support >= self.min_support and support >= self.min_co * cover.bit_count()

    def run(self, max_nodes: int, max_work: int) -> None:
        # A stack of branches instead of recursion: a branch can be as deep as there are
        # classes. Each entry: head (class indices), its tidset and cover, and the tail (the
        # classes after it that passed with the parent's head).
        n = len(self.classes)
        stack = [
            ((i,), c.tidset, c.tidset, tuple(range(i + 1, n)))
            for i, c in reversed(list(enumerate(self.classes)))
        ]
        while stack:
            if self.nodes >= max_nodes or self.work >= max_work:
                self.complete = False
                return
            self.nodes += 1
            head, tidset, cover, tail = stack.pop()
            stack.extend(self._branch(head, tidset, cover, tail))

    def _branch(
        self, head: tuple[int, ...], tidset: int, cover: int, tail: tuple[int, ...]
    ) -> list[tuple[tuple[int, ...], int, int, tuple[int, ...]]]:
        """The children of a branch to visit (in reverse, for the stack), recording the
        branch's itemset when it is maximal."""
        candidates = []
        self.work += len(tail) * ((cover.bit_length() + 7) // 8)
        for c in tail:
            other = self.classes[c].tidset
            t, u = tidset & other, cover | other
            if self.passes(t, u):
                candidates.append((c, t, u))
        if not candidates:
            self._record(frozenset(head), tidset, cover)
            return []
        whole = frozenset(head).union(c for c, _, _ in candidates)
        if any(whole <= known for known, _, _ in self.found):
            return []  # every set of this branch is inside one found already
        if len(candidates) > 1:
            t_all, u_all = tidset, cover
            for _, t, u in candidates:
                t_all &= t
                u_all |= u
            if self.passes(t_all, u_all):  # head + the whole tail: no need to visit subsets
                self._record(whole, t_all, u_all)
                return []
        children = []
        for k, (c, t, u) in enumerate(candidates):
            rest = tuple(c2 for c2, _, _ in candidates[k + 1 :])
            children.append(((*head, c), t, u, rest))
        children.reverse()
        return children

    def _record(self, head: frozenset[int], tidset: int, cover: int) -> None:
        if not any(head <= known for known, _, _ in self.found):
            self.found.append((head, tidset, cover))


def _only_maximal(
    found: list[tuple[frozenset[int], int, int]],
) -> list[tuple[frozenset[int], int, int]]:
    """Drop sets inside another found set (a set recorded before its superset was)."""
    by_size = sorted(found, key=lambda f: -len(f[0]))
    kept: list[tuple[frozenset[int], int, int]] = []
    for entry in by_size:
        if not any(entry[0] < other[0] for other in kept):
            kept.append(entry)
    return kept
