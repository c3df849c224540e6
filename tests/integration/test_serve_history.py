"""A serving leader with a history longer than it keeps in memory (docs/store.md "Ended
jobs"): its oldest ended jobs answer as before (listed, refused a cancel, their names
taken), and `skyops jobs` asks it for the live jobs only."""

from __future__ import annotations

import json
import socket
import threading

from skyops_tui.api.protocol import API_VERSION
from skyops_tui.store.db import KEEP_ENDED
from tests.integration.serve import Leader

ENDED = KEEP_ENDED + 10


class Conn:
    def __init__(self, path) -> None:
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(60)
        self.s.connect(str(path))
        self.f = self.s.makefile("rwb")
        self.hello = json.loads(self.f.readline())
        self.n = 0

    def ask(self, type_: str, kind: str, payload: dict) -> dict:
        self.n += 1
        msg = {"v": API_VERSION, "type": type_, "id": self.n, "kind": kind, "payload": payload}
        self.f.write((json.dumps(msg) + "\n").encode())
        self.f.flush()
        reply = json.loads(self.f.readline())
        assert reply["type"] == "ok", reply
        return reply["result"]


def test_old_ended_jobs_answer_as_before_and_jobs_asks_for_the_live_ones(tmp_path):
    leader = Leader(tmp_path)
    leader.start()
    conns: list[Conn] = []
    try:
        assert leader.cli("nodes", "drain", "node-a").returncode == 0
        conns = [Conn(tmp_path / "state.sock") for _ in range(4)]
        spec = {"name": "old", "mode": "priority", "hours": 1, "gpus": 1, "argv": ["true"]}
        spec["user"] = conns[0].hello["user"]
        conns[0].ask("command", "submit", {"spec": spec, "count": ENDED})
        live = conns[0].ask("command", "submit", {"spec": {**spec, "name": "live"}})
        names = [f"old-{i}" for i in range(ENDED)]

        def cancel(c: Conn, mine: list[str]) -> None:
            for n in mine:
                c.ask("command", "cancel", {"ref": n})

        threads = [
            threading.Thread(target=cancel, args=(c, names[k::4])) for k, c in enumerate(conns)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

        every = leader.json("jobs", "--all")
        assert [j["name"] for j in every] == [*names, "live"]
        assert {j["state"] for j in every[:-1]} == {"cancelled"}
        assert [j["name"] for j in leader.json("jobs")] == ["live"]
        # The leader answers `skyops jobs` with its live jobs, not the whole history.
        asked = conns[0].ask("query", "jobs", {"live": True})["jobs"]
        assert [j["id"] for j in asked] == [live["id"]]
        asked = conns[0].ask("query", "jobs", {"names": ["old-0", "nope", "live"]})["jobs"]
        assert [j["name"] for j in asked] == ["old-0", "live"]

        again = leader.cli("cancel", "old-0")
        assert again.returncode == 1 and "has already ended" in again.stderr, again.stderr
        argv = ["submit", "--name", "old-0", "--mode", "priority", "--hours", "1", "--", "true"]
        taken = leader.cli(*argv)
        assert taken.returncode == 1 and "exists already" in taken.stderr, taken.stderr
    finally:
        for c in conns:
            c.s.close()
        leader.stop()
