"""The import rule of docs/architecture.md, checked on every module under skyops_tui/.

A layer may import its own package and the layers below it, never one above: the pure
core (domain, policy) stays testable without a terminal, a socket or a database, and a
newcomer can read the packages bottom-up. Packages on one layer are peers and import
none of each other. Lazy imports inside functions and `if TYPE_CHECKING:` imports count
too: they are dependencies all the same.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "skyops_tui"

# Lowest first. A unit is a subpackage (skyops_tui.policy) or a top-level module
# (skyops_tui.runtime); skyops_tui itself holds only the version.
LAYERS: tuple[tuple[str, ...], ...] = (
    # What everything may use: the version, the clock, file locations, and the agent
    # protocol (the one module the agent and the console share).
    # The demo's job (demo_job) is a stdlib-only script, run as a process.
    (
        "skyops_tui",
        "skyops_tui.clock",
        "skyops_tui.locations",
        "skyops_tui.text",  # how times and durations read, for screens and CLI alike
        "skyops_agent.protocol",
        "skyops_tui.demo_job",
    ),
    ("skyops_tui.domain",),  # plain data: jobs, nodes, config schema, money
    ("skyops_tui.policy",),  # the rules over that data: the Grid, the planner, pricing
    # The engine that applies commands and plans, and the executor interface; plan files
    # judged on a copy of the grid.
    ("skyops_tui.scheduler", "skyops_tui.plan"),
    ("skyops_tui.store",),  # persists the Grid and its outbox; fences with the engine's lease
    ("skyops_tui.control",),  # the typed commands, over the engine and plans
    # Executors and the simulated grid: they implement scheduler.executor.
    ("skyops_tui.fleet", "skyops_tui.slurm", "skyops_tui.sim"),
    ("skyops_tui.api",),  # the leader's socket: commands in, store reads out
    ("skyops_tui.runtime",),  # wires store, executor, scheduler, lease and socket
    ("skyops_tui.demo",),  # a seeded runtime
    ("skyops_tui.app",),  # the Textual console
    ("skyops_tui.cli",),  # the command line: console, service, scripts
    ("skyops_tui.__main__",),  # python -m skyops_tui
)
RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}

# The agent itself (everything but its protocol) is the fleet's business: the fleet
# ships it as a zipapp and talks to it; nothing else should know its insides.
AGENT = "skyops_agent"
AGENT_USERS = {"skyops_tui.fleet"}

# The command line sits above the console only to start it: `skyops console` runs the
# Textual app. Every other command (status, jobs, quote, ...) works without a terminal
# UI, so what it needs of the app's (prices, quotes, formatting) belongs lower down.
APP = "skyops_tui.app"
APP_USERS = {"skyops_tui.cli.console"}

# Upward imports that remain, each with why and what removes it. The test also fails
# when one of these is gone, so the list only shrinks.
ALLOWED: dict[tuple[str, str], str] = {
    ("skyops_tui.scheduler.loop", "skyops_tui.control"): (
        "Scheduler.submit/reserve/cancel/... are in-process conveniences that build "
        "control commands; they go when their callers use control.commands.run"
    ),
    ("skyops_tui.api.server", "skyops_tui.runtime"): (
        "type-only: the server is handed the Runtime it serves; goes with a declared "
        "protocol for what the server needs of it"
    ),
}

# The pure core imports no terminal, socket or database library.
CORE = ("skyops_tui.domain", "skyops_tui.policy", "skyops_tui.plan", "skyops_tui.scheduler")
EDGE_LIBRARIES = {"textual", "rich", "asyncssh", "sqlite3", "sqlite_utils"}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, dotted
    target: str  # the imported module or package, dotted
    where: str  # path:line, for the failure message


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(module: str, source: str, where: str, is_package: bool = False) -> list[Import]:
    """Every import in the source, relative ones resolved against `module`."""
    found: list[Import] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [Import(module, a.name, f"{where}:{node.lineno}") for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                parent = ".".join(base + ([node.module] if node.module else []))
            else:
                parent = node.module or ""
            for alias in node.names:
                # `from .. import demo` imports a module; `from .. import __version__` a name.
                sub = f"{parent}.{alias.name}"
                target = sub if unit_of(sub) != unit_of(parent) else parent
                found.append(Import(module, target, f"{where}:{node.lineno}"))
    return sorted(found, key=lambda i: int(i.where.rsplit(":", 1)[1]))


def unit_of(name: str) -> str:
    """The layer unit a dotted name belongs to ('' when it is outside the project)."""
    parts = name.split(".")
    if parts[0] == AGENT:
        return (
            "skyops_agent.protocol"
            if name == "skyops_agent.protocol" or name.startswith("skyops_agent.protocol.")
            else AGENT
        )
    if parts[0] != "skyops_tui":
        return ""
    if len(parts) == 1:
        return "skyops_tui"
    unit = f"skyops_tui.{parts[1]}"
    if (PACKAGE / parts[1]).is_dir() or (PACKAGE / f"{parts[1]}.py").is_file():
        return unit
    return "skyops_tui"  # a name defined in skyops_tui/__init__.py


def all_imports() -> list[Import]:
    found: list[Import] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        where = str(path.relative_to(ROOT))
        found += imports_of(module_name(path), path.read_text(), where, path.name == "__init__.py")
    return found


def violations(found: list[Import]) -> list[tuple[Import, str]]:
    """Imports that break the rule, each with the reason in words."""
    out: list[tuple[Import, str]] = []
    for imp in found:
        src, dst = unit_of(imp.module), unit_of(imp.target)
        if not dst or dst == src:
            continue
        if dst == AGENT:
            if src not in AGENT_USERS:
                out.append((imp, "only the fleet may import the agent (its protocol excepted)"))
            continue
        if dst == APP and src == "skyops_tui.cli" and imp.module not in APP_USERS:
            out.append((imp, "only cli.console (which starts the app) may import the app"))
            continue
        if RANK[dst] > RANK[src]:
            out.append((imp, f"layer {RANK[src]} imports layer {RANK[dst]}, above it"))
        elif RANK[dst] == RANK[src]:
            out.append((imp, f"peers on layer {RANK[src]} import none of each other"))
    return out


def allowed(imp: Import) -> bool:
    return (imp.module, unit_of(imp.target)) in ALLOWED


def describe(bad: list[tuple[Import, str]]) -> str:
    return "\n".join(f"{i.where}: {i.module} imports {i.target}: {why}" for i, why in bad)


def test_every_module_sits_on_a_layer() -> None:
    units = {unit_of(module_name(p)) for p in PACKAGE.rglob("*.py")}
    missing = sorted(u for u in units if u not in RANK)
    assert not missing, f"place these in LAYERS (and docs/architecture.md): {missing}"


def test_no_module_imports_a_layer_above_its_own() -> None:
    bad = [(i, why) for i, why in violations(all_imports()) if not allowed(i)]
    assert not bad, "imports against docs/architecture.md's layers:\n" + describe(bad)


def test_every_allowed_exception_is_still_needed() -> None:
    seen = {(i.module, unit_of(i.target)) for i, _ in violations(all_imports())}
    stale = sorted(set(ALLOWED) - seen)
    assert not stale, f"these upward imports are gone: remove them from ALLOWED: {stale}"


def test_the_core_imports_no_terminal_socket_or_database_library() -> None:
    bad = [
        i
        for i in all_imports()
        if unit_of(i.module) in CORE and i.target.split(".")[0] in EDGE_LIBRARIES
    ]
    assert not bad, "\n".join(f"{i.where}: {i.module} imports {i.target}" for i in bad)


def test_the_rule_catches_an_upward_import_a_lazy_one_and_the_agent() -> None:
    """The checker itself: a domain module reaching up to the console, a lazy import in
    a function, a store module reaching into the agent and a CLI command other than
    the console reaching into the app are all caught."""
    source = (
        "from ..app import keys\n"
        "def f():\n"
        "    from skyops_tui.runtime import Runtime\n"
        "from ..policy import grid\n"
    )
    bad = violations(imports_of("skyops_tui.domain.x", source, "x.py"))
    assert [(i.target, i.where) for i, _ in bad] == [
        ("skyops_tui.app", "x.py:1"),
        ("skyops_tui.runtime", "x.py:3"),
        ("skyops_tui.policy", "x.py:4"),
    ]
    agent = violations(imports_of("skyops_tui.store.y", "import skyops_agent.gpus\n", "y.py"))
    assert [why for _, why in agent] == [
        "only the fleet may import the agent (its protocol excepted)"
    ]
    cli = "from ..app.quote import dry_run\n"
    assert [why for _, why in violations(imports_of("skyops_tui.cli.headless", cli, "h.py"))] == [
        "only cli.console (which starts the app) may import the app"
    ]
    assert (
        violations(imports_of("skyops_tui.cli.console", "from ..app.app import A\n", "c.py")) == []
    )
    shared = "from skyops_agent.protocol import parse_fake_spec\n"
    assert violations(imports_of("skyops_tui.domain.z", shared, "z.py")) == []
