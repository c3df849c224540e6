"""GPU probes: fake GPUs for demos, and NVML's plain answer on a box without a driver."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from skyops_agent import gpus
from skyops_agent.gpus import FakeProbe, NvmlProbe, gpu_type_of, parse_fake_spec


def test_fake_spec_accepts_mixes_and_refuses_typos_plainly():
    assert parse_fake_spec("2xH100-80GB") == [("H100", 80)] * 2
    mix = parse_fake_spec("4xL40S-48GB, 1xA100-40GB")
    assert mix == [("L40S", 48)] * 4 + [("A100", 40)]
    # Memory may be left out: the model's usual size.
    assert parse_fake_spec("2xH100") == [("H100", 80)] * 2
    assert parse_fake_spec("1xL40S") == [("L40S", 48)]
    for bad in ("8H100-80GB", "0xH100-80GB", "2xH100-0GB", "2xH100-80", "65xH100", ""):
        with pytest.raises(ValueError, match=r"COUNTxMODEL\[-MEMGB\]"):
            parse_fake_spec(bad)


def test_fake_inventory_is_marked_fake_with_stable_distinct_uuids():
    inv = FakeProbe("8xH100-80GB", node_name="node-a").inventory()
    assert inv["fake"] is True and inv["available"] is True
    assert "fake" in inv["message"]
    assert [g["index"] for g in inv["gpus"]] == list(range(8))
    assert {g["name"] for g in inv["gpus"]} == {"NVIDIA H100 80GB (fake)"}
    assert {g["gpu_type"] for g in inv["gpus"]} == {"H100"}
    assert inv["gpus"][0]["memory_total_bytes"] == 80 * 1024**3
    uuids = [g["uuid"] for g in inv["gpus"]]
    assert len(set(uuids)) == 8 and all(u.startswith("GPU-") for u in uuids)
    assert uuids == [g["uuid"] for g in FakeProbe("8xH100-80GB", "node-a").inventory()["gpus"]]
    other_node = FakeProbe("8xH100-80GB", "node-b").inventory()["gpus"]
    assert not set(uuids) & {g["uuid"] for g in other_node}


def test_fake_telemetry_follows_the_jobs_using_each_gpu():
    busy = {0: [4242]}
    probe = FakeProbe("2xA100-40GB", node_name="n", busy=lambda: busy)
    samples = [probe.telemetry() for _ in range(30)]
    assert all(s["fake"] is True for s in samples)
    for sample in samples[5:]:  # once the GPUs have warmed up / cooled down
        hot, idle = sample["gpus"]
        assert hot["utilization_pct"] >= 80 and idle["utilization_pct"] <= 5
        assert hot["memory_used_bytes"] > 0.6 * hot["memory_total_bytes"]
        assert idle["memory_used_bytes"] < 0.05 * idle["memory_total_bytes"]
        assert hot["temperature_c"] > idle["temperature_c"]
        assert 0 < idle["power_w"] < hot["power_w"] <= hot["power_limit_w"] == 400.0
        assert [p["pid"] for p in hot["processes"]] == [4242] and idle["processes"] == []
    utilisations = {s["gpus"][0]["utilization_pct"] for s in samples[5:]}
    assert len(utilisations) > 1, "telemetry should move, not stand still"
    busy.clear()
    for _ in range(10):
        cooled = probe.telemetry()["gpus"][0]
    assert cooled["utilization_pct"] <= 5 and cooled["processes"] == []


def test_gpu_type_comes_from_the_marketing_name():
    assert gpu_type_of("NVIDIA H100 80GB HBM3") == "H100"
    assert gpu_type_of("NVIDIA A100-SXM4-40GB") == "A100"
    assert gpu_type_of("NVIDIA L40S") == "L40S"
    assert gpu_type_of("NVIDIA GeForce RTX 4090") == "RTX4090"
    assert gpu_type_of("Tesla T4") == "T4"


def _no_nvml_leak(report):
    text = json.dumps(report)
    assert "NVMLError" not in text and "Traceback" not in text


def test_nvml_probe_answers_plainly_whatever_the_box_has():
    """On a box without a driver (this one) the answer is a sentence and a HINT."""
    probe = NvmlProbe()
    inv = probe.inventory()
    tel = probe.telemetry()
    _no_nvml_leak(inv)
    _no_nvml_leak(tel)
    assert inv["fake"] is False and tel["fake"] is False
    if probe.available:  # a real GPU box
        assert inv["gpus"] and all(g["uuid"].startswith("GPU-") for g in inv["gpus"])
        assert len(tel["gpus"]) == len(inv["gpus"])
    else:
        assert inv["available"] is False and inv["gpus"] == [] and tel["gpus"] == []
        assert inv["message"].startswith("no NVIDIA driver") or "NVML" in inv["message"]
        assert inv["hint"].startswith("HINT: ")
        assert tel["message"] == inv["message"]
    probe.close()


def test_nvml_query_turns_real_library_errors_into_na():
    probe = NvmlProbe()
    # Without a driver NVML is not initialised and the real bindings raise
    # NVMLError_Uninitialized; with one, index 10000 raises NVMLError_InvalidArgument.
    assert probe.query("nvmlDeviceGetHandleByIndex", 10_000) is gpus.NA
    assert probe.query("nvmlNoSuchFunction") is gpus.NA
    assert "nvmlNoSuchFunction" in probe._unsupported
    assert probe.query_first(("nvmlNoSuchFunction", "nvmlDeviceGetHandleByIndex"), 10_000) is None
    if not probe.available:
        assert probe.query("nvmlDeviceGetCount") is gpus.NA
        assert probe.query("nvmlSystemGetDriverVersion") is gpus.NA
    probe.close()


def test_nvml_errors_are_explained_without_library_jargon():
    for value in (9, 12, 4, 18, 999):
        message, hint = gpus.explain_nvml_error(value, "Some NVML text")
        assert message and hint.startswith("HINT: ")
    message, hint = gpus.explain_nvml_error(12, "NVML Shared Library Not Found")
    assert message.startswith("no NVIDIA driver")
    assert "--fake-gpus" in hint


def test_inventory_command_prints_json_for_humans():
    fake = subprocess.run(
        [sys.executable, "-m", "skyops_agent", "inventory", "--fake-gpus", "1xL40S-48GB"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert fake.returncode == 0, fake.stderr
    assert json.loads(fake.stdout)["gpus"][0]["name"] == "NVIDIA L40S 48GB (fake)"
    real = subprocess.run(
        [sys.executable, "-m", "skyops_agent", "inventory"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert real.returncode == 0 and real.stderr == ""
    _no_nvml_leak(json.loads(real.stdout))
    bad = subprocess.run(
        [sys.executable, "-m", "skyops_agent", "inventory", "--fake-gpus", "lots"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "8xH100-80GB" in bad.stderr and "Traceback" not in bad.stderr
