"""`skyops`: the console, the simulator and the scripting commands.

Every failure a person can cause (bad file, bad value, refused command) ends in a
message naming the file, key and reason, and a non-zero exit code; never a traceback.
So does a state store that cannot be used (exit 4), and a reader that stops reading
(`skyops jobs | head -1`): the rest of the output is dropped, exit 141 as for a
process killed by SIGPIPE.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sqlite3
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .. import __version__
from ..domain.config import Config, demo_config, load_config
from ..domain.errors import InputError, Refused
from ..domain.money import fmt
from ..store.schema import StoreError

if TYPE_CHECKING:
    from rich.console import Console

EXIT_OK, EXIT_REFUSED, EXIT_INVALID, EXIT_JOB_FAILED, EXIT_STORE = 0, 1, 2, 3, 4
# 128 + SIGPIPE: what a shell reports for `yes | head -1`'s yes.
EXIT_PIPE = 141


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="skyops",
        description="Operator console for a self-hosted GPU grid (Priority, Commit, Flex).",
    )
    p.add_argument("--version", action="version", version=f"skyops {__version__}")
    p.add_argument("--config", metavar="FILE", help="cluster config (default: the demo grid)")
    p.add_argument("--db", metavar="PATH", help="state database (default: under the XDG data dir)")
    p.add_argument("--readonly", action="store_true", help="show everything, change nothing")
    p.add_argument(
        "--connect",
        metavar="URL",
        help="ssh://user@head[:port][/socket]: the head node's scheduler, through SSH "
        "(default socket /run/skyops/api.sock)",
    )
    p.add_argument(
        "--known-hosts",
        dest="connect_known_hosts",
        metavar="FILE",
        help="with --connect: default ~/.ssh/known_hosts",
    )
    p.add_argument(
        "--identity", dest="connect_identity", metavar="FILE", help="with --connect: SSH key"
    )
    sub = p.add_subparsers(dest="command")

    sim = sub.add_parser("simulate", help="run a workload trace through the real scheduler")
    sim.add_argument(
        "trace", nargs="?", help="JSON Lines trace (docs/simulator.md); omit with --demo"
    )
    sim.add_argument("--demo", action="store_true", help="simulate a built-in day on the demo grid")
    sim.add_argument("--json", action="store_true", help="print the summary as JSON")

    serve = sub.add_parser("serve", help="run the scheduler without the screen (lead or stand by)")
    serve.add_argument(
        "--for",
        dest="duration",
        type=float,
        metavar="SECONDS",
        help="stop after this long (default: until interrupted)",
    )

    nodes = sub.add_parser("nodes", help="the GPU boxes in the config")
    nodes_sub = nodes.add_subparsers(dest="nodes_command", required=True)
    check = nodes_sub.add_parser("check", help="connect to every node and show what it has")
    check.add_argument("--known-hosts", metavar="FILE", help="default: ~/.ssh/known_hosts")
    check.add_argument("--json", action="store_true", help="print the results as JSON")
    drain = nodes_sub.add_parser("drain", help="operators: place nothing new on NODE")
    drain.add_argument("node", metavar="NODE")
    drain.add_argument("--reason", default="", metavar="TEXT", help="logged with your name")
    undrain = nodes_sub.add_parser("undrain", help="operators: let NODE take work again")
    undrain.add_argument("node", metavar="NODE")
    for cmd in (drain, undrain):
        cmd.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="JSON")
    for cmd in (sim, serve, nodes, check, drain, undrain):
        _globals_after(cmd)
    from .arguments import add_headless_arguments

    add_headless_arguments(p, sub)
    return p


def _globals_after(cmd: argparse.ArgumentParser) -> None:
    """The global options are accepted after the command too (`skyops simulate TRACE
    --config FILE`, as the README prints it); SUPPRESS keeps a value given before it."""
    cmd.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS, help="as above")
    cmd.add_argument("--db", metavar="PATH", default=argparse.SUPPRESS, help="as above")
    cmd.add_argument("--readonly", action="store_true", default=argparse.SUPPRESS)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    faults = StoreFaults()
    # A command's one-line fault report stands for its scheduler's warning; a service
    # (`serve`) or a console keeps logging faults as they come.
    one_shot = args.command not in (None, "serve") or getattr(args, "apply", None) is not None
    if logging.lastResort is not None:  # logging sets it at import; nothing here unsets it
        logging.lastResort.setFormatter(OneLine())
        if one_shot:
            logging.lastResort.addFilter(faults)
    code = EXIT_STORE
    try:
        code = _run(args)
        return code
    except BrokenPipeError:
        _drop_output()
        return EXIT_PIPE
    finally:
        if logging.lastResort is not None:
            logging.lastResort.removeFilter(faults)
            if code != EXIT_STORE:
                faults.release()


class StoreFaults(logging.Filter):
    """A command that fails because the state database is unusable says so in one line
    (exit 4, docs/headless.md); the scheduler it led for the moment had already logged
    the same fault as a warning. So that warning is held back: shown once the database
    is back (with the "available again" that follows it), or at exit when the command
    did not end on the fault; dropped when the exit-4 line says it."""

    FAULT, BACK = "state database unavailable", "state database available again"

    def __init__(self) -> None:
        super().__init__()
        self.held: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if text.startswith(self.FAULT):
            self.held.append(record)
            return False
        if text.startswith(self.BACK):
            self.release()
        return True

    def release(self) -> None:
        held, self.held = self.held, []
        handler = logging.lastResort
        if handler is not None:
            for record in held:
                handler.emit(record)  # not handle(): that would hold it again


class OneLine(logging.Formatter):
    """Warnings the scheduler logs while a command runs (a pass that could not be
    written, say) as one line each: the reason, never a traceback."""

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            e = record.exc_info[1]
            text += f": {type(e).__name__}: {e}"
        return f"{record.levelname.lower()}: {text}"


def _drop_output() -> None:
    """The reader has gone: send what is left, and the flush at exit, nowhere, so
    Python prints no 'Exception ignored' on the way out."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        try:
            os.dup2(devnull, stream.fileno())
        except (OSError, ValueError):
            pass


