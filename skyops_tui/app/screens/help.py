"""`?`: every key, built from the bindings data (keymap overrides included), and what
the colours mean."""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import Group
from rich.style import Style
from rich.table import Table
from rich.text import Text
from textual.containers import VerticalScroll
from textual.widget import Widget
from textual.widgets import Static

from .. import palette
from ..keys import KEYS, SCOPES, display, keys_for
from ..keys import bindings as scope_bindings
from .base import SkyScreen
from .grid import legend

ABOUT = (
    "Skyops runs every job in one of three modes, locked at creation: "
    "Priority (exclusive GPUs now, standard rate), Commit (a prepaid, discounted "
    "reserved window) and Flex (whatever is left, by bid; preempted with a checkpoint "
    "signal and resumed). ':' or ctrl+p opens the command palette."
)


class HelpScreen(SkyScreen):
    SCOPE = "help"
    VIEW = "help"
    BINDINGS = scope_bindings("help")
    AUTO_FOCUS = "#help-body"

    def compose_body(self) -> Iterable[Widget]:
        with VerticalScroll(id="help-body"):
            yield Static(id="help-keys")

    def on_mount(self) -> None:
        self.refresh_view()

    def on_resize(self) -> None:
        self.refresh_view()

    def key_text(self, key_id: str, default: str) -> str:
        overrides = getattr(self.app, "keymap_overrides", {}) or {}
        return display(overrides.get(key_id, default))

    def scope_table(self, scope: str) -> Table:
        paint = self.paint
        t = Table(
            title=SCOPES[scope],
            title_justify="left",
            title_style=paint("tag--key") + Style(bold=True),
            show_header=False,
            box=None,
            padding=(0, 1),
            expand=True,
        )
        t.add_column(no_wrap=True, style=paint("tag--key"), min_width=12)
        t.add_column(ratio=1)
        for k in keys_for(scope):
            desc = Text(k.description)
            if k.changes:
                desc.append(" *", paint("tag--warning"))
            t.add_row(self.key_text(k.id, k.keys), desc)
        return t

    def refresh_view(self) -> None:
        paint = self.paint
        wide = self.app.size.width >= 120
        scopes = [s for s in SCOPES if any(k.scope == s for k in KEYS)]
        tables = [self.scope_table(s) for s in scopes]
        layout = Table.grid(padding=(0, 3), expand=True)
        columns = 3 if wide else 2
        for _ in range(columns):
            layout.add_column(ratio=1)
        for i in range(0, len(tables), columns):
            row = tables[i : i + columns]
            layout.add_row(*row, *([""] * (columns - len(row))))
            layout.add_row(*([""] * columns))
        thresholds = getattr(self.app, "thresholds", palette.DEFAULT_THRESHOLDS)
        load = Text(" Load:  ")
        lo, hi = thresholds.util
        load.append(f"light < {lo}%", paint("load--light"))
        load.append("   ")
        load.append(f"moderate < {hi}%", paint("load--moderate"))
        load.append("   ")
        load.append(f"heavy ≥ {hi}%", paint("load--heavy"))
        mem_lo, mem_hi = thresholds.memory
        load.append(f"   (memory: {mem_lo}% / {mem_hi}%)", paint("tag--muted"))
        modes = Text(" Modes: ")
        for mode in palette.MODE_LABEL:
            modes.append(palette.MODE_LABEL[mode], paint(palette.MODE_CLASSES[mode]))
            modes.append("  ")
        modes.append("FAKE", paint("tag--fake"))
        modes.append(" = simulated GPUs")
        marks = Text(" ")
        marks.append("*", paint("tag--warning"))
        marks.append(" changes the grid: refused in a read-only console (--readonly)")
        gpu = Text(" GPUs: ")
        gpu.append_text(legend(paint))
        self.query_one("#help-keys", Static).update(
            Group(Text(ABOUT), Text(), layout, marks, gpu, modes, load)
        )

    def action_close(self) -> None:
        self.app.pop_screen()
