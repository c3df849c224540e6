"""The console's footer: Textual's `Footer`, rebuilt only when someone can see it.

Textual's `Footer` recomposes (one `FooterKey` mounted and styled per binding) every
time its screen publishes a bindings change. A screen switch publishes two or three:
the suspended screen's (its stack changed), the resumed screen's and a focus change;
so every switch rebuilt footers nobody could see, and rebuilt the shown one with the
very keys it already showed. That was most of a switch's CPU (docs/benchmarks.md §11).

`ScreenFooter` shows exactly what `Footer` shows (its `compose` is Textual's); it only
recomposes when its screen is on view (the current screen, or one seen under a modal
dialog) and the keys it would show differ from the ones it shows. A footer whose screen
is away remembers that its keys may have changed; the screen's resume publishes a
bindings change as it comes back, and the footer then rebuilds once if they did."""

from __future__ import annotations

from collections.abc import Hashable

from textual.screen import Screen
from textual.widgets import Footer


class ScreenFooter(Footer):
    """A `Footer` that recomposes only while its screen is on view, and only when the
    keys it would show changed."""

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self._shown: Hashable | None = None  # the keys of the last compose
        self._pending = False  # a bindings change not yet looked at

    def on_view(self) -> bool:
        """True when this footer's screen is the current one, or shows through the
        screens above it (a dialog's see-through background)."""
        screen = self.screen
        for shown in reversed(self.app.screen_stack):
            if shown is screen:
                return True
            if shown.styles.background.a == 1:
                return False  # an opaque screen hides the ones under it
        return False

    def keys(self) -> Hashable:
        """Everything `Footer.compose` reads: equal keys compose the same widgets."""
        app = self.app
        active = self.screen.active_bindings
        shown = tuple(
            (
                binding.key,
                app.get_key_display(binding),
                binding.description,
                binding.action,
                enabled,
                tooltip,
                binding.tooltip,
                None
                if binding.group is None
                else (binding.group.description, binding.group.compact, id(binding.group)),
            )
            for (_, binding, enabled, tooltip) in active.values()
            if binding.show
        )
        palette: Hashable = None
        if self.show_command_palette and app.ENABLE_COMMAND_PALETTE:
            found = active.get(app.COMMAND_PALETTE_BINDING)
            if found is not None:
                _, binding, enabled, _ = found
                palette = (
                    binding.key,
                    app.get_key_display(binding),
                    binding.description,
                    binding.action,
                    enabled,
                    binding.tooltip,
                )
        return shown, palette

    def bindings_changed(self, screen: Screen) -> None:
        self._bindings_ready = True
        if not screen.app.app_focus:
            return
        if not self.is_attached or screen is not self.screen:
            return
        self._pending = True
        if self.on_view():
            self.call_after_refresh(self._recompose_if_changed)

    async def _recompose_if_changed(self) -> None:
        if not self._pending or not self.is_attached or not self.on_view():
            return  # handled already, or the screen went away: its resume comes back
        self._pending = False
        keys = self.keys()
        if keys == self._shown:
            return
        self._shown = keys
        await self.recompose()