def _stdout() -> Console:
    """Rich, loaded by the commands that print with it: `skyops serve` prints one plain
    line and does not hold rich's 2 MB for it (docs/architecture.md)."""
    from rich.console import Console

    class Stdout(Console):
        """Rich's own answer to a closed pipe is exit 1, which means "refused" here."""

        def on_broken_pipe(self) -> None:
            raise BrokenPipeError

    return Stdout()


def _stderr() -> Console:
    from rich.console import Console

    return Console(stderr=True)


def _for_apply(args: argparse.Namespace) -> bool:
    """--apply, --dry-run or --wait given: headless.dispatch runs or refuses them,
    whatever the command."""
    return any(getattr(args, flag, None) for flag in ("apply", "dry_run", "wait"))


def _run(args: argparse.Namespace) -> int:
    tunnel = None
    try:
        if getattr(args, "connect", None):
            if args.command in ("simulate", "serve") or (
                args.command == "nodes" and args.nodes_command == "check"
            ):
                raise InputError(
                    [f"--connect: not for `skyops {args.command}` (run it on the head)"]
                )
            from ..api.remote import Tunnel, parse_connect

            tunnel = Tunnel(
                parse_connect(args.connect), args.connect_known_hosts, args.connect_identity
            )
            args.connect_socket = tunnel.start()
            if getattr(args, "apply", None) is None and args.command is None:
                from .console import run_remote_console

                return run_remote_console(
                    args.connect_socket,
                    args.connect,
                    load_config(args.config) if args.config else None,
                )
        if args.command == "serve" and not _for_apply(args):
            from .console import serve

            return serve(load_config(args.config) if args.config else None, args.db, args.duration)
        out = _stdout()
        from .headless import dispatch

        if (code := dispatch(args, out)) is not None:
            return code
        if args.command == "simulate":
            return cmd_simulate(args, out)
        if args.command == "nodes" and args.nodes_command in ("drain", "undrain"):
            from .headless import cmd_drain

            return cmd_drain(args, out)
        if args.command == "nodes":
            from .nodes import run_nodes_check

            if not args.config:
                raise InputError(["nodes check: give the cluster config with --config FILE"])
            return run_nodes_check(
                load_config(args.config), args.known_hosts, out, as_json=args.json
            )
        from .console import run_console

        return run_console(
            load_config(args.config) if args.config else None, args.db, args.readonly
        )
    except InputError as e:
        err = _stderr()
        for m in e.messages:
            err.print(f"[bold red]error:[/] {m}", highlight=False, markup=True)
        return EXIT_INVALID
    except Refused as e:
        _stderr().print(f"[bold red]refused:[/] {e}", highlight=False)
        return EXIT_REFUSED
    except (StoreError, sqlite3.Error) as e:
        from .headless import report_store_error

        return report_store_error(args, e)
    except KeyboardInterrupt:
        return 130
    finally:
        if tunnel is not None:
            tunnel.close()


