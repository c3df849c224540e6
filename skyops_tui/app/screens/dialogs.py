"""Small modal questions: confirm (Cancel focused first), ask for a value, pick one."""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from ..keys import bindings


class Dialog(ModalScreen):
    BINDINGS = bindings("dialog")

    def action_dismiss_cancel(self) -> None:
        self.dismiss(None)


class ConfirmDialog(Dialog):
    """Yes/no with Cancel focused first, so a stray enter never confirms."""

    AUTO_FOCUS = "#cancel"

    def __init__(self, title: str, message: str | Text, confirm: str = "Confirm") -> None:
        super().__init__()
        self.title_text = title
        self.message = message
        self.confirm = confirm

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.title_text, classes="dialog-title")
            yield Static(
                Text(self.message) if isinstance(self.message, str) else self.message,
                classes="dialog-body",
            )
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="cancel", compact=True)
                yield Button(self.confirm, id="confirm", variant="error", compact=True)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "confirm")

    def action_dismiss_cancel(self) -> None:
        self.dismiss(False)


class AskDialog(Dialog):
    """Ask for one value; `check` returns an error message or None. Enter submits."""

    AUTO_FOCUS = "#value"

    def __init__(
        self,
        title: str,
        message: str,
        value: str = "",
        placeholder: str = "",
        check: Callable[[str], str | None] | None = None,
        ok: str = "OK",
        preview: Callable[[str], Text | None] | None = None,
    ) -> None:
        """`preview`: what the value would do, redrawn as it is typed (None: nothing)."""
        super().__init__()
        self.preview = preview
        self.title_text = title
        self.message = message
        self.value = value
        self.placeholder = placeholder
        self.check = check
        self.ok = ok

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.title_text, classes="dialog-title")
            yield Static(
                Text(self.message) if isinstance(self.message, str) else self.message,
                classes="dialog-body",
            )
            yield Input(self.value, placeholder=self.placeholder, id="value", compact=True)
            yield Static("", id="error", classes="field-error")
            yield Static("", id="preview", classes="dialog-body")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="cancel", compact=True)
                yield Button(self.ok, id="ok", variant="primary", compact=True)

    def on_mount(self) -> None:
        self.show_preview(self.value)

    def show_preview(self, value: str) -> None:
        if self.preview is None:
            self.query_one("#preview", Static).display = False
            return
        problem = self.check(value.strip()) if self.check else None
        text = None if problem else self.preview(value.strip())
        box = self.query_one("#preview", Static)
        box.update(text or "")
        box.display = text is not None

    def on_input_changed(self, event: Input.Changed) -> None:
        self.query_one("#error", Static).update("")
        self.show_preview(event.value)

    def _submit(self) -> None:
        value = self.query_one("#value", Input).value.strip()
        problem = self.check(value) if self.check else None
        if problem:
            self.query_one("#error", Static).update(problem)
            return
        self.dismiss(value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "ok":
            self._submit()
        else:
            self.dismiss(None)


class ChoiceDialog(Dialog):
    """Pick one of a few options (buttons); Cancel is focused first."""

    AUTO_FOCUS = "#cancel"

    def __init__(self, title: str, message: str, choices: list[tuple[str, str]]) -> None:
        super().__init__()
        self.title_text = title
        self.message = message
        self.choices = choices

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.title_text, classes="dialog-title")
            yield Static(
                Text(self.message) if isinstance(self.message, str) else self.message,
                classes="dialog-body",
            )
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="cancel", compact=True)
                for value, label in self.choices:
                    yield Button(label, id=f"choice-{value}", compact=True)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        bid = event.button.id or ""
        self.dismiss(bid.removeprefix("choice-") if bid.startswith("choice-") else None)


def positive_number(text: str) -> str | None:
    try:
        value = float(text)
    except ValueError:
        return f"{text!r} is not a number"
    if value <= 0:
        return "give a positive number"
    return None
