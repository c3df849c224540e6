"""Command line: ``skyops-agent serve --stdio | shim | inventory | version``."""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse


def _parser() -> argparse.ArgumentParser:
    import argparse

    parser = argparse.ArgumentParser(
        prog="skyops-agent", description="The Skyops agent for one GPU box."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    serve = sub.add_parser("serve", help="speak the agent protocol (JSON lines)")
    serve.add_argument("--stdio", action="store_true", required=True, help="over stdin/stdout")
    serve.add_argument("--state-dir", default=None, help="jobs and checkpoints live here")
    serve.add_argument("--fake-gpus", default=None, metavar="SPEC", help="e.g. 8xH100-80GB")
    serve.add_argument("--node-name", default=None, help="default: the host name")
    serve.add_argument(
        "--single-user",
        action="store_true",
        help="run every job as the agent's own user, even when it could switch users",
    )
    serve.add_argument(
        "--shim-supervisor",
        choices=("c", "python"),
        default="c",
        help="what waits out each job: the small C program built here (falling back to "
        "Python where it cannot be built), or always Python",
    )

    shim = sub.add_parser("shim", help="(internal) supervise one job")
    shim.add_argument("--job-dir", required=True)
    shim.add_argument("--wait-with", default=None, metavar="PATH")

    inventory = sub.add_parser("inventory", help="print this box's GPUs as JSON")
    inventory.add_argument("--fake-gpus", default=None, metavar="SPEC")
    inventory.add_argument("--node-name", default=None)

    version = sub.add_parser("version", help="print the agent and protocol versions")
    version.add_argument("--json", action="store_true")
    return parser


def _check_fake_spec(spec: str | None) -> str | None:
    """A clear one-line complaint for a bad --fake-gpus, or None."""
    if not spec:
        return None
    from skyops_agent.gpus import parse_fake_spec

    try:
        parse_fake_spec(spec)
    except ValueError as exc:
        return f"skyops-agent: {exc}"
    return None


def main(argv: list[str] | None = None) -> int:
    """`shim` goes straight to the shim, before anything else is imported: it stays
    resident for its job's whole life (shim.py)."""
    words = sys.argv[1:] if argv is None else list(argv)
    if words[:1] == ["shim"]:
        from skyops_agent.shim import main as shim_main

        return shim_main(words[1:])
    import json
    import platform

    from skyops_agent import __version__, protocol

    args = _parser().parse_args(words)
    if args.command == "version":
        from skyops_agent.zipapp import file_sha256, running_zipapp

        pyz = running_zipapp()
        info = {
            "agent_version": __version__,
            "protocol": protocol.PROTOCOL_VERSION,
            "python": platform.python_version(),
            "zipapp": pyz,
            "zipapp_sha256": file_sha256(pyz) if pyz else None,
        }
        if args.json:
            print(json.dumps(info, sort_keys=True))
        else:
            print(
                f"skyops-agent {__version__} (protocol {protocol.PROTOCOL_VERSION}, "
                f"Python {info['python']})"
            )
        return 0
    problem = _check_fake_spec(args.fake_gpus)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    if args.command == "inventory":
        import socket

        from skyops_agent.gpus import make_probe

        node_name = args.node_name or socket.gethostname()
        probe = make_probe(args.fake_gpus, node_name)
        print(json.dumps(dict(probe.inventory(), node_name=node_name), indent=2, sort_keys=True))
        probe.close()
        return 0
    from skyops_agent.jobs import default_state_dir
    from skyops_agent.server import serve_stdio

    return serve_stdio(
        args.state_dir or default_state_dir(),
        fake_gpus=args.fake_gpus,
        node_name=args.node_name,
        single_user=args.single_user,
        supervisor=args.shim_supervisor,
    )


if __name__ == "__main__":
    sys.exit(main())
