"""A verdict the Flex market keeps (no node for a head, no room for a bid) is judged
again only on the nodes whose holders changed since (planner/flex.py): the grid names
them per change (`Grid.holds_changes`, `Grid.room_changes`), or says it no longer
knows, and then every node is judged again. A wrong or missing name would keep a
verdict that no longer holds: a job left waiting beside room it could have."""

from __future__ import annotations

from skyops_tui.domain.model import NodeStatus
from skyops_tui.policy.grid import Grid
from tests.helpers import T0, config


def test_each_change_names_its_node_and_an_old_count_is_no_longer_known():
    g = Grid(config("3x8xH100"), T0)
    a, b, c = (n.name for n in g.by_type["H100"])
    rev, room = g.holds_rev["H100"], g.room_rev["H100"]
    assert g.holds_changes("H100", rev) == [] and g.room_changes("H100", room) == []

    g.node_status(b, NodeStatus.DEGRADED, T0 + 1, "no heartbeat")
    g.node_status(c, NodeStatus.DEGRADED, T0 + 2, "no heartbeat")
    assert g.holds_changes("H100", rev) == [b, c]
    assert g.room_changes("H100", room) == [b, c]
    assert g.room_changes("H100", room + 1) == [c]

    later = g.room_rev["H100"]
    for i in range(3000):  # far more changes than a log keeps
        g.node_status(a, NodeStatus.UP if i % 2 else NodeStatus.DEGRADED, T0 + 3 + i)
    assert g.room_changes("H100", room) is None
    assert g.holds_changes("H100", rev) is None
    assert g.room_changes("H100", g.room_rev["H100"] - 2) == [a, a]
    assert g.room_changes("H100", later) is None or set(g.room_changes("H100", later)) == {a}
    assert g.room_changes("H100", g.room_rev["H100"] + 1) is None  # a count not reached

    copy = g.snapshot()  # a dry run's copy keeps no log: every count is unknown there
    rev = copy.room_rev["H100"]
    assert copy.room_changes("H100", rev - 1) is None
    copy.node_status(b, NodeStatus.UP, T0 + 4000)
    assert copy.room_changes("H100", rev) is None and copy.room_changes("H100", rev + 1) == []
    assert g.room_changes("H100", g.room_rev["H100"] - 1) == [a]  # the grid's own stands
