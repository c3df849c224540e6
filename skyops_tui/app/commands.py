"""The command palette (`:` or ctrl+p): every key of the current screen and of the
app, plus jumps to any job or node and launches per mode."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

from .keys import KEYS, SCOPES, display


class SkyopsCommands(Provider):
    def commands(self) -> list[tuple[str, Callable, str]]:
        app = self.app
        screen = self.screen
        scope = getattr(screen, "SCOPE", "")
        out: list[tuple[str, Callable, str]] = []
        for k in KEYS:
            if not k.palette or k.scope not in ("app", scope):
                continue
            target = app if k.scope == "app" else screen
            where = SCOPES[k.scope]
            out.append(
                (
                    f"{where}: {k.description}",
                    partial(app.run_action, k.action, target),
                    f"key {display(k.keys)}",
                )
            )
        runtime = getattr(app, "runtime", None)
        if runtime is None:
            return out
        show_job = getattr(app, "show_job", None)
        show_node = getattr(app, "show_node", None)
        launch = getattr(app, "launch", None)
        if launch is not None:
            for mode in ("priority", "commit", "flex"):
                out.append(
                    (
                        f"Launch a {mode.capitalize()} job",
                        partial(launch, mode),
                        "opens the launch form",
                    )
                )
        if show_job is not None:
            for job in runtime.grid.jobs.values():
                out.append(
                    (
                        f"Job {job.name}",
                        partial(show_job, job.id),
                        f"#{job.id} {job.mode} {job.state} ({job.user})",
                    )
                )
        if show_node is not None:
            for node in runtime.grid.nodes.values():
                out.append(
                    (
                        f"Node {node.name}",
                        partial(show_node, node.name),
                        f"{node.gpu_count} x {node.gpu_type}, {node.status}",
                    )
                )
        return out

    async def discover(self) -> Hits:
        for name, callback, help_text in self.commands():
            yield DiscoveryHit(name, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, callback, help_text in self.commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), callback, help=help_text)
