"""What colour means on every screen, in one place.

Colours themselves live in `skyops.tcss` as theme variables; Python only names the
component classes (`mode--flex`, `load--heavy`...) and asks the widget for their style,
so a theme change recolours everything and no colour is written twice.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.style import Style
from rich.text import Text

from ..domain.model import Job, JobState, Mode, Node, NodeStatus

MODE_CLASSES = {m: f"mode--{m.value}" for m in Mode}
MODE_LABEL = {Mode.PRIORITY: "Priority", Mode.COMMIT: "Commit", Mode.FLEX: "Flex"}
MODE_SHORT = {Mode.PRIORITY: "PRI", Mode.COMMIT: "COM", Mode.FLEX: "FLX"}

# What holds a GPU: the letter drawn in its cell and the component class colouring it.
GPU_KINDS = ("priority", "commit", "flex", "free", "reserved", "down")
GPU_GLYPH = {
    "priority": "P",
    "commit": "C",
    "flex": "F",
    "free": "·",
    "reserved": "r",
    "down": "x",
}
GPU_MEANING = {
    "priority": "Priority job (exclusive)",
    "commit": "Commit job in its reserved window",
    "flex": "Flex job (interruptible, by bid)",
    "free": "free",
    "reserved": "reserved for a Commit window, idle (lent to Flex)",
    "down": "node down or unreachable",
}

STATE_CLASS = {
    JobState.QUEUED: "state--waiting",
    JobState.STARTING: "state--starting",
    JobState.RUNNING: "state--running",
    JobState.PREEMPTING: "state--preempting",
    JobState.PAUSED: "state--paused",
    JobState.SUCCEEDED: "state--ended",
    JobState.FAILED: "state--failed",
    JobState.CANCELLED: "state--ended",
    JobState.EXPIRED: "state--ended",
}
NODE_CLASS = {
    NodeStatus.UP: "node--up",
    NodeStatus.DEGRADED: "node--degraded",
    NodeStatus.UNREACHABLE: "node--down",
}
LOAD_CLASSES = ("load--light", "load--moderate", "load--heavy", "load--na")

# Meanings the theme has no colour of its own for. textual-dark's $warning is its
# $accent, the Priority orange: moderate load, a preempting job and the clearing price
# would all read as Priority. Each gets its own here, as theme variables a theme may
# override (SkyopsApp.get_theme_variable_defaults); (on dark, on light).
MEANING_COLOURS: dict[str, tuple[str, str]] = {
    "skyops-moderate": ("#e6d23c", "#8a7300"),  # moderate load: yellow
    "skyops-preempting": ("#d770e0", "#9a2ca6"),  # preempting: magenta
    "skyops-clearing": ("#3cc6d0", "#00717a"),  # the Flex clearing price: cyan
}


def meaning_colours(dark: bool) -> dict[str, str]:
    return {name: pair[0 if dark else 1] for name, pair in MEANING_COLOURS.items()}


COMPONENT_CLASSES: set[str] = {
    *MODE_CLASSES.values(),
    *(f"gpu--{k}" for k in GPU_KINDS),
    *STATE_CLASS.values(),
    *NODE_CLASS.values(),
    *LOAD_CLASSES,
    "tag--fake",
    "tag--muted",
    "tag--key",
    "tag--warning",
    "tag--error",
    "tag--section",
    "topbar--title",
    "topbar--view",
}


@dataclass(frozen=True, slots=True)
class LoadThresholds:
    """Where light becomes moderate and moderate becomes heavy, in percent (nvitop's
    defaults). The console takes them as a constructor argument so operators can set them."""

    util: tuple[int, int] = (10, 75)
    memory: tuple[int, int] = (10, 80)

    def level(self, percent: float | None, kind: str = "util") -> str:
        if percent is None:
            return "load--na"
        low, high = self.util if kind == "util" else self.memory
        if percent < low:
            return "load--light"
        if percent < high:
            return "load--moderate"
        return "load--heavy"


DEFAULT_THRESHOLDS = LoadThresholds()


class Painter:
    """Looks up component-class styles. They are declared once per screen, on its
    `Swatch` (see widgets/chrome.py), rather than on every widget: each declared class
    costs a style computation per widget on every CSS update."""

    def __init__(self, widget) -> None:
        self.source = _swatch_for(widget)
        self.cache: dict[str, Style] = {}

    def __call__(self, name: str) -> Style:
        style = self.cache.get(name)
        if style is None:
            style = Style()
            if self.source is not None:
                try:
                    style = self.source.get_component_rich_style(name, partial=True)
                except (KeyError, AttributeError):
                    pass
            self.cache[name] = style
        return style

    def text(self, value: str, name: str) -> Text:
        return Text(value, style=self(name))

    def mode(self, mode: Mode, short: bool = False) -> Text:
        label = MODE_SHORT[mode] if short else MODE_LABEL[mode]
        return self.text(label, MODE_CLASSES[mode])

    def state(self, state: JobState) -> Text:
        return self.text(str(state), STATE_CLASS[state])

    def node_status(self, status: NodeStatus) -> Text:
        return self.text(str(status), NODE_CLASS[status])

    def bar(
        self,
        percent: float | None,
        width: int,
        thresholds: LoadThresholds,
        kind: str = "util",
        label: str | None = None,
    ) -> Text:
        """A load bar like nvitop's: filled part coloured by load level, then the figure."""
        level = thresholds.level(percent, kind)
        out = Text()
        if percent is None:
            out.append("N/A".ljust(width), self("load--na"))
        else:
            filled = round(max(0.0, min(percent, 100.0)) / 100 * width)
            out.append("█" * filled, self(level))
            out.append("░" * (width - filled), self("tag--muted"))
        if label is None:
            label = "N/A" if percent is None else f"{percent:3.0f}%"
        out.append(" " + label, self(level) if percent is not None else self("load--na"))
        return out


def state_class(state: str | None) -> str:
    """The component class of a job or node state given as text (from an Event)."""
    if state is None:  # neither enum has a None value
        return "tag--muted"
    try:
        return STATE_CLASS[JobState(state)]
    except ValueError:
        pass
    try:
        return NODE_CLASS[NodeStatus(state)]
    except ValueError:
        return "tag--muted"


def gpu_kind(node: Node, index: int, jobs: dict[int, Job]) -> str:
    """What holds GPU `index` of `node`, as one of GPU_KINDS."""
    if node.status is NodeStatus.UNREACHABLE:
        return "down"
    holder = node.holders[index]
    if holder is not None:
        job = jobs.get(holder)
        return job.mode.value if job is not None else "priority"
    if node.reserved[index] is not None:
        return "reserved"
    return "free"


def _swatch_for(widget):
    """The Swatch of the widget's screen (cached on the screen), or None."""
    from textual.screen import Screen

    if "mode--flex" in type(widget)._get_component_classes():
        return widget
    try:
        screen = widget if isinstance(widget, Screen) else widget.screen
    except Exception:  # not mounted yet
        return None
    cached = getattr(screen, "_palette_swatch", None)
    if cached is not None and cached.is_attached:
        return cached
    for node in screen.query("Swatch"):
        screen._palette_swatch = node
        return node
    return None
