"""A follower console's view comes from the leader: through the socket's watch stream
it shows the same grid, events, transactions and price history; its commands go
through the socket, never blocking its loop."""

from __future__ import annotations

from pathlib import Path

from skyops_tui.clock import SystemClock
from skyops_tui.control.commands import Bid, Submit
from skyops_tui.domain.config import parse_config
from skyops_tui.domain.errors import Refused
from skyops_tui.domain.specs import JobSpec
from skyops_tui.runtime import Runtime
from skyops_tui.sim.agents import SimExecutor
from skyops_tui.store.db import Store
from tests.waiting import until

CONFIG = {
    "cluster": {"name": "watch", "tick_s": 0.1},
    "node_types": [{"name": "H100", "rate": 2.5}],
    "nodes": [{"name": "n", "fake_gpus": "8xH100-80GB", "count": 2}],
    "accounts": {"operators": ["ops"], "default_balance": 10000},
}


def console(path: Path) -> Runtime:
    clock = SystemClock()
    return Runtime(
        parse_config(CONFIG, "test config"),
        SimExecutor(clock, 5, 120),  # type: ignore[arg-type]
        clock=clock,
        store=Store(path),
        user="ops",
        socket_path=path.with_suffix(".sock"),
    )


def flex(name: str, bid: float, gpus: int = 8) -> JobSpec:
    return JobSpec(name=name, user="kim", mode="flex", gpus=gpus, gpu_type="H100", bid=bid,
                   argv=("true",), runtime=3600.0)  # fmt: skip


def view(rt: Runtime) -> tuple:
    jobs = sorted((j.name, str(j.state), j.bid, j.user) for j in rt.grid.jobs.values())
    prices = {t: list(pts) for t, pts in rt.feed.prices.items()}
    return jobs, list(rt.feed.events), [t.reason for t in rt.feed.transactions], prices


async def test_a_follower_shows_what_the_leader_shows(tmp_path):
    path = tmp_path / "state.db"
    leader, follower = console(path), console(path)
    await leader.start()
    await follower.start()
    try:
        assert leader.leader and not follower.leader
        # Commands from the follower go to the leader's socket.
        for k in range(3):
            await follower.call(Submit(spec=flex(f"sweep-{k}", 1.0 + k / 10)))
        await follower.call(Bid(ref="sweep-0", bid=2.5))
        try:
            await follower.call(Bid(ref="nope", bid=2.5))
        except Refused as e:
            assert "no job 'nope'" in str(e)
        else:
            raise AssertionError("a bid on no job was accepted")
        await until(lambda: follower._watching, "the follower watching the leader")
        await until(
            lambda: view(follower) == view(leader) and len(leader.feed.events) > 5,
            "the follower's grid, events, ledger and prices matching the leader's",
        )
        jobs, events, txs, prices = view(follower)
        assert ("sweep-0", "running", 2_500_000, "kim") in jobs
        assert any("by ops for kim" in e.cause for e in events if e.kind == "command")
        assert prices["H100"], "the price history came with the snapshot"
    finally:
        await follower.stop()
        await leader.stop()
        follower.store.close()
        leader.store.close()


async def test_the_follower_console_screens_match_the_leaders(tmp_path):
    """Both consoles' event logs, side by side in one test: the follower's screen
    shows the leader's events, rendered the same way."""
    from skyops_tui.app.app import SkyopsApp
    from skyops_tui.app.screens.events import EventsScreen
    from tests.app.harness import screen_text
    from tests.waiting import pilot_until

    path = tmp_path / "state.db"
    leader, follower = console(path), console(path)
    lead_app, follow_app = SkyopsApp(leader), SkyopsApp(follower)
    async with lead_app.run_test(size=(160, 50)) as lp:
        await pilot_until(lp, lambda: leader.leader and leader.api is not None, "leading")
        for k in range(3):
            leader.scheduler.submit(flex(f"job-{k}", 1.0 + k / 10, gpus=4), actor="ops")
        async with follow_app.run_test(size=(160, 50)) as fp:
            await pilot_until(fp, lambda: not follower.leader and follower._watching, "following")
            for pilot, app in ((lp, lead_app), (fp, follow_app)):
                await pilot.press("e")
                await pilot_until(pilot, lambda a=app: isinstance(a.screen, EventsScreen), "events")

            def body(app) -> list[str]:
                return [ln for ln in screen_text(app).splitlines() if "job-" in ln]

            await pilot_until(
                fp,
                lambda: body(follow_app) == body(lead_app) and len(body(lead_app)) >= 3,
                "the follower's event log matching the leader's",
            )
    follower.store.close()
    leader.store.close()