def _config(args: argparse.Namespace) -> Config:
    return load_config(args.config) if args.config else demo_config()


def cmd_simulate(args: argparse.Namespace, out: Console) -> int:
    from ..sim.demo import demo_trace
    from ..sim.simulator import simulate
    from ..sim.trace import read_trace

    if args.trace:
        trace = read_trace(args.trace)
    elif args.demo:
        trace = demo_trace()
    else:
        raise InputError(["simulate: give a TRACE file, or --demo"])
    cfg = _config(args)
    if args.json or not out.is_terminal:
        result = simulate(trace, cfg)
    else:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=out,
            transient=True,
        ) as bar:
            task = bar.add_task("simulating", total=len(trace))
            result = simulate(trace, cfg, progress=lambda i, n: bar.update(task, completed=i))
    summary = result.summary
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        # Refused lines are part of the outcome, not a failure of the run: each is told
        # on stderr, named by file and line, and the summary counts them.
        err = _stderr()
        source = args.trace or "demo"
        for r in summary["refused"]:
            err.print(
                f"[yellow]refused:[/] {source}:{r['line']}: {r['name'] or r['kind']}: "
                f"{r['reason']}",
                highlight=False,
            )
        _print_summary(out, summary, cfg.cluster.currency, args.trace or "built-in demo day")
    return EXIT_OK if not summary["violations"] else EXIT_REFUSED


def _print_summary(out: Console, s: dict, cur: str, source: str) -> None:
    from rich.table import Table

    t = Table(title=f"Simulation of {source}", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column(justify="right")
    for key in ("jobs", "succeeded", "failed", "expired", "cancelled", "unfinished", "preemptions"):
        t.add_row(key, str(s[key]))
    t.add_row("refused lines", str(s["refused_lines"]))
    t.add_row("GPU-hours used", f"{s['gpu_hours_used']:,.1f}")
    t.add_row("GPU utilisation", f"{s['gpu_utilization']:.1%}")
    t.add_row("work lost (GPU-h)", f"{s['lost_work_gpu_hours']:,.2f}")
    for mode in ("priority", "commit", "flex"):
        t.add_row(
            f"wait {mode} mean / p95",
            f"{s['mean_wait_s'][mode]:,.0f} s / {s['p95_wait_s'][mode]:,.0f} s",
        )
    t.add_row("revenue", fmt(s["revenue"], cur))
    t.add_row("refunds and credits", fmt(s["refunds"], cur))
    t.add_row("ledger sum", str(s["ledger_sum"]))
    t.add_row("simulated", f"{s['simulated_s'] / 3600:,.1f} h in {s['wall_s']:.2f} s wall")
    v = s["violations"]
    t.add_row("violations", "[green]none[/]" if not v else f"[red]{len(v)}[/]")
    out.print(t)
    for line in v[:20]:
        out.print(f"[red]violation:[/] {line}")


if __name__ == "__main__":
    sys.exit(main())
