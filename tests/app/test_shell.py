"""The frame: start-up, top bar, demo banner, view keys, help, palette, read-only."""

from __future__ import annotations

from textual.widgets import Input

from skyops_tui.app.screens.grid import GridScreen
from skyops_tui.app.screens.help import HelpScreen
from skyops_tui.app.screens.jobs import JobsScreen
from skyops_tui.app.screens.launch import LaunchScreen
from skyops_tui.app.widgets.chrome import DEMO_TEXT, DemoBanner, StatusLine, TopBar
from skyops_tui.demo import advance
from tests.app.harness import demo_app, demo_runtime, screen_text, toasts, wait_for
from tests.helpers import one_local_node_config
from tests.waiting import until


async def test_starts_on_the_grid_with_frame_and_running_scheduler():
    app = demo_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, GridScreen), "grid screen shown")
        bar = str(app.screen.query_one(TopBar).render())
        assert "demo" in bar and "ops (operator)" in bar
        assert "2026-11-25 09:00:00 UTC" in bar
        assert " ".join(str(app.screen.query_one(DemoBanner).render()).split()) == DEMO_TEXT
        status = str(app.screen.query_one(StatusLine).render())
        assert "6 running" in status and "2 queued" in status
        await wait_for(pilot, lambda: app.runtime.local._task is not None, "scheduler started")
    assert app.runtime.local._task is None  # stopped on unmount


async def test_a_user_who_is_not_an_operator_is_shown_so():
    app = demo_app(runtime=demo_runtime(operator=False))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, GridScreen), "grid")
        assert "ops (user)" in str(app.screen.query_one(TopBar).render())


async def test_view_keys_switch_screens_and_esc_goes_back():
    app = demo_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, GridScreen), "grid shown")
        for key, view in [
            ("j", "jobs"),
            ("n", "launch"),
            ("m", "market"),
            ("r", "reservations"),
            ("L", "ledger"),
            ("e", "events"),
            ("g", "grid"),
        ]:
            if isinstance(app.screen.focused, Input):
                app.screen.set_focus(None)
            await pilot.press(key)
            await wait_for(pilot, lambda v=view: app.current_mode == v, f"{key} opens {view}")
            await wait_for(pilot, lambda: app.screen.query(TopBar), f"{view} has the top bar")
        await pilot.press("j")
        await wait_for(pilot, lambda: isinstance(app.screen, JobsScreen), "jobs shown")
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, GridScreen), "esc back to grid")


async def test_help_lists_every_key_and_the_colours():
    from skyops_tui.app.keys import KEYS, display

    app = demo_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), "help opens on ?")
        text = screen_text(app)
        for k in KEYS:
            assert k.description in text, k
            assert display(k.keys) in text, k
        for word in ("Priority", "Commit", "Flex", "reserved idle", "light", "heavy", "FAKE"):
            assert word in text
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, GridScreen), "esc closes help")


async def test_keymap_moves_a_key_and_help_shows_it():
    app = demo_app(keymap={"app.jobs": "J"})
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.press("J")
        await wait_for(pilot, lambda: isinstance(app.screen, JobsScreen), "J opens jobs")
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), "help")
        assert "J" in screen_text(app)


async def test_command_palette_runs_an_action():
    app = demo_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("colon")
        await wait_for(
            pilot, lambda: app.screen.__class__.__name__ == "CommandPalette", "palette opens on :"
        )
        await pilot.press(*"launch a flex")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, LaunchScreen), "launch screen")
        await wait_for(pilot, lambda: app.screen.mode.value == "flex", "flex picked")


async def test_palette_jumps_to_a_job():
    app = demo_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("ctrl+p")
        await wait_for(
            pilot,
            lambda: app.screen.__class__.__name__ == "CommandPalette",
            "palette opens on ctrl+p",
        )
        await pilot.press(*"job sweep-02")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_for(
            pilot, lambda: getattr(app.screen, "job_id", None) == 5, "sweep-02's detail opens"
        )


async def test_readonly_refuses_changes_with_a_message():
    rt = demo_runtime()
    rt.readonly = True
    app = demo_app(runtime=rt)
    async with app.run_test(size=(120, 40)) as pilot:
        assert "READ-ONLY" in str(app.screen.query_one(TopBar).render())
        await pilot.press("j")
        await wait_for(pilot, lambda: isinstance(app.screen, JobsScreen), "jobs")
        for key in ("ctrl+d", "x", "b"):
            await pilot.press(key)
            await pilot.pause()
        assert isinstance(app.screen, JobsScreen)  # no dialog opened
        msgs = toasts(app, "warning")
        assert len(msgs) == 3 and all("Read-only console" in m for m in msgs)
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, LaunchScreen), "launch")
        n_jobs = len(rt.grid.jobs)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: len(toasts(app, "warning")) == 4, "launch refused")
        assert len(rt.grid.jobs) == n_jobs


async def test_screens_follow_simulated_time():
    app = demo_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, GridScreen), "grid")
        advance(app.runtime, 90)
        await wait_for(
            pilot,
            lambda: "09:01:30" in str(app.screen.query_one(TopBar).render()),
            "top bar clock moves with the grid's clock",
        )


async def test_status_line_shows_what_the_executor_is_busy_with():
    app = demo_app()
    app.runtime.executor.status_line = lambda: "reconnecting to h100-b"
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(
            pilot,
            lambda: "reconnecting to h100-b" in str(app.screen.query_one(StatusLine).render()),
            "executor note in the status line",
        )


LEADER_CONFIG = one_local_node_config("follow")


