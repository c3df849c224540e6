"""The JSON a leader sends and journals (docs/architecture.md, *What a leader loads*):
json.dumps's text exactly, made with a fraction of the memory at its peak, since a
process keeps the heap it grew. A 2,000-job array's answer is the case in point."""

from __future__ import annotations

import json
import tracemalloc

import pytest

from skyops_tui.api import protocol as P
from skyops_tui.domain.jsontext import json_text
from skyops_tui.store import Store
from skyops_tui.store.control import command, enqueue, finish_command

JOBS = 2000


class Odd:
    def __str__(self) -> str:
        return "odd"


def answer(n: int = JOBS) -> dict:
    jobs = [{"id": i, "name": f"array-{i}", "state": "queued", "mode": "flex"} for i in range(n)]
    return {"jobs": jobs}


DOCUMENTS = [
    {},
    [],
    "text",
    2.5,
    None,
    answer(),
    list(range(256)),
    list(range(257)),
    tuple(range(1000)),
    {"a": [1.5, None, True, "é\u2028"] * 300, "b": {"c": [(1, 2)] * 600}},
    {1: "a key that is not a string", "s": [0] * 700},
    {"nested": [[i, {"k": [i] * 300}] for i in range(300)]},
    {"odd": [Odd()] * 300, "o": Odd()},
]


@pytest.mark.parametrize("doc", DOCUMENTS, ids=range(len(DOCUMENTS)))
@pytest.mark.parametrize("seps", [(", ", ": "), (",", ":")])
def test_the_text_is_json_dumps_text(doc, seps):
    assert json_text(doc, seps, str) == json.dumps(doc, separators=seps, default=str)


def peak_per_job(fn) -> float:
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        fn()
        return (tracemalloc.get_traced_memory()[1] - before) / JOBS
    finally:
        tracemalloc.stop()


def test_an_arrays_answer_is_sent_and_journaled_with_little_memory(tmp_path):
    result = answer()
    sent = peak_per_job(lambda: P.encode({"type": P.OK, "re": 1, "result": result}))
    assert sent < 300, f"encoding the answer peaked at {sent:.0f} bytes a job"
    assert json.loads(P.encode({"type": P.OK, "re": 1, "result": result}))["result"] == result

    store = Store(tmp_path / "state.db")
    cid = enqueue(store, "submit", {"count": JOBS}, "ops", 0.0)
    journaled = peak_per_job(lambda: finish_command(store, cid, "done", result, 1.0))
    assert journaled < 300, f"journaling the answer peaked at {journaled:.0f} bytes a job"
    row = command(store, cid)
    assert row is not None and row.result == result
    store.close()
