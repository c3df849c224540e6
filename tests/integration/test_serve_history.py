"""A serving leader with a history longer than it keeps in memory (docs/store.md "Ended
jobs"): its oldest ended jobs answer as before (listed, refused a cancel, their names
taken), and `skyops jobs` asks it for the live jobs only."""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import sqlite3
import threading

from skyops_tui.api.protocol import API_VERSION
from skyops_tui.domain.config import Config
from skyops_tui.store.db import KEEP_ENDED, Store
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

        # A remote console's image of the state holds what the leader holds in memory:
        # the live job and about KEEP_ENDED ended ones (one not yet detached when the
        # others left stays a while longer), none of the history tables.
        doc = conns[0].ask("query", "state", {})
        image = tmp_path / "image.db"
        image.write_bytes(base64.b64decode(doc["image"]))
        with contextlib.closing(sqlite3.connect(image)) as db:
            states = dict(db.execute("SELECT name, state FROM jobs").fetchall())
            for table in ("events", "ledger_tx", "actions", "commands"):
                assert db.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,), table
        assert states.pop("live") == "queued" and set(states.values()) == {"cancelled"}
        assert KEEP_ENDED <= len(states) < ENDED, len(states)
        with Store(image) as store:  # as `fetch_state` opens it
            grid = store.load_grid(Config.model_validate(doc["config"]), doc["now"])
            assert grid.job_by_ref("live").id == live["id"]
            assert len(dict.keys(grid.jobs)) == len(states) + 1

        again = leader.cli("cancel", "old-0")
        assert again.returncode == 1 and "has already ended" in again.stderr, again.stderr
        argv = ["submit", "--name", "old-0", "--mode", "priority", "--hours", "1", "--", "true"]
        taken = leader.cli(*argv)
        assert taken.returncode == 1 and "exists already" in taken.stderr, taken.stderr
    finally:
        for c in conns:
            c.s.close()
        leader.stop()


def test_a_history_longer_than_a_page_is_listed_a_page_at_a_time(tmp_path):
    """`skyops jobs --all` asks for JOBS_PAGE jobs an answer (docs/api.md, paging): a
    listing longer than a page has every job once, in id order, across the jobs the
    leader keeps in memory and the ended ones it reads back from the store; a page
    chain by hand (`limit`, `after`, `next`) gives the same jobs."""
    from skyops_tui.cli.headless import JOBS_PAGE

    leader = Leader(tmp_path)
    leader.start()
    conn = None
    try:
        assert leader.cli("nodes", "drain", "node-a").returncode == 0
        conn = Conn(tmp_path / "state.sock")
        spec = {"name": "old", "mode": "priority", "hours": 1, "gpus": 1, "argv": ["true"]}
        spec["user"] = conn.hello["user"]
        old = conn.ask("command", "submit", {"spec": spec, "count": ENDED})["jobs"]
        for j in old:
            conn.ask("command", "cancel", {"ref": j["name"]})
        waiting = conn.ask("command", "submit", {"spec": {**spec, "name": "q"}, "count": JOBS_PAGE})
        ids = [j["id"] for j in old + waiting["jobs"]]
        assert len(ids) > JOBS_PAGE

        every = leader.json("jobs", "--all")
        assert [j["id"] for j in every] == ids
        assert [j["state"] for j in every] == ["cancelled"] * ENDED + ["queued"] * JOBS_PAGE

        chained, after, pages = [], 0, 0
        while after is not None:
            page = conn.ask("query", "jobs", {"limit": 700, "after": after})
            assert len(page["jobs"]) <= 700
            chained += [j["id"] for j in page["jobs"]]
            after, pages = page["next"], pages + 1
        assert chained == ids and pages == -(-len(ids) // 700)
        live = conn.ask("query", "jobs", {"live": True, "limit": 10, "after": ids[-3]})
        assert [j["id"] for j in live["jobs"]] == ids[-2:] and live["next"] is None

        for payload, field in (({"limit": 0}, "limit"), ({"after": -1}, "after")):
            conn.f.write((json.dumps({"v": API_VERSION, "type": "query", "id": 99,
                                      "kind": "jobs", "payload": payload}) + "\n").encode())  # fmt: skip
            conn.f.flush()
            reply = json.loads(conn.f.readline())
            assert reply["type"] == "error" and reply["message"].startswith(f"{field}:"), reply
    finally:
        if conn is not None:
            conn.s.close()
        leader.stop()
