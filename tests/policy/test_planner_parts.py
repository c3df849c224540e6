"""The planner's parts (issue 13): a newcomer reads one concern in one module.

Each part of a pass (timers, windows, priority, commit, flex, victims) reads and records
through the one pass state; a part that preempts asks `victims` whom. A part that
reached into another part, or into the driver that orders them, would tie concerns
together again and make the order of the pass something no single module shows.
"""

from __future__ import annotations

import ast
from pathlib import Path

import skyops_tui.policy.planner as planner

PARTS = {"timers", "windows", "priority", "commit", "flex", "victims"}
SHARED = {"state", "victims"}


def _planner_imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                names.add(node.module.split(".")[0])
            else:
                names.update(a.name for a in node.names)
    return names


def test_each_part_imports_only_the_pass_state_and_the_victim_choice() -> None:
    root = Path(planner.__file__).parent
    found = {p.stem for p in root.glob("*.py")} - {"__init__"}
    assert found == PARTS | {"state"}
    for part in sorted(PARTS):
        used = _planner_imports(root / f"{part}.py") - {part}
        assert used <= SHARED, f"{part}.py imports {sorted(used - SHARED)}"
    assert _planner_imports(root / "state.py") == set()