async def test_a_burst_of_changes_costs_the_follower_a_few_reloads_not_one_each(tmp_path):
    """Each change the leader announces asks the follower to reload its grid from the
    file; a busy leader announces one every few tens of ms, and a reload of a big grid
    holds the follower's loop (keys, frames) for tens of ms. A burst gets a reload at
    most every `follow_s / 4`, and the follower still ends showing every change."""
    import asyncio
    import time

    path = tmp_path / "state.db"
    leader, follower = console(path), console(path)
    await leader.start()
    await follower.start()
    loads = 0
    load = follower.store.load_grid

    def counted(*args, **kwargs):
        nonlocal loads
        loads += 1
        return load(*args, **kwargs)

    follower.store.load_grid = counted  # type: ignore[method-assign]
    try:
        await until(lambda: follower._watching, "the follower watching the leader")
        started, loads = time.perf_counter(), 0
        for k in range(40):  # 40 changes, 20 a second
            leader.scheduler.submit(flex(f"burst-{k}", 1.0 + k / 100, gpus=1), actor="ops")
            await asyncio.sleep(0.05)
        await until(
            lambda: sum(j.name.startswith("burst-") for j in follower.grid.jobs.values()) == 40,
            "the follower showing all 40 jobs",
        )
        elapsed = time.perf_counter() - started
        assert loads <= 4 * elapsed / follower.follow_s + 3, (loads, elapsed)
    finally:
        await follower.stop()
        await leader.stop()
        follower.store.close()
        leader.store.close()


async def test_a_follower_keeps_answering_while_it_reloads_the_grid(tmp_path):
    """A follower's reload (some 50 ms at 512 nodes, after each burst of the leader's
    changes) is read and built beside its loop: keys and frames go on meanwhile, and
    the follower then shows the grid it read. Here the store read is held open until
    the loop has shown it is free; a reload on the loop would hold it to the end."""
    import asyncio
    import threading

    path = tmp_path / "state.db"
    leader, follower = console(path), console(path)
    await leader.start()
    await follower.start()
    loading, release, loaded = threading.Event(), threading.Event(), threading.Event()
    load = follower.store.load_grid

    def held(*args, **kwargs):
        loading.set()
        release.wait(30.0)
        try:
            return load(*args, **kwargs)
        finally:
            loaded.set()

    try:
        await until(lambda: follower._watching, "the follower watching the leader")
        follower.store.load_grid = held  # type: ignore[method-assign]
        leader.scheduler.submit(flex("while-loading", 1.5, gpus=1), actor="ops")
        await until(loading.is_set, "the follower reloading its grid")
        # The loop is free while the reload is under way: a turn of it comes round.
        turned = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(turned.set_result, True)
        assert await asyncio.wait_for(turned, 2.0)
        assert not loaded.is_set(), "the loop was held until the reload ended"
        release.set()
        await until(
            lambda: any(j.name == "while-loading" for j in follower.grid.jobs.values()),
            "the follower showing the job its reload read",
        )
    finally:
        release.set()
        follower.store.load_grid = load  # type: ignore[method-assign]
        await follower.stop()
        await leader.stop()
        follower.store.close()
        leader.store.close()
