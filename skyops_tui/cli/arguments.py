"""The headless commands' arguments, apart from the commands (cli/headless.py): every
`skyops` run builds the whole parser, and `skyops serve` must not load what the
commands print with (rich) only to parse its own command line."""

from __future__ import annotations

import argparse

from ..domain.model import JobState, Mode


def add_headless_arguments(
    parser: argparse.ArgumentParser, subparsers: argparse._SubParsersAction
) -> None:
    g = parser.add_argument_group("headless (docs/headless.md)")
    g.add_argument("--apply", metavar="PLAN", help="make the grid match a plan file (TOML)")
    g.add_argument("--dry-run", action="store_true", help="with --apply: print, change nothing")
    g.add_argument("--wait", action="store_true", help="with --apply: wait for the plan's jobs")
    g.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    as_help = "operators: act for USER (logged naming both)"
    g.add_argument("--as", dest="as_user", metavar="USER", help="with --apply: " + as_help)

    def sub(name: str, help: str) -> argparse.ArgumentParser:
        p = subparsers.add_parser(name, help=help, description=help)
        # Also accepted after the command; SUPPRESS keeps a value given before it.
        p.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="JSON")
        p.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS)
        p.add_argument("--db", metavar="PATH", default=argparse.SUPPRESS)
        return p

    sub("status", "nodes and capacity per mode (like sinfo)")
    jobs = sub("jobs", "jobs and their state (like squeue); live jobs unless --all")
    jobs.add_argument("--all", action="store_true", help="ended jobs too")
    jobs.add_argument("--user", help="only this user's jobs")
    jobs.add_argument("--mode", choices=[m.value for m in Mode])
    jobs.add_argument("--state", choices=[s.value for s in JobState])

    logs = sub("logs", "a job's output (its latest run)")
    logs.add_argument("job", metavar="JOB", help="job name or id")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing until it ends")
    logs.add_argument("-n", "--lines", type=int, default=100, help="lines from the end")
    logs.add_argument("--stderr", action="store_true", help="the job's stderr, not stdout")

    cancel = sub("cancel", "cancel a job (or with --reservation, a reservation)")
    cancel.add_argument("job", metavar="NAME", help="job name or id, or a reservation name")
    cancel.add_argument("--reservation", action="store_true", help="NAME is a Commit reservation")
    cancel.add_argument("--as", dest="as_user", metavar="USER", help=as_help)

    submit = sub("submit", "submit a job (or an array of jobs) running COMMAND")
    submit.add_argument("--mode", choices=[m.value for m in Mode], default="flex")
    submit.add_argument("--name", help="job name (default: the program's name and a number)")
    submit.add_argument("--gpus", type=int, default=1)
    submit.add_argument("--gpu-type")
    submit.add_argument("--hours", type=float, help="priority: booking length")
    submit.add_argument("--bid", type=float, help="flex: currency per GPU-hour")
    submit.add_argument("--reservation", help="commit: the reservation it runs in")
    submit.add_argument("--array", type=int, metavar="N", help="N jobs NAME-0 .. NAME-N-1")
    submit.add_argument("--as", dest="as_user", metavar="USER", help=as_help)
    submit.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND...")

    quote = sub("quote", "price, discount and admission of a request, before committing")
    quote.add_argument("kind", choices=["priority", "commit", "flex", "reservation"])
    quote.add_argument("--gpus", type=int)
    quote.add_argument("--nodes", type=int)
    quote.add_argument("--gpu-type")
    quote.add_argument("--hours", type=float)
    quote.add_argument("--hourly", action="store_true")
    quote.add_argument("--auto-renew", action="store_true")
    quote.add_argument("--bid", type=float, help="Flex: currency per GPU-hour")
    quote.add_argument("--reservation", help="commit: the reservation the job runs in")
    quote.add_argument("--start", help="reservation: 2026-12-01T02:00:00Z or epoch seconds")
    quote.add_argument("--repeat", choices=["daily", "weekly"])
    quote.add_argument("--count", type=int)
    quote.add_argument("--user", help="the account (default: you)")
