"""config.toml: the schema, its defaults, and errors that name the key and the reason."""

from __future__ import annotations

import pytest

from skyops_tui.domain.config import (
    DEFAULT_TIERS,
    demo_config,
    load_config,
    parse_config,
    parse_fake_gpus,
)
from skyops_tui.domain.errors import InputError

BASE = {"node_types": [{"name": "H100", "rate": 2.5}]}


def cfg(**extra):
    return parse_config({**BASE, **extra}, "config.toml")


def errors(data: dict) -> list[str]:
    with pytest.raises(InputError) as e:
        parse_config(data, "config.toml")
    return e.value.messages


def test_defaults_are_the_specs():
    c = cfg()
    assert c.pricing.flex_floor == 0.30
    assert c.pricing.min_outbid == 0.05
    assert c.pricing.min_slice_s == 300
    assert c.pricing.early_exit_refund == 0.5
    assert c.pricing.tiers == DEFAULT_TIERS
    assert [(t.gpu_hours, t.discount) for t in DEFAULT_TIERS] == [
        (24, 0.15),
        (168, 0.30),
        (720, 0.50),
    ]
    assert c.cluster.grace_s == 120
    assert c.cluster.checkpoint_signal == "SIGUSR1"
    assert c.pricing.warn_before_s == (600, 60)


def test_rates_and_floors_are_micro_units():
    c = cfg(pricing={"flex_floor": 0.3})
    assert c.rate("H100") == 2_500_000
    assert c.floor("H100") == 750_000
    with pytest.raises(KeyError):
        c.rate("B200")


def test_node_groups_expand_to_numbered_nodes():
    c = cfg(nodes=[{"name": "h", "fake_gpus": "8xH100-80GB", "count": 12}])
    names = [n.name for n in c.all_nodes()]
    assert names[:2] == ["h-01", "h-02"] and names[-1] == "h-12" and len(names) == 12
    assert {n.resolved_gpus for n in c.all_nodes()} == {8}


def test_fake_gpu_specs():
    assert parse_fake_gpus("8xH100-80GB") == [(8, "H100", 80)]
    assert parse_fake_gpus("4xL40S-48GB, 2xA100") == [(4, "L40S", 48), (2, "A100", None)]
    with pytest.raises(ValueError, match="8xH100-80GB"):
        parse_fake_gpus("eight H100")


def test_unknown_key_is_named():
    assert errors({**BASE, "pricing": {"flex_flor": 0.3}}) == [
        "config.toml: pricing.flex_flor: unknown key"
    ]


def test_bad_value_names_the_key_the_reason_and_the_value():
    (msg,) = errors({**BASE, "pricing": {"flex_floor": 2}})
    assert msg.startswith("config.toml: pricing.flex_floor: ") and "(got 2)" in msg


def test_node_of_an_unpriced_type_is_refused():
    (msg,) = errors({**BASE, "nodes": [{"name": "a", "fake_gpus": "8xA100"}]})
    assert "nodes[0] (a): gpu type 'A100' has no [[node_types]] entry (known: H100)" in msg


def test_node_names_must_be_unique_after_expansion():
    (msg,) = errors(
        {
            **BASE,
            "nodes": [
                {"name": "h-1", "fake_gpus": "8xH100"},
                {"name": "h", "fake_gpus": "8xH100", "count": 2},
            ],
        }
    )
    assert "node name 'h-1' is used twice" in msg


def test_a_node_needs_a_type_and_size_or_fake_gpus():
    (msg,) = errors({**BASE, "nodes": [{"name": "real", "host": "gpu1"}]})
    assert "give gpu_type and gpus, or fake_gpus" in msg


def test_warnings_are_two_times_earlier_first():
    (msg,) = errors({**BASE, "pricing": {"warn_before_s": [60, 600]}})
    assert "pricing.warn_before_s" in msg and "the earlier first" in msg


def test_discounts_are_capped_at_half():
    (msg,) = errors({**BASE, "pricing": {"tiers": [{"gpu_hours": 10, "discount": 0.6}]}})
    assert msg.startswith("config.toml: pricing.tiers[0].discount:")


def test_tiers_may_be_set_per_node_type():
    c = parse_config(
        {
            "node_types": [
                {"name": "H100", "rate": 2.5, "tiers": [{"gpu_hours": 1, "discount": 0.1}]}
            ]
        }
    )
    assert c.tiers("H100")[0].discount == 0.1


def test_operators_are_named_in_config():
    c = cfg(accounts={"operators": ["root"]})
    assert c.is_operator("root") and not c.is_operator("alice")


def test_the_demo_config_is_valid():
    c = demo_config()
    assert len(c.all_nodes()) == 4


