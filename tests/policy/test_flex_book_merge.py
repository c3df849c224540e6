"""A Flex market walks its own book and the untyped one as one book, highest bid
first and, at one bid, in submission order (docs/modes.md, *Flex*): the planner's
two-book merge must give exactly heapq.merge's order, read whole or in part."""

from __future__ import annotations

import heapq
import random
import sys

import skyops_tui.policy.planner  # noqa: F401  (loads planner.flex)

flex = sys.modules["skyops_tui.policy.planner.flex"]


def test_the_typed_and_untyped_books_merge_in_bid_then_submission_order():
    r = random.Random(15)
    for _ in range(300):
        seqs = r.sample(range(1000), r.randint(0, 40))
        entries = [(-r.choice([30, 55, 80, 120, 250]), seq, seq + 7) for seq in seqs]
        cut = r.randint(0, len(entries))
        a, b = sorted(entries[:cut]), sorted(entries[cut:])
        assert list(flex._merge(a, b)) == list(heapq.merge(a, b))
        walked, rest = flex._merge(a, b), heapq.merge(a, b)
        k = r.randint(0, len(entries))
        assert [next(walked) for _ in range(k)] == [next(rest) for _ in range(k)]
        assert list(walked) == list(rest)  # the part a walk left, read later for the price
