"""Plan files: what a valid plan holds, and how every kind of mistake in one is reported
(the file, the line, the key path and the reason; all of them at once; never a
traceback)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from skyops_tui.domain.errors import InputError
from skyops_tui.domain.model import Mode
from skyops_tui.plan.schema import Plan, load_plan, parse_plan_text, plan_from_payload

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def errors(text: str, source: str = "plan.toml") -> list[str]:
    with pytest.raises(InputError) as e:
        parse_plan_text(text, source)
    return e.value.messages


def one_error(text: str) -> str:
    found = errors(text)
    assert len(found) == 1, found
    return found[0]


FLEX = """
[[jobs]]
name = "sweep"
mode = "flex"
gpus = 2
bid = 1.0
command = ["python3", "train.py"]
"""


def test_a_valid_plan_reads_every_table() -> None:
    plan = parse_plan_text(
        FLEX
        + """
[[reservations]]
name = "nightly"
gpu_type = "A100"
gpus = 4
start = 2030-01-07T02:00:00Z
hours = 4
repeat = "daily"
count = 3

[[bids]]
name = "other"
bid = 1.5

[[nodes]]
name = "h100-a"
gpu_type = "H100"
gpus = 8
"""
    )
    (job,) = plan.jobs
    assert job.mode is Mode.FLEX and job.argv == ("python3", "train.py") and job.user is None
    assert job.spec("ops").user == "ops"
    (res,) = plan.reservations
    assert res.spec("team").windows()[0][0] == datetime(2030, 1, 7, 2, tzinfo=UTC).timestamp()
    assert plan.bids[0].bid == 1.5 and plan.nodes[0].name == "h100-a"


def test_an_empty_plan_is_valid_and_empty() -> None:
    assert parse_plan_text("# nothing yet\n").empty


def test_the_example_plan_is_valid_and_covers_every_key() -> None:
    pf = load_plan(EXAMPLES / "plan.toml")
    plan = pf.plan
    assert {j.mode for j in plan.jobs} == set(Mode)
    text = (EXAMPLES / "plan.toml").read_text()
    # The [[bids]] block is commented out (it names a job of the console's); it parses.
    bids = re.sub(r"^# (\[\[bids\]\]|name = |bid = )", r"\1", text, flags=re.M)
    assert parse_plan_text(bids).bids[0].name == "sweep-02"
    keys = set(re.findall(r"^#?\s*([a-z_]+)\s*=", bids, flags=re.M))
    documented = keys | {
        k for line in text.splitlines() for k in re.findall(r"\b([a-z_]+)\b", line)
    }
    for model, table in (
        (type(plan.jobs[0]), "jobs"),
        (type(plan.reservations[0]), "reservations"),
        (type(plan.nodes[0]), "nodes"),
    ):
        for name, field in model.model_fields.items():
            key = field.alias or name
            if key in ("runtime", "checkpoint_every"):
                continue  # simulator only: refused in plans
            assert key in documented, f"examples/plan.toml does not show {table}.{key}"


def test_payload_round_trip_keeps_the_plan() -> None:
    plan = load_plan(EXAMPLES / "plan.toml").plan
    again = plan_from_payload(plan.payload())
    assert again == plan


# ---------------------------------------------------------------- error classes
def test_toml_syntax_error_names_the_file_and_line() -> None:
    msg = one_error('[[jobs]]\nname = "a\n')
    assert msg.startswith("plan.toml: not valid TOML:") and "line 2" in msg


def test_missing_file_and_directory() -> None:
    with pytest.raises(InputError) as e:
        load_plan("/nonexistent/plan.toml")
    assert e.value.messages == ["/nonexistent/plan.toml: file not found"]
    with pytest.raises(InputError) as e:
        load_plan(EXAMPLES)
    assert "is a directory" in e.value.messages[0]


def test_not_utf8(tmp_path: Path) -> None:
    p = tmp_path / "plan.toml"
    p.write_bytes(b'[[jobs]]\nname = "\xff"\n')
    with pytest.raises(InputError) as e:
        load_plan(p)
    assert e.value.messages[0].startswith(f"{p}: cannot read")


def test_unknown_key_names_line_and_path() -> None:
    msg = one_error(FLEX + "gpu_typ = 'H100'\n")
    assert msg == "plan.toml:8: jobs[0].gpu_typ: unknown key"


def test_unknown_table() -> None:
    assert one_error("[[job]]\nname = 'x'\n") == "plan.toml:1: job: unknown key"


def test_wrong_type_names_the_value() -> None:
    msg = one_error(FLEX.replace("gpus = 2", "gpus = 'two'"))
    assert msg.startswith("plan.toml:5: jobs[0].gpus: Input should be a valid integer")
    assert "(got 'two')" in msg


def test_out_of_range() -> None:
    msg = one_error(FLEX.replace("gpus = 2", "gpus = 0"))
    assert msg == "plan.toml:5: jobs[0].gpus: Input should be greater than or equal to 1 (got 0)"


def test_missing_required_key() -> None:
    msg = one_error(FLEX.replace('mode = "flex"\n', ""))
    assert msg == "plan.toml:2: jobs[0].mode: Field required"


def test_bad_mode() -> None:
    msg = one_error(FLEX.replace('"flex"', '"spot"'))
    assert msg.startswith(
        "plan.toml:4: jobs[0].mode: Input should be 'priority', 'commit' or 'flex'"
    )


def test_mode_rules_from_the_shared_job_spec() -> None:
    msg = one_error(FLEX.replace("bid = 1.0\n", ""))
    assert msg == "plan.toml:2: jobs[0]: a flex job needs bid = price per GPU-hour"
    msg = one_error(FLEX.replace('"flex"', '"priority"').replace("gpus = 2", "hours = 2"))
    assert msg == "plan.toml:2: jobs[0]: bid is for flex jobs, not priority"
    assert (
        parse_plan_text(FLEX.replace('"flex"', '"priority"').replace("bid = 1.0", "hours = 2"))
        .jobs[0]
        .hours
        == 2
    )


def test_command_must_be_a_list() -> None:
    msg = one_error(FLEX.replace('["python3", "train.py"]', '"python3 train.py"'))
    assert msg.startswith("plan.toml:7: jobs[0].command: give the command as a list")


def test_simulator_keys_are_refused_in_plans() -> None:
    msg = one_error(FLEX + "runtime = 60\n")
    assert msg.startswith("plan.toml:8: jobs[0].runtime: runtime is for traces")


def test_infinite_and_nan_bids() -> None:
    assert "finite number" in one_error(FLEX.replace("bid = 1.0", "bid = inf"))
    assert "bid" in one_error(FLEX.replace("bid = 1.0", "bid = nan"))


def test_env_names_point_at_the_sub_table() -> None:
    msg = one_error(FLEX + "[jobs.env]\nSKYOPS_MODE = 'x'\n")
    assert msg == "plan.toml:8: jobs[0].env: SKYOPS_MODE is set by Skyops and cannot be overridden"


RES = """
[[reservations]]
name = "nightly"
gpu_type = "A100"
gpus = 4
start = 2030-01-07T02:00:00Z
hours = 4
"""


@pytest.mark.parametrize(
    "start, expect",
    [
        ("07:00:00", "give a date-time"),
        ('"tomorrow"', "not a date-time"),
        ("1e300", "between 1970 and the year 3000"),
        ("-5", "between 1970 and the year 3000"),
        ("9999-12-31T23:00:00Z", "between 1970 and the year 3000"),
        ("true", "give a date-time"),
    ],
)
def test_window_start(start: str, expect: str) -> None:
    msg = one_error(RES.replace("2030-01-07T02:00:00Z", start))
    assert msg.startswith("plan.toml:6: reservations[0].start: ") and expect in msg


def test_window_start_forms() -> None:
    t = datetime(2030, 1, 7, tzinfo=UTC).timestamp()
    for start in ("2030-01-07", "2030-01-07T00:00:00", f"{t}", '"2030-01-07T00:00:00Z"'):
        res = parse_plan_text(RES.replace("2030-01-07T02:00:00Z", start)).reservations[0]
        assert res.spec("ops").windows()[0][0] == t, start


def test_recurrence_rule() -> None:
    msg = one_error(RES + "count = 3\n")
    assert msg == (
        "plan.toml:2: reservations[0]: count is for recurring reservations "
        "(repeat = daily or weekly)"
    )


def test_duplicate_names() -> None:
    msg = one_error(FLEX + FLEX)
    assert msg == "plan.toml:10: jobs[1].name: 'sweep' is used twice (jobs[0] too)"


def test_a_bid_for_a_job_of_the_plan() -> None:
    msg = one_error(FLEX + "[[bids]]\nname = 'sweep'\nbid = 2\n")
    assert msg == (
        "plan.toml:9: bids[0].name: job 'sweep' is in this plan's [[jobs]] (jobs[0]): "
        "set its bid there"
    )


def test_node_entry_uses_the_config_schema() -> None:
    msg = one_error("[[nodes]]\nname = 'h100-a'\n")
    assert msg.startswith("plan.toml:1: nodes[0]: give gpu_type and gpus, or fake_gpus")


def test_top_level_shape() -> None:
    assert one_error("jobs = 5\n") == (
        "plan.toml:1: jobs: should be a list of tables, written [[jobs]] (got 5)"
    )
    assert one_error("jobs = [1]\n") == (
        "plan.toml:1: jobs[0]: should be a table, written [[jobs]] (got 1)"
    )
    assert one_error("[jobs]\nname = 'x'\n") == (
        "plan.toml:1: jobs: should be a list of tables, written [[jobs]] (got {'name': 'x'})"
    )


def test_several_errors_at_once_in_file_order() -> None:
    text = (
        FLEX.replace("gpus = 2", "gpus = -1")
        + FLEX.replace('"sweep"', '"b"').replace("bid = 1.0", "bid = 'high'")
        + RES.replace("hours = 4", "hours = 0")
        + "[[bids]]\nname = 'x'\nprice = 3\n"
    )
    found = errors(text)
    assert [m.split(": ")[0:2] for m in found] == [
        ["plan.toml:5", "jobs[0].gpus"],
        ["plan.toml:13", "jobs[1].bid"],
        ["plan.toml:21", "reservations[0].hours"],
        ["plan.toml:22", "bids[0].bid"],
        ["plan.toml:24", "bids[0].price"],
    ]


def test_lines_with_comments_inline_tables_and_multiline_strings() -> None:
    text = '''# header [[jobs]] in a comment
[[jobs]]   # first
name = "a"
mode = "flex"
bid = 1
command = ["x"]
workdir = """
[[jobs]]
"""

[[jobs]]
name = "b"
mode = "flex"
env = { "1BAD" = "x" }
bid = 1
'''
    msg = one_error(text)
    assert msg.startswith("plan.toml:14: jobs[1].env: environment variable name '1BAD'")


def test_plan_model_is_the_one_schema() -> None:
    # The plan's job is the domain's JobSpec with file conveniences, not a copy of it.
    from skyops_tui.domain.specs import JobSpec, ReservationSpec

    assert issubclass(Plan.model_fields["jobs"].annotation.__args__[0], JobSpec)
    assert issubclass(Plan.model_fields["reservations"].annotation.__args__[0], ReservationSpec)


def test_an_empty_command_is_refused_not_run_as_true() -> None:
    msg = one_error(FLEX.replace('["python3", "train.py"]', "[]"))
    assert msg.startswith("plan.toml:7: jobs[0].command: an empty command runs nothing"), msg
    msg = one_error(FLEX.replace('["python3", "train.py"]', '["", "train.py"]'))
    assert msg == "plan.toml:7: jobs[0].command: the program (the first argument) is empty"


@pytest.mark.parametrize(
    ("extra", "line", "key", "reason"),
    [
        ("", 7, "command", "argument 1 contains a NUL byte"),
        ('workdir = "/data\\u0000x"\n', 8, "workdir", "a path cannot contain a NUL byte"),
        ('[jobs.env]\nA = "x\\u0000y"\n', 8, "env", "the value of A contains a NUL byte"),
        ('[jobs.env]\n"A\\u0000B" = "x"\n', 8, "env", "environment variable name 'A\\x00B'"),
    ],
)
def test_a_nul_byte_is_refused_at_parse_not_at_start(extra, line, key, reason) -> None:
    text = FLEX + extra
    if not extra:
        text = FLEX.replace('"train.py"', '"train\\u0000.py"')
    msg = one_error(text)
    assert msg.startswith(f"plan.toml:{line}: jobs[0].{key}: {reason}"), msg


def test_a_nul_byte_is_refused_wherever_a_job_spec_is_built() -> None:
    """The console's launch form, `skyops quote` and traces build the same JobSpec."""
    from pydantic import ValidationError

    from skyops_tui.domain.specs import JobSpec

    base = {"name": "j", "user": "u", "mode": "flex", "bid": 1.0}
    for bad in (
        {"argv": ["python3", "a\0b"]},
        {"argv": ["", "x"]},
        {"env": {"A": "\0"}},
        {"workdir": "/tmp/\0"},
        {"bid": 1e300},
    ):
        with pytest.raises(ValidationError):
            JobSpec.model_validate({**base, **bad})
    assert JobSpec.model_validate(base).argv == ()  # quotes and simulated jobs run nothing


def test_node_groups_are_bounded_in_plans() -> None:
    msg = one_error('\n[[nodes]]\nname = "h"\nfake_gpus = "8xH100"\ncount = 4097\n')
    assert msg.startswith("plan.toml:5: nodes[0].count: ") and "4096" in msg, msg


def test_giant_numbers_deep_nesting_and_huge_bids_are_refused() -> None:
    assert one_error(FLEX.replace("gpus = 2", "gpus = " + "2" * 5000)) == (
        "plan.toml:5: not valid TOML: a number longer than 4300 digits"
    )
    assert one_error(FLEX + "x = " + "[" * 5000 + "]" * 5000) == (
        "plan.toml: not valid TOML: nested too deeply"
    )
    msg = one_error(FLEX.replace("bid = 1.0", "bid = 1e300"))
    assert msg.startswith("plan.toml:6: jobs[0].bid: ") and "1000000" in msg, msg
