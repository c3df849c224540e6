"""keys.py holds every key of the console: a binding written inline in a screen would
be missing from the command palette and the help, and read-only mode would not know
whether it changes the grid."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

from textual.binding import Binding
from textual.command import CommandList, CommandPalette
from textual.dom import DOMNode

import skyops_tui.app
from skyops_tui.app.keys import KEYS
from skyops_tui.app.screens.reservations import ReservationsScreen
from tests.app.harness import demo_app, demo_runtime, toasts, wait_for


def console_classes() -> list[type[DOMNode]]:
    """Every app, screen and widget class defined in the console's modules."""
    found: dict[str, type[DOMNode]] = {}
    modules = pkgutil.walk_packages(skyops_tui.app.__path__, "skyops_tui.app.")
    for info in modules:
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, DOMNode) and cls.__module__ == module.__name__:
                found[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return list(found.values())


def test_every_binding_of_every_screen_is_declared_in_keys_py():
    declared = {k.id: k for k in KEYS}
    classes = console_classes()
    assert ReservationsScreen in classes  # the walk does reach the screens
    stray = []
    for cls in classes:
        for b in cls.__dict__.get("BINDINGS", ()):
            key = declared.get(b.id) if isinstance(b, Binding) and b.id else None
            if key is None or (key.keys, key.action) != (b.key, b.action):
                where = f"{cls.__module__}.{cls.__qualname__}"
                stray.append(f"{where}: {b!r}")
    assert not stray, "bindings not declared in keys.py:\n" + "\n".join(stray)


def palette_offers(app, command: str) -> bool:
    """Whether the open palette lists `command` (each option reads its name, then its
    key on the next line)."""
    options = app.screen.query_one(CommandList).options
    return any(str(getattr(o.prompt, "plain", o.prompt)).startswith(command) for o in options)


async def test_a_moved_key_is_in_the_palette_and_refused_read_only():
    """Cancelling a reservation (ctrl+d on Reservations) was bound inline in its screen;
    from keys.py the palette offers it, and in a read-only console it is refused, from
    the palette and from the key alike, with nothing cancelled."""
    rt = demo_runtime()
    rt.readonly = True
    app = demo_app(runtime=rt)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, ReservationsScreen), "reservations")
        await wait_for(pilot, lambda: app.screen.selected_name(), "a reservation selected")
        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette), "palette opens")
        await pilot.press(*"cancel reservation")
        await wait_for(
            pilot,
            lambda: palette_offers(app, "Reservations: Cancel reservation"),
            "the palette offers Reservations: Cancel reservation",
        )
        await pilot.press("enter")
        await wait_for(pilot, lambda: toasts(app, "warning"), "a refusal from the palette")
        await wait_for(pilot, lambda: isinstance(app.screen, ReservationsScreen), "palette closed")
        await pilot.press("ctrl+d")
        await wait_for(pilot, lambda: len(toasts(app, "warning")) == 2, "a refusal from the key")
        assert all("cancelling a reservation is disabled" in m for m in toasts(app, "warning"))
        assert isinstance(app.screen, ReservationsScreen)  # no confirmation dialog
        assert all(r.cancelled_at is None for r in rt.grid.reservations.values())
