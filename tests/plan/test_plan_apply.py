"""Plans against a real grid: what the diff says (create, change, unchanged, refuse and
why), that applying twice changes nothing, and that a refused plan leaves the state
file exactly as it was. The grid runs in simulated time on the demo config; plans go
through the same `apply_plan` command a leading console runs."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from skyops_tui.clock import ManualClock
from skyops_tui.control import commands
from skyops_tui.demo import DEMO_EPOCH, advance
from skyops_tui.domain.config import Config, demo_config, parse_config
from skyops_tui.domain.errors import Refused
from skyops_tui.domain.model import JobState, Mode
from skyops_tui.domain.money import to_micro
from skyops_tui.plan.apply import apply_plan, plan_plan
from skyops_tui.plan.diff import diff_plan
from skyops_tui.plan.schema import load_plan, parse_plan_text
from skyops_tui.runtime import Runtime
from skyops_tui.sim.agents import SimExecutor
from skyops_tui.store.db import Store

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "plan.toml"


def make_rt(tmp_path: Path | None = None, cfg: Config | None = None) -> Runtime:
    cfg = cfg or demo_config(operator="ops")
    clock = ManualClock(DEMO_EPOCH)
    ex = SimExecutor(clock, cfg.simulation.stop_delay_s, cfg.cluster.grace_s)
    store = Store(tmp_path / "state.db") if tmp_path is not None else None
    rt = Runtime(cfg, ex, clock=clock, store=store, user="ops")
    rt.engine.step(clock.now())  # the store's first write: markets, nodes
    return rt


def apply(rt: Runtime, text: str, actor: str = "ops", dry_run: bool = False) -> dict:
    payload = {"plan": parse_plan_text(text).payload(), "source": "plan.toml", "dry_run": dry_run}
    return commands.run(rt.engine, "apply_plan", payload, actor, rt.clock.now())


def keep_running(rt: Runtime, *names: str) -> None:
    """Simulated agents finish a job with no `runtime` at once; plans (rightly) carry
    none, so the tests give these jobs a long one."""
    for name in names:
        rt.grid.job_by_ref(name).runtime = 10**7


def items(doc: dict) -> dict[str, dict]:
    return {f"{i['kind']}:{i['name']}": i for i in doc["items"]}


def dump(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return "\n".join(conn.iterdump())
    finally:
        conn.close()


def flex(name: str = "sweep", bid: float = 1.0, gpus: int = 2, **extra: object) -> str:
    lines = [
        "[[jobs]]",
        f'name = "{name}"',
        'mode = "flex"',
        f"gpus = {gpus}",
        'gpu_type = "H100"',
        f"bid = {bid}",
        'command = ["python3", "train.py"]',
    ]
    lines += [f"{k} = {v!r}".replace("'", '"') for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def priority(name: str = "prod", hours: float = 2, gpus: int = 4, **extra: object) -> str:
    lines = [
        "[[jobs]]",
        f'name = "{name}"',
        'mode = "priority"',
        f"gpus = {gpus}",
        'gpu_type = "H100"',
        f"hours = {hours}",
        'command = ["python3", "serve.py"]',
    ]
    lines += [f"{k} = {v!r}".replace("'", '"').replace("True", "true") for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def reservation(name: str = "nightly", gpus: int = 4, start: float = DEMO_EPOCH + 3600) -> str:
    return (
        f'[[reservations]]\nname = "{name}"\ngpu_type = "A100"\ngpus = {gpus}\n'
        f"start = {start}\nhours = 4\n"
    )


# ------------------------------------------------------------------- create
def test_the_example_plan_creates_everything_then_nothing(tmp_path: Path) -> None:
    rt = make_rt(tmp_path)
    plan = load_plan(EXAMPLE).plan
    doc = commands.run(
        rt.engine, "apply_plan", {"plan": plan.payload(), "source": "x"}, "ops", rt.clock.now()
    )
    assert doc["status"] == "applied" and doc["applied"]
    assert doc["counts"] == {"create": 5, "change": 0, "unchanged": 2, "refuse": 0}
    g = rt.grid
    res = g.reservations["team-nights"]
    assert (res.user, res.gpus, len(res.windows), res.discount_bp) == ("team", 4, 30, 3000)
    train = g.job_by_ref("pretrain-7b")
    assert (train.user, train.mode, train.gpus, train.hours, train.auto_renew) == (
        "ana",
        Mode.PRIORITY,
        4,
        3,
        True,
    )
    assert train.env == {"WANDB_MODE": "offline", "SEED": "7"} and train.workdir == "/tmp"
    assert g.job_by_ref("eval-server").nodes == 1 and g.job_by_ref("eval-server").hourly
    assert g.job_by_ref("nightly-finetune").reservation == "team-nights"
    sweep = g.job_by_ref("lr-sweep")
    assert (sweep.bid, sweep.max_retries, sweep.user) == (to_micro(1.2), 3, "ops")
    assert items(doc)["job:lr-sweep"]["id"] == sweep.id

    before = dump(tmp_path / "state.db")
    again = commands.run(
        rt.engine, "apply_plan", {"plan": plan.payload(), "source": "x"}, "ops", rt.clock.now()
    )
    assert again["status"] == "unchanged" and not again["applied"]
    assert {i["action"] for i in again["items"]} == {"unchanged"}
    assert dump(tmp_path / "state.db") == before


def test_unchanged_after_the_jobs_run_and_the_booking_renews() -> None:
    rt = make_rt()
    text = priority(hours=0.5, auto_renew=True) + flex()
    apply(rt, text)
    keep_running(rt, "prod", "sweep")
    advance(rt, 45 * 60)  # started, renewed once at expiry
    job = rt.grid.job_by_ref("prod")
    assert job.state is JobState.RUNNING and job.end_at - job.started_at > 0.5 * 3600
    doc = apply(rt, text)
    assert doc["status"] == "unchanged"
    assert "a booking is not shortened" in items(doc)["job:prod"]["reason"]


def test_a_commit_job_can_use_a_reservation_of_the_same_plan() -> None:
    rt = make_rt()
    text = reservation() + (
        '[[jobs]]\nname = "nightly-job"\nmode = "commit"\nreservation = "nightly"\n'
        'gpus = 4\ncommand = ["x"]\n'
    )
    doc = apply(rt, text)
    assert doc["status"] == "applied"
    assert rt.grid.job_by_ref("nightly-job").gpu_type == "A100"
    assert apply(rt, text)["status"] == "unchanged"


def test_dry_run_changes_nothing(tmp_path: Path) -> None:
    rt = make_rt(tmp_path)
    before = dump(tmp_path / "state.db")
    doc = apply(rt, flex() + reservation(), dry_run=True)
    assert doc["status"] == "planned" and not doc["applied"]
    assert doc["counts"]["create"] == 2
    assert not rt.grid.jobs and not rt.grid.reservations
    assert dump(tmp_path / "state.db") == before


# ------------------------------------------------------------------- change
def test_a_flex_bid_changes() -> None:
    rt = make_rt()
    apply(rt, flex(bid=1.0))
    doc = apply(rt, flex(bid=1.4))
    assert doc["status"] == "applied"
    item = items(doc)["job:sweep"]
    assert item["action"] == "change"
    assert item["changes"] == [{"field": "bid", "from": 1.0, "to": 1.4}]
    assert rt.grid.job_by_ref("sweep").bid == to_micro(1.4)
    assert apply(rt, flex(bid=1.4))["status"] == "unchanged"


def test_a_running_priority_booking_is_extended() -> None:
    rt = make_rt()
    apply(rt, priority(hours=2))
    keep_running(rt, "prod")
    advance(rt, 120)
    job = rt.grid.job_by_ref("prod")
    end = job.end_at
    doc = apply(rt, priority(hours=3.5))
    item = items(doc)["job:prod"]
    assert item["action"] == "change"
    assert item["changes"] == [{"field": "hours", "from": 2.0, "to": 3.5}]
    assert job.end_at == pytest.approx(end + 1.5 * 3600)
    assert apply(rt, priority(hours=3.5))["status"] == "unchanged"
    assert apply(rt, priority(hours=1))["status"] == "unchanged"  # never shortened


def test_a_bids_entry_changes_a_job_the_plan_does_not_describe() -> None:
    rt = make_rt()
    apply(rt, flex(bid=1.0))
    text = '[[bids]]\nname = "sweep"\nbid = 1.6\n'
    doc = apply(rt, text)
    assert items(doc)["bid:sweep"]["action"] == "change"
    assert rt.grid.job_by_ref("sweep").bid == to_micro(1.6)
    assert apply(rt, text)["status"] == "unchanged"


# ------------------------------------------------------------------- refuse
def refused(doc: dict, key: str) -> str:
    assert doc["status"] == "refused" and not doc["applied"], doc
    item = items(doc)[key]
    assert item["action"] == "refuse", item
    return item["reason"]


def test_the_mode_lock_through_a_plan(tmp_path: Path) -> None:
    rt = make_rt(tmp_path)
    apply(rt, flex())
    before = dump(tmp_path / "state.db")
    text = flex().replace('"flex"', '"priority"').replace("bid = 1.0", "hours = 1") + reservation()
    doc = apply(rt, text)
    reason = refused(doc, "job:sweep")
    assert reason == (
        "job sweep is a flex job: the mode is locked at creation and cannot become "
        "priority; cancel it and submit a new priority job"
    )
    assert items(doc)["job:sweep"]["changes"] == [
        {"field": "mode", "from": "flex", "to": "priority"}
    ]
    # The reservation alone would have been created: the whole plan is refused.
    assert items(doc)["reservation:nightly"]["action"] == "create"
    assert "nightly" not in rt.grid.reservations
    assert rt.grid.job_by_ref("sweep").mode is Mode.FLEX
    assert dump(tmp_path / "state.db") == before


def test_fields_fixed_at_submission() -> None:
    rt = make_rt()
    apply(rt, flex(gpus=2))
    reason = refused(apply(rt, flex(gpus=4, bid=1.5)), "job:sweep")
    assert reason == (
        "job sweep: gpus cannot change once submitted; cancel it and submit it under a new name"
    )
    assert rt.grid.job_by_ref("sweep").bid == to_micro(1.0)  # the bid change was not applied
    text = flex().replace('["python3", "train.py"]', '["python3", "other.py"]')
    assert "command cannot change" in refused(apply(rt, text), "job:sweep")


def test_a_job_of_someone_else() -> None:
    rt = make_rt()
    apply(rt, flex(user="kim"))
    assert refused(apply(rt, flex()), "job:sweep") == (
        "job sweep belongs to kim, not ops: give the plan's job another name"
    )


def test_a_queued_booking_cannot_change_length() -> None:
    cfg = demo_config(operator="ops")
    rt = make_rt(cfg=cfg)
    apply(rt, priority(hours=2, gpus=8) + priority("prod2", hours=2, gpus=8))
    apply(rt, priority("prod3", hours=1, gpus=8))  # waits: both H100 nodes are booked
    keep_running(rt, "prod", "prod2", "prod3")
    advance(rt, 60)
    assert rt.grid.job_by_ref("prod3").state is JobState.QUEUED
    reason = refused(apply(rt, priority("prod3", hours=4, gpus=8)), "job:prod3")
    assert "hours cannot change once submitted" in reason


def test_a_booked_reservation_cannot_change() -> None:
    rt = make_rt()
    apply(rt, reservation(gpus=4))
    reason = refused(apply(rt, reservation(gpus=6)), "reservation:nightly")
    assert reason == (
        "reservation nightly is booked and prepaid: its gpus cannot change; cancel it "
        "(early-exit refund) and book a new one under another name"
    )
    reason = refused(apply(rt, reservation(start=DEMO_EPOCH + 7200)), "reservation:nightly")
    assert "its windows cannot change" in reason


def test_no_capacity_for_a_reservation_counting_the_plan_itself() -> None:
    rt = make_rt()
    # Each fits the 8 A100s alone; together they do not. The copy judges them in order.
    doc = apply(rt, reservation("a", gpus=6) + reservation("b", gpus=6))
    assert items(doc)["reservation:a"]["action"] == "create"
    reason = refused(doc, "reservation:b")
    assert reason.startswith("no room on A100 for the window starting")
    assert "2 of 8 GPUs left" in reason
    assert not rt.grid.reservations


def test_an_account_that_cannot_fund_it() -> None:
    cfg = parse_config(
        {
            **demo_config().model_dump(mode="json"),
            "accounts": {"operators": ["ops"], "users": [{"name": "poor", "balance": 5}]},
        }
    )
    rt = make_rt(cfg=cfg)
    text = reservation().replace('name = "nightly"', 'name = "nightly"\nuser = "poor"')
    reason = refused(apply(rt, text), "reservation:nightly")
    assert reason.startswith("account poor cannot prepay $")
    assert "user:poor" not in rt.grid.balances  # not even the account was opened


def test_a_bid_under_the_floor() -> None:
    rt = make_rt()
    assert refused(apply(rt, flex(bid=0.10)), "job:sweep") == (
        "bid $0.10 is under the floor $0.75 per GPU-hour"
    )
    apply(rt, flex(bid=1.0))
    assert "bid must be between $0.75 and $2.50" in refused(
        apply(rt, '[[bids]]\nname = "sweep"\nbid = 0.2\n'), "bid:sweep"
    )


def test_bids_for_missing_and_non_flex_jobs() -> None:
    rt = make_rt()
    apply(rt, priority())
    assert refused(apply(rt, '[[bids]]\nname = "ghost"\nbid = 1\n'), "bid:ghost") == (
        "no job 'ghost'"
    )
    assert "only flex jobs carry a bid" in refused(
        apply(rt, '[[bids]]\nname = "prod"\nbid = 1\n'), "bid:prod"
    )


def test_permissions_are_the_grids() -> None:
    rt = make_rt()
    reason = refused(apply(rt, flex(user="kim"), actor="lee"), "job:sweep")
    assert reason == "lee may not submit jobs as kim"


def test_ended_jobs_are_left_alone() -> None:
    rt = make_rt()
    apply(rt, flex())
    rt.grid.cancel("sweep", rt.clock.now(), "ops")
    doc = apply(rt, flex(bid=2.0))
    item = items(doc)["job:sweep"]
    assert doc["status"] == "unchanged"
    assert item["reason"] == "ended (cancelled); not changed: bid"
    # The mode lock holds for ended jobs too.
    text = flex().replace('"flex"', '"priority"').replace("bid = 1.0", "hours = 1")
    assert "mode is locked" in refused(apply(rt, text), "job:sweep")


def test_nodes_are_checked_against_the_config() -> None:
    rt = make_rt()
    ok = '[[nodes]]\nname = "h100-a"\ngpu_type = "H100"\ngpus = 8\n'
    doc = apply(rt, ok)
    assert doc["status"] == "unchanged" and items(doc)["node:h100-a"]["reason"] == "up"
    wrong = ok.replace("gpus = 8", "gpus = 4")
    assert refused(apply(rt, wrong), "node:h100-a") == (
        "node h100-a differs from config.toml (gpus 8 in the config, 4 here): edit config.toml"
    )
    missing = ok.replace("h100-a", "h100-z")
    assert "is not in the config" in refused(apply(rt, missing), "node:h100-z")


def test_an_invalid_payload_is_refused_by_the_command() -> None:
    rt = make_rt()
    with pytest.raises(Refused, match=r"invalid plan: x: jobs\[0\]\.mode"):
        commands.run(
            rt.engine,
            "apply_plan",
            {"plan": {"jobs": [{"name": "a", "mode": "spot"}]}, "source": "x"},
            "ops",
            rt.clock.now(),
        )


def test_diff_and_dry_run_are_pure() -> None:
    rt = make_rt()
    g = rt.grid
    plan = parse_plan_text(flex() + reservation() + priority())
    jobs, events = dict(g.jobs), len(g.events)
    diff = diff_plan(g, plan, rt.clock.now(), "ops")
    assert [i.action for i in diff.items] == ["create", "create", "create"]
    assert plan_plan(g, plan, rt.clock.now(), "ops").status == "planned"
    assert g.jobs == jobs and not g.reservations and len(g.events) == events
    result, actions = apply_plan(g, plan, rt.clock.now(), "ops")
    assert result.applied and actions == []
    assert [i.id for i in result.diff.items if i.kind == "job"] == [
        g.job_names["sweep"],
        g.job_names["prod"],
    ]


def test_a_big_node_group_is_reported_in_linear_time(tmp_path: Path, monkeypatch, capsys) -> None:
    """`skyops --apply` once took a minute over a 4000-node group: the report found each
    node's entry by expanding every group again. Each group is expanded a fixed number
    of times now, whatever its size."""
    import json

    from skyops_tui.cli.main import main
    from skyops_tui.domain.config import NodeConfig

    config = tmp_path / "config.toml"
    config.write_text('[[node_types]]\nname = "H100"\nrate = 2.5\n')
    plan = tmp_path / "plan.toml"
    plan.write_text('[[nodes]]\nname = "h"\nfake_gpus = "8xH100-80GB"\ncount = 4000\n')
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("SKYOPS_DB", str(tmp_path / "state.db"))
    monkeypatch.setenv("SKYOPS_USER", "ops")
    expansions = []
    expand = NodeConfig.expand

    def counted(self: NodeConfig) -> list[NodeConfig]:
        expansions.append(self.name)
        return expand(self)

    monkeypatch.setattr(NodeConfig, "expand", counted)
    code = main(["--config", str(config), "--apply", str(plan), "--dry-run", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 1 and doc["status"] == "refused"
    assert len(doc["items"]) == 4000
    assert {(i["kind"], i["line"]) for i in doc["items"]} == {("node", 2)}
    assert doc["items"][-1]["reason"].startswith("node h-4000 is not in the config")
    assert len(expansions) <= 4, f"the group was expanded {len(expansions)} times"
