"""Every key of the console, as data: the screens build their BINDINGS from it, the
help screen lists it and the command palette offers it. Each binding has an id
(`scope.name`), so a keymap (`SkyopsApp(keymap={"jobs.cancel": "ctrl+x"})`) can move it.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding, BindingType


@dataclass(frozen=True, slots=True)
class Key:
    scope: str
    name: str
    keys: str  # comma-separated, Textual key names
    action: str
    description: str
    show: bool = True  # in the footer
    changes: bool = False  # changes the grid: refused in a read-only console
    palette: bool = True  # offered in the command palette
    priority: bool = False

    @property
    def id(self) -> str:
        return f"{self.scope}.{self.name}"


SCOPES: dict[str, str] = {
    "app": "Everywhere",
    "grid": "Grid",
    "node": "Node detail",
    "jobs": "Jobs",
    "job": "Job detail",
    "launch": "Launch",
    "help": "Help",
    "market": "Market",
    "reservations": "Reservations",
    "reservation_form": "New reservation",
    "events": "Events",
    "ledger": "Ledger",
    "feed": "Event and ledger tables",
    "dialog": "Dialogs",
}

KEYS: tuple[Key, ...] = (
    # Everywhere: switch screens, help, palette, quit.
    Key("app", "grid", "g", "view('grid')", "Grid", show=False),
    Key("app", "jobs", "j", "view('jobs')", "Jobs", show=False),
    Key("app", "launch", "n", "view('launch')", "Launch", show=False),
    Key("app", "market", "m", "view('market')", "Market", show=False),
    Key("app", "reservations", "r", "view('reservations')", "Reservations", show=False),
    Key("app", "ledger", "L", "view('ledger')", "Ledger", show=False),
    Key("app", "events", "e", "view('events')", "Events", show=False),
    Key("app", "help", "question_mark", "help", "Help"),
    Key("app", "palette", "colon,ctrl+p", "command_palette", "Commands", show=False),
    Key("app", "quit", "q", "quit", "Quit"),
    Key("app", "back", "escape", "back", "Back", show=False),
    # Focus moves at once, ahead of any key still on its way to the old field, so a
    # key typed after tab lands in the new field however slow a refresh is.
    Key("app", "next_field", "tab", "focus_next", "Next field", show=False, priority=True),
    Key(
        "app",
        "previous_field",
        "shift+tab",
        "focus_previous",
        "Previous field",
        show=False,
        priority=True,
    ),
    # Grid of nodes.
    Key("grid", "describe", "d,enter", "describe", "Describe"),
    # Node detail.
    Key("node", "describe", "d,enter", "describe", "Describe job"),
    Key("node", "back", "escape", "back", "Back"),
    # Job list.
    Key("jobs", "describe", "d,enter", "describe", "Describe"),
    Key("jobs", "logs", "l", "logs", "Logs", show=False),
    Key("jobs", "filter", "slash", "filter", "Filter"),
    Key("jobs", "down", "j", "cursor_down", "Down", show=False, palette=False),
    Key("jobs", "up", "k", "cursor_up", "Up", show=False, palette=False),
    Key("jobs", "sort", "s", "sort", "Sort"),
    Key("jobs", "reverse", "S", "reverse", "Reverse", show=False),
    # One key per column, as k9s: again on the same column reverses.
    Key("jobs", "sort_id", "I", "sort('id')", "Sort by ID", show=False),
    Key("jobs", "sort_mode", "O", "sort('mode')", "Sort by mode", show=False),
    Key("jobs", "sort_state", "T", "sort('state')", "Sort by state", show=False),
    Key("jobs", "sort_name", "N", "sort('name')", "Sort by name", show=False),
    Key("jobs", "sort_user", "U", "sort('user')", "Sort by user", show=False),
    Key("jobs", "sort_gpus", "G", "sort('gpus')", "Sort by GPUs", show=False),
    Key("jobs", "sort_node", "D", "sort('node')", "Sort by node", show=False),
    Key("jobs", "sort_price", "P", "sort('price')", "Sort by price", show=False),
    Key("jobs", "sort_left", "E", "sort('left')", "Sort by time left", show=False),
    Key("jobs", "sort_queue", "Q", "sort('queue')", "Sort by queue", show=False),
    Key("jobs", "ended", "a", "toggle_ended", "All/active", show=False),
    Key("jobs", "cancel", "ctrl+d", "cancel", "Cancel", changes=True),
    Key("jobs", "extend", "x", "extend", "Extend", changes=True),
    Key("jobs", "bid", "b", "bid", "Bid", changes=True),
    Key("jobs", "mode", "M", "change_mode", "Mode lock", show=False),
    Key("jobs", "back", "escape", "back", "Back (clears the filter first)", show=False),
    # Job detail.
    Key("job", "logs", "l", "logs", "Logs"),
    Key("job", "stream", "s", "stream", "stdout/stderr"),
    Key("job", "cancel", "ctrl+d", "cancel", "Cancel", changes=True),
    Key("job", "extend", "x", "extend", "Extend", changes=True),
    Key("job", "bid", "b", "bid", "Bid", changes=True),
    Key("job", "mode", "M", "change_mode", "Mode lock", show=False),
    Key("job", "back", "escape", "back", "Back", show=False),
    # Launch form.
    Key("launch", "submit", "ctrl+s", "submit", "Submit", changes=True, priority=True),
    Key("launch", "priority", "f1", "pick_mode('priority')", "Priority"),
    Key("launch", "commit", "f2", "pick_mode('commit')", "Commit"),
    Key("launch", "flex", "f3", "pick_mode('flex')", "Flex"),
    Key("launch", "back", "escape", "back", "Back", show=False),
    # Market.
    Key(
        "market", "next_type", "right,right_square_bracket", "next_type", "Next type", priority=True
    ),
    Key(
        "market",
        "previous_type",
        "left,left_square_bracket",
        "previous_type",
        "Prev type",
        priority=True,
    ),
    Key("market", "span", "z", "span", "Chart span"),
    # Priority: the scrolling ladder pane would take them for scrolling.
    Key("market", "down", "down", "cursor_down", "Next bid", show=False, priority=True),
    Key("market", "up", "up", "cursor_up", "Previous bid", show=False, priority=True),
    Key("market", "bid", "b", "bid", "Change bid", changes=True),
    # Reservations.
    Key("reservations", "new", "a", "new", "New reservation", changes=True),
    Key(
        "reservations",
        "cancel",
        "ctrl+d",
        "cancel_reservation",
        "Cancel reservation",
        changes=True,
    ),
    Key("reservations", "earlier", "left_square_bracket", "pan(-1)", "Earlier"),
    Key("reservations", "later", "right_square_bracket", "pan(1)", "Later"),
    Key("reservations", "today", "t", "today", "Today", show=False),
    Key(
        "reservation_form",
        "submit",
        "ctrl+s",
        "reserve",
        "Reserve",
        changes=True,
        priority=True,
        palette=False,
    ),
    # Events and ledger, and the tables they share.
    Key("events", "filter", "slash", "filter", "Filter"),
    Key("events", "follow", "end", "follow", "Newest, and follow", show=False),
    Key("events", "back", "escape", "back", "Back (leaves the filter first)", show=False),
    Key("ledger", "filter", "slash", "filter", "Filter"),
    Key("ledger", "follow", "end", "follow", "Newest, and follow", show=False),
    Key("ledger", "back", "escape", "back", "Back (leaves the filter first)", show=False),
    Key(
        "feed",
        "older",
        "pageup",
        "page_up",
        "Older page (from the top row)",
        show=False,
        palette=False,
    ),
    Key(
        "feed",
        "newer",
        "pagedown",
        "page_down",
        "Newer page (from the last row)",
        show=False,
        palette=False,
    ),
    Key("feed", "oldest", "home", "scroll_top", "Oldest", show=False, palette=False),
    Key("feed", "follow", "end,G", "scroll_bottom", "Follow", palette=False),
    # Help.
    Key("help", "close", "escape,question_mark,q", "close", "Close", palette=False),
    # Dialogs.
    Key("dialog", "cancel", "escape", "dismiss_cancel", "Cancel", palette=False),
)


def keys_for(scope: str) -> list[Key]:
    return [k for k in KEYS if k.scope == scope]


def bindings(scope: str) -> list[BindingType]:
    """The Textual bindings of one scope, each with its id so a keymap can move it.
    Typed as Textual's `BINDINGS` class variable is (a list is invariant)."""
    return [
        Binding(
            k.keys,
            k.action,
            k.description,
            show=k.show,
            id=k.id,
            priority=k.priority,
        )
        for k in keys_for(scope)
    ]


def changes(scope: str, action: str) -> bool:
    """Whether `action` in `scope` changes the grid (and so is refused read-only)."""
    return any(k.changes for k in keys_for(scope) if k.action == action)


KEY_NAMES = {
    "question_mark": "?",
    "slash": "/",
    "colon": ":",
    "escape": "esc",
    "enter": "enter",
    "plus": "+",
    "minus": "-",
    "left_square_bracket": "[",
    "right_square_bracket": "]",
    "left": "←",
    "right": "→",
    "up": "↑",
    "down": "↓",
    "space": "space",
    "full_stop": ".",
    "comma": ",",
}


def display(keys: str) -> str:
    """'d,enter' -> 'd / enter'; 'ctrl+d' -> 'ctrl+d'."""
    return " / ".join(KEY_NAMES.get(k.strip(), k.strip()) for k in keys.split(","))