async def test_a_follower_console_sends_commands_without_freezing(tmp_path):
    """A console that follows sends its commands to the leader's socket; while the
    leader is slow to answer (stopped with SIGSTOP) the console's loop keeps turning."""
    import asyncio
    import os
    import signal
    import subprocess
    import sys
    import time

    from skyops_tui.app.app import SkyopsApp
    from skyops_tui.cli.console import build_runtime
    from skyops_tui.domain.config import load_config

    (tmp_path / "config.toml").write_text(LEADER_CONFIG)
    db = tmp_path / "state.db"
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data"), "SKYOPS_USER": "ops"}
    argv = [sys.executable, "-m", "skyops_tui", "--config", str(tmp_path / "config.toml")]
    log = (tmp_path / "leader.log").open("w")
    leader = subprocess.Popen([*argv, "--db", str(db), "serve"], stdout=log, stderr=log, env=env)
    try:
        await until(
            lambda: "leading" in (tmp_path / "leader.log").read_text(), "the leader started", 30
        )
        rt = build_runtime(load_config(str(tmp_path / "config.toml")), db, user="ops")
        app = SkyopsApp(rt)
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(pilot, lambda: not rt.leader and rt._watching, "following, watching")
            await pilot.press("n")
            await wait_for(pilot, lambda: isinstance(app.screen, LaunchScreen), "launch")
            leader.send_signal(signal.SIGSTOP)
            lags: list[float] = []
            try:
                await pilot.press("ctrl+s")
                await wait_for(pilot, lambda: any("Queued" in t for t in toasts(app)), "queued")
                app.screen.set_focus(None)  # out of the name field, where ? is a letter
                await pilot.press("question_mark")  # the UI answers while the leader is stuck
                await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), "help opens")
                end = time.monotonic() + 2.0
                while time.monotonic() < end:
                    t0 = time.monotonic()
                    await asyncio.sleep(0.01)
                    lags.append(time.monotonic() - t0 - 0.01)
            finally:
                leader.send_signal(signal.SIGCONT)
            # A loop that waited on the stopped leader would stall for the whole window.
            assert max(lags) < 1.0, f"the console's loop stalled {max(lags):.2f} s"
            await wait_for(
                pilot, lambda: any("Launched" in t for t in toasts(app)), "the answer arrives"
            )
            await wait_for(pilot, lambda: len(rt.grid.jobs) == 1, "the follower's grid shows it")
        rt.store.close()
    finally:
        leader.send_signal(signal.SIGCONT)
        leader.terminate()
        try:
            leader.wait(10)
        except subprocess.TimeoutExpired:
            leader.kill()
            leader.wait()
        log.close()


async def test_sim_speed_moves_simulated_time_for_a_live_demo():
    from skyops_tui.demo import DEMO_EPOCH

    app = demo_app(sim_speed=60)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(
            pilot, lambda: app.runtime.clock.now() >= DEMO_EPOCH + 60, "a simulated minute passes"
        )


async def test_a_tick_while_a_screen_is_torn_down_draws_nothing():
    """The refresh tick can land at any step of a screen's removal (a popped detail, the
    app shutting down): it must draw nothing rather than fail on missing widgets."""
    import asyncio

    from skyops_tui.app.screens.job import JobScreen

    app = demo_app()
    errors: list[BaseException] = []
    async with app.run_test(size=(120, 40)) as pilot:
        app.show_job(5)
        await wait_for(pilot, lambda: isinstance(app.screen, JobScreen), "job detail open")
        screen = app.screen
        app.pop_screen()
        for _ in range(200):  # a tick at every step of the removal
            try:
                screen.tick()
                app.refresh_views()
            except Exception as e:
                errors.append(e)
            if not screen.is_running:
                break
            await asyncio.sleep(0)
        assert not screen.is_running, "the popped screen closed"
    assert errors == [], errors


async def test_a_follower_says_so_and_says_now_leading_after_a_takeover(tmp_path):
    """Two consoles on one state file: the second's top bar says FOLLOWER; when the
    leader stops, it takes over, its bar says LEADER and a toast says "Now leading"."""
    from skyops_tui.app.app import SkyopsApp
    from skyops_tui.domain.config import parse_config
    from skyops_tui.runtime import Runtime
    from skyops_tui.store.db import Store
    from tests.helpers import Recorder

    config = {
        "cluster": {"name": "pair", "tick_s": 0.05},
        "node_types": [{"name": "H100", "rate": 2.5}],
        "nodes": [{"name": "node-a", "fake_gpus": "8xH100-80GB", "local": True}],
        "accounts": {"operators": ["ops"], "default_balance": 10000},
    }
    path = tmp_path / "state.db"

    def console(n: int) -> Runtime:
        return Runtime(
            parse_config(config, "test config"),
            Recorder(),
            store=Store(path),
            user="ops",
            lease_ttl_s=5.0,  # the first keeps the lease through a slow start of the app
            follow_s=0.1,
            socket_path=tmp_path / f"s{n}.sock",
        )

    first = console(1)
    await first.start()
    stopped = False
    try:
        await until(lambda: first.leader, "the first console leads")
        app = SkyopsApp(console(2))
        async with app.run_test(size=(160, 40)) as pilot:
            bar = lambda: str(app.screen.query_one(TopBar).render())  # noqa: E731
            await wait_for(
                pilot,
                lambda: app._runtime_up and "FOLLOWER" in bar(),
                "FOLLOWER in the top bar of the started console",
                10,
            )
            await first.stop()
            stopped = True
            await wait_for(pilot, lambda: "LEADER" in bar(), "LEADER after the takeover", 15)
            await wait_for(
                pilot,
                lambda: any("Now leading" in t for t in toasts(app)),
                "a toast says it now leads",
                5,
            )
    finally:
        if not stopped:
            await first.stop()
