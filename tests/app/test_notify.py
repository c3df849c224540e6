"""Toasts from the event feed: which events, whose, and how many per second."""

from __future__ import annotations

from skyops_tui.app.notify import Notifier
from skyops_tui.domain.model import Event
from tests.app.harness import demo_app, demo_runtime, toasts, wait_for


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def make(operator: bool = False, per_second: int = 3):
    rt = demo_runtime(operator=operator)
    shown: list[tuple[str, str, str]] = []
    clock = Clock()
    n = Notifier(
        rt,
        lambda m, title="", severity="information": shown.append((title, m, severity)),
        per_second,
        clock,
    )
    return rt, n, shown, clock


def ev(
    job: int,
    kind: str = "state",
    new: str = "paused",
    old: str = "running",
    user: str = "ops",
    cause: str = "x",
):
    return Event(0.0, kind, cause, job=job, old=old, new=new, user=user)


def test_only_my_jobs_unless_operator():
    rt, n, shown, _ = make(operator=False)
    n.on_events([ev(4, user="kim"), ev(4, user="ops")])
    assert len(shown) == 1
    rt, n, shown, _ = make(operator=True)
    n.on_events([ev(4, user="kim"), ev(4, user="ops")])
    assert len(shown) == 2


def test_kinds_and_severities():
    rt, n, shown, _ = make(per_second=100)
    n.on_events(
        [
            ev(1, kind="warning", new=None, old=None, cause="booking expires in 10 min"),
            ev(4, new="preempting", cause="preempted for priority job urgent"),
            ev(4, new="paused"),
            ev(4, new="starting", old="paused", cause="resumed on h100-b[4,5,6,7]"),
            ev(1, kind="renewed", new=None, old=None, cause="auto-renewed"),
            ev(1, new="expired", cause="booking expired; renewal refused: a Commit window is due"),
            ev(2, new="failed"),
            ev(3, new="running", old="starting"),  # routine: no toast
            ev(3, kind="submitted", new="queued", old=None),
        ]
    )
    titles = [(t, s) for t, _, s in shown]
    assert titles == [
        ("Expiring", "warning"),
        ("Preempting", "warning"),
        ("Paused", "warning"),
        ("Resuming", "information"),
        ("Renewed", "information"),
        ("Refused", "error"),
        ("Failed", "error"),
    ]
    assert shown[0][1] == "train-llm: booking expires in 10 min"


def test_at_most_a_few_per_second_then_a_summary():
    rt, n, shown, clock = make(per_second=3)
    n.on_events([ev(4, new="paused") for _ in range(10)])
    assert len(shown) == 3
    n.flush()
    assert shown[-1][1] == "7 more event(s): see the events screen (e)."
    clock.t = 1.5
    n.on_events([ev(4, new="paused")])
    assert len(shown) == 5


async def test_the_app_toasts_an_expiry_warning():
    from skyops_tui.demo import advance

    app = demo_app()
    async with app.run_test(size=(100, 30)) as pilot:
        advance(app.runtime, 3600 - 590)  # serve-eval (1 h) is 10 min from its end
        await wait_for(
            pilot,
            lambda: any("serve-eval" in t and "expires" in t for t in toasts(app, "warning")),
            "T-10 min warning toast",
        )
