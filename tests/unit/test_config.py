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
