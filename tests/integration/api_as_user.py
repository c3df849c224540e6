"""One request to the leader's socket, stdlib only: run by the system Python as
another Unix user in tests/integration/test_api_users.py (the project's own Python
lives under a folder other users cannot enter). Prints the hello and the reply, one
JSON object per line."""

import json
import socket
import sys

from skyops_tui.api.protocol import API_VERSION


def main() -> None:
    path, type_, kind, payload = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(path)
    f = s.makefile("rwb")
    print(f.readline().decode().strip())
    msg = {"v": API_VERSION, "type": type_, "id": 1, "kind": kind, "payload": json.loads(payload)}
    f.write((json.dumps(msg) + "\n").encode())
    f.flush()
    print(f.readline().decode().strip())


if __name__ == "__main__":
    main()