def test_load_config_reports_a_missing_file_and_bad_toml(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[pricing\n")
    with pytest.raises(InputError, match="not valid TOML"):
        load_config(bad)
    good = tmp_path / "ok.toml"
    good.write_text('[[node_types]]\nname = "H100"\nrate = 2.5\n')
    assert load_config(good).rate("H100") == 2_500_000


def load_errors(tmp_path, text: str) -> list[str]:
    path = tmp_path / "config.toml"
    path.write_text('[[node_types]]\nname = "H100"\nrate = 2.5\n' + text)
    with pytest.raises(InputError) as e:
        load_config(path)
    return [m.replace(str(path), "config.toml") for m in e.value.messages]


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ("[cluster]\nstop_grace_s = inf\n", "cluster.stop_grace_s", "finite"),
        ("[cluster]\ngrace_s = nan\n", "cluster.grace_s", "finite"),
        ("[cluster]\ngrace_s = 1e300\n", "cluster.grace_s", "less than or equal to 86400"),
        ("[cluster]\ntick_s = -1\n", "cluster.tick_s", "greater than 0"),
        ("[accounts]\ncredit_limit = inf\n", "accounts.credit_limit", "finite"),
        ("[accounts]\ndefault_balance = 1e300\n", "accounts.default_balance", "less than"),
        ("[simulation]\ninitial_balance = -5\n", "simulation.initial_balance", "greater"),
        ("[pricing]\nwarn_before_s = [inf, 60]\n", "pricing.warn_before_s[0]", "finite"),
        ("[pricing]\nretry_backoff_max_s = 1e300\n", "pricing.retry_backoff_max_s", "less"),
        ("[cluster]\nname = '[bold]x'\n", "cluster.name", "markup"),
        ("[cluster]\ncurrency = '[/x]'\n", "cluster.currency", "markup"),
        ('[cluster]\nname = "a\\u001b[2Jb"\n', "cluster.name", "control character"),
        ('[cluster]\ncurrency = "\\u202e$"\n', "cluster.currency", "control character"),
        ('[cluster]\nshared_checkpoint_path = "/ck\\u0000pt"\n', "cluster.shared_", "control"),
        ("[accounts]\noperators = ['[red]root']\n", "accounts.operators[0]", "markup"),
    ],
)
def test_numbers_and_text_no_grid_can_use_are_refused_at_load(tmp_path, text, key, reason):
    (msg,) = load_errors(tmp_path, text)
    assert msg.startswith(f"config.toml: {key}"), msg
    assert reason in msg, msg


@pytest.mark.parametrize("rate", ["inf", "1e300", "nan", "1e-9"])
def test_a_rate_must_fit_the_books_in_micro_units(tmp_path, rate):
    path = tmp_path / "config.toml"
    path.write_text(f'[[node_types]]\nname = "H100"\nrate = {rate}\n')
    with pytest.raises(InputError) as e:
        load_config(path)
    (msg,) = e.value.messages
    assert msg.startswith(f"{path}: node_types[0].rate: "), msg


def test_the_largest_amounts_fit_sqlite_integers_with_room_for_sums():
    from skyops_tui.domain.config import MAX_AMOUNT, MAX_RATE
    from skyops_tui.domain.money import to_micro

    c = cfg(
        node_types=[{"name": "H100", "rate": MAX_RATE}],
        accounts={"default_balance": MAX_AMOUNT, "credit_limit": MAX_AMOUNT},
    )
    int64 = 2**63 - 1
    # thousands of accounts at balance plus credit still sum within a signed 64-bit INTEGER
    per_account = to_micro(c.accounts.default_balance) + to_micro(c.accounts.credit_limit)
    assert 4000 * per_account < int64
    # the dearest GPU-hour, on a 64-GPU node for a year, is one number the store can hold
    assert c.rate("H100") * 64 * 24 * 366 < int64


def test_deep_nesting_and_giant_numbers_are_refused_not_raised(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text("[cluster]\nbogus = " + "[" * 50_000 + "]" * 50_000 + "\n")
    with pytest.raises(InputError) as e:
        load_config(path)
    assert e.value.messages == [f"{path}: not valid TOML: nested too deeply"]
    path.write_text("[cluster]\n\ngrace_s = " + "1" * 5000 + "\n")
    with pytest.raises(InputError) as e:
        load_config(path)
    assert e.value.messages == [f"{path}:3: not valid TOML: a number longer than 4300 digits"]


def test_node_groups_are_bounded(tmp_path):
    (msg,) = load_errors(tmp_path, '[[nodes]]\nname = "h"\nfake_gpus = "8xH100"\ncount = 100000\n')
    assert msg.startswith("config.toml: nodes[0].count: ") and "4096" in msg, msg
