"""GPU inventory and telemetry behind one GpuProbe interface: NVML or fake.

NvmlProbe follows nvitop's libnvml.py: every NVML call goes through one query function
that turns NVMLError into the N/A sentinel (None) and remembers unsupported functions, so
no NVMLError ever reaches a protocol message. Without a driver the probe says so in plain
words with a HINT line. FakeProbe simulates GPUs for demos and tests, always marked fake.
"""

from __future__ import annotations

import hashlib
import random
import re
import time
import uuid
from typing import Any, Callable

from skyops_agent.protocol import parse_fake_spec

NA = None  # what an NVML value is when the driver cannot give it

MIB = 1024 * 1024
GIB = 1024 * MIB

BusyGpus = Callable[[], dict[int, list[int]]]
"""Returns, for each GPU index used by a running job of this agent, the jobs' pids."""


class GpuProbe:
    """Reads the GPUs of this box. Reports are plain dicts, ready for the protocol."""

    fake = False

    def inventory(self) -> dict[str, Any]:
        """{"fake", "available", "gpus": [{index, uuid, name, gpu_type, memory_total_bytes}],
        "driver", "message", "hint"}; message/hint explain an unavailable probe."""
        raise NotImplementedError

    def telemetry(self) -> dict[str, Any]:
        """{"fake", "at", "gpus": [{index, uuid, utilization_pct, memory_used_bytes,
        memory_total_bytes, temperature_c, power_w, power_limit_w, processes}]}."""
        raise NotImplementedError

    def close(self) -> None:
        pass


def gpu_type_of(name: str) -> str:
    """The short model a job pins with ``gpu_type``: "NVIDIA H100 80GB HBM3" -> "H100"."""
    words = [w for w in re.split(r"[\s\-]+", name) if w]
    words = [w for w in words if w not in ("NVIDIA", "Tesla", "GeForce", "Quadro")]
    if not words:
        return name
    if words[0] == "RTX" and len(words) > 1:
        return "RTX" + words[1]
    return words[0]


# -- NVML ---------------------------------------------------------------------------

# NVML error numbers (stable across versions), used when the bindings lack the constant.
_NVML_ERROR_NO_PERMISSION = 4
_NVML_ERROR_NOT_SUPPORTED = 3
_NVML_ERROR_DRIVER_NOT_LOADED = 9
_NVML_ERROR_LIBRARY_NOT_FOUND = 12
_NVML_ERROR_FUNCTION_NOT_FOUND = 13
_NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18
_NVML_VALUE_NOT_AVAILABLE = 2**63  # NVML reports "not available" as (unsigned) -1

HINT_FAKE = "or start the agent with --fake-gpus 8xH100-80GB for a demo"


def explain_nvml_error(value: int | None, text: str) -> tuple[str, str]:
    """A plain message and HINT line for an NVML start-up failure."""
    if value == _NVML_ERROR_LIBRARY_NOT_FOUND:
        return (
            "no NVIDIA driver: the NVML library (libnvidia-ml.so.1) was not found on this box",
            "HINT: install the NVIDIA driver (nvidia-smi should work), " + HINT_FAKE,
        )
    if value == _NVML_ERROR_DRIVER_NOT_LOADED:
        return (
            "no NVIDIA driver loaded: NVML is installed but the kernel driver is not running",
            "HINT: check nvidia-smi and 'lsmod | grep nvidia'; after a driver update, reboot",
        )
    if value == _NVML_ERROR_NO_PERMISSION:
        return (
            "NVML refused access to the GPUs (no permission)",
            "HINT: the agent's user needs read/write access to /dev/nvidia*",
        )
    if value == _NVML_ERROR_LIB_RM_VERSION_MISMATCH:
        return (
            "NVIDIA driver and NVML library versions do not match",
            "HINT: the driver was updated without a reboot; reboot the box",
        )
    return (
        "NVML could not start: %s" % (text or "unknown error"),
        "HINT: run nvidia-smi on this box to see what the driver says",
    )


class NvmlProbe(GpuProbe):
    """Real GPUs through pynvml (nvidia-ml-py), when the bindings and a driver are there."""

    def __init__(self) -> None:
        self._nvml: Any = None
        self._unsupported: set = set()
        self._started = False
        self._problem: tuple[str, str] | None = None
        try:
            import pynvml  # type: ignore[import-untyped]  # nvidia-ml-py ships no type hints
        except ImportError:
            self._problem = (
                "no NVML bindings: the Python module pynvml (nvidia-ml-py) is not installed",
                "HINT: pip install nvidia-ml-py, or run the agent from the zipapp, which bundles it",
            )
            return
        self._nvml = pynvml
        self._start()

    def _start(self) -> bool:
        if self._started or self._nvml is None:
            return self._started
        try:
            self._nvml.nvmlInit()
        except self._nvml.NVMLError as exc:
            self._problem = explain_nvml_error(getattr(exc, "value", None), str(exc))
            return False
        except Exception as exc:  # a broken install must not crash the agent
            self._problem = explain_nvml_error(None, f"{exc}")
            return False
        self._started = True
        self._problem = None
        return True

    @property
    def available(self) -> bool:
        return self._started

    @property
    def problem(self) -> tuple[str, str] | None:
        """(message, hint) when NVML is unusable, else None."""
        return self._problem

    def query(self, name: str, *args: Any) -> Any:
        """Call NVML function ``name``; N/A (None) on any NVML error, never an exception.

        A function the driver or bindings do not support is remembered and not called again.
        """
        if self._nvml is None or name in self._unsupported:
            return NA
        func = getattr(self._nvml, name, None)
        if func is None:
            self._unsupported.add(name)
            return NA
        try:
            return func(*args)
        except self._nvml.NVMLError as exc:
            if getattr(exc, "value", None) in (
                _NVML_ERROR_NOT_SUPPORTED,
                _NVML_ERROR_FUNCTION_NOT_FOUND,
            ):
                self._unsupported.add(name)
            return NA
        except Exception:
            return NA

    def query_first(self, names: tuple[str, ...], *args: Any) -> Any:
        """The newest variant of a call that answers, as nvitop does for _v3/_v2 calls."""
        for name in names:
            value = self.query(name, *args)
            if value is not NA:
                return value
        return NA

    def _handles(self) -> list[tuple[int, Any]]:
        count = self.query("nvmlDeviceGetCount")
        if not isinstance(count, int):
            return []
        return [(i, self.query("nvmlDeviceGetHandleByIndex", i)) for i in range(count)]

    def _unavailable(self) -> dict[str, Any]:
        message, hint = self._problem or ("NVML is not available", "")
        return {"fake": False, "available": False, "message": message, "hint": hint}

    def inventory(self) -> dict[str, Any]:
        if not self._start():
            return dict(self._unavailable(), gpus=[], driver=None)
        gpus = []
        for index, handle in self._handles():
            if handle is NA:
                gpus.append({"index": index, "error": "GPU not readable (lost or busy)"})
                continue
            name = _text(self.query("nvmlDeviceGetName", handle))
            memory = self.query("nvmlDeviceGetMemoryInfo", handle)
            gpus.append(
                {
                    "index": index,
                    "uuid": _text(self.query("nvmlDeviceGetUUID", handle)),
                    "name": name,
                    "gpu_type": gpu_type_of(name) if name else None,
                    "memory_total_bytes": _value(getattr(memory, "total", NA)),
                }
            )
        cuda = self.query_first(
            ("nvmlSystemGetCudaDriverVersion_v2", "nvmlSystemGetCudaDriverVersion")
        )
        driver = {
            "driver_version": _text(self.query("nvmlSystemGetDriverVersion")),
            "nvml_version": _text(self.query("nvmlSystemGetNVMLVersion")),
            "cuda_driver_version": (
                f"{cuda // 1000}.{(cuda % 1000) // 10}" if isinstance(cuda, int) else NA
            ),
        }
        return {
            "fake": False,
            "available": True,
            "gpus": gpus,
            "driver": driver,
            "message": None if gpus else "NVML works but reports no GPUs",
            "hint": None,
        }

    def telemetry(self) -> dict[str, Any]:
        at = time.time()
        if not self._start():
            unavailable = self._unavailable()
            return {"fake": False, "at": at, "gpus": [], "message": unavailable["message"]}
        gpus = []
        for index, handle in self._handles():
            if handle is NA:
                gpus.append({"index": index, "error": "GPU not readable (lost or busy)"})
                continue
            memory = self.query("nvmlDeviceGetMemoryInfo", handle)
            rates = self.query("nvmlDeviceGetUtilizationRates", handle)
            power = self.query("nvmlDeviceGetPowerUsage", handle)
            limit = self.query("nvmlDeviceGetEnforcedPowerLimit", handle)
            procs = self.query_first(
                (
                    "nvmlDeviceGetComputeRunningProcesses_v3",
                    "nvmlDeviceGetComputeRunningProcesses_v2",
                    "nvmlDeviceGetComputeRunningProcesses",
                ),
                handle,
            )
            gpus.append(
                {
                    "index": index,
                    "uuid": _text(self.query("nvmlDeviceGetUUID", handle)),
                    "utilization_pct": _value(getattr(rates, "gpu", NA)),
                    "memory_used_bytes": _value(getattr(memory, "used", NA)),
                    "memory_total_bytes": _value(getattr(memory, "total", NA)),
                    "temperature_c": _value(
                        self.query(
                            "nvmlDeviceGetTemperature",
                            handle,
                            getattr(self._nvml, "NVML_TEMPERATURE_GPU", 0),
                        )
                    ),
                    "power_w": round(power / 1000.0, 1) if isinstance(power, int) else NA,
                    "power_limit_w": round(limit / 1000.0, 1) if isinstance(limit, int) else NA,
                    "processes": [
                        {
                            "pid": _value(getattr(p, "pid", NA)),
                            "used_memory_bytes": _value(getattr(p, "usedGpuMemory", NA)),
                        }
                        for p in (procs or [])
                    ],
                }
            )
        return {"fake": False, "at": at, "gpus": gpus}

    def close(self) -> None:
        if self._started:
            self.query("nvmlShutdown")
            self._started = False


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else NA


def _value(value: Any) -> int | None:
    if not isinstance(value, int) or isinstance(value, bool) or value >= _NVML_VALUE_NOT_AVAILABLE:
        return NA
    return value


# -- fake GPUs ----------------------------------------------------------------------

# Board power (W) of the models a demo is likely to name; others get 300 W.
_TDP_W = {
    "H200": 700,
    "H100": 700,
    "A100": 400,
    "L40S": 350,
    "L40": 300,
    "L4": 72,
    "A10": 150,
    "A10G": 300,
    "A6000": 300,
    "V100": 300,
    "T4": 70,
    "RTX4090": 450,
}
_FAKE_NAMESPACE = uuid.UUID("5a7c0e1e-8d2b-4c55-9f1e-6b3c2a9d0f10")


class FakeProbe(GpuProbe):
    """Simulated GPUs: deterministic UUIDs, telemetry that follows this agent's jobs."""

    fake = True

    def __init__(self, spec: str, node_name: str = "fake", busy: BusyGpus | None = None):
        self.spec = spec
        self._busy = busy or dict
        self._gpus: list[dict[str, Any]] = []
        for index, (model, mem_gb) in enumerate(parse_fake_spec(spec)):
            key = f"{node_name}/{index}/{model}-{mem_gb}GB"
            self._gpus.append(
                {
                    "index": index,
                    "uuid": f"GPU-{uuid.uuid5(_FAKE_NAMESPACE, key)}",
                    "name": f"NVIDIA {model} {mem_gb}GB (fake)",
                    "gpu_type": model,
                    "memory_total_bytes": mem_gb * GIB,
                }
            )
        seed = int(hashlib.sha256((f"{node_name}|{spec}").encode()).hexdigest()[:16], 16)
        self._rng = random.Random(seed)
        self._state = [{"util": 0.0, "mem": 0.004, "temp": 32.0, "power": 0.1} for _ in self._gpus]

    def inventory(self) -> dict[str, Any]:
        return {
            "fake": True,
            "available": True,
            "gpus": [dict(g) for g in self._gpus],
            "driver": {
                "driver_version": "fake",
                "nvml_version": "fake",
                "cuda_driver_version": "fake",
            },
            "message": f"fake GPUs ({self.spec}): simulated, not real hardware",
            "hint": None,
        }

    def telemetry(self) -> dict[str, Any]:
        busy = self._busy()
        gpus = []
        for gpu, state in zip(self._gpus, self._state):
            pids = busy.get(gpu["index"], [])
            on = bool(pids)
            # Move halfway to the target each sample, plus bounded noise: plausible, stable.
            targets = {
                "util": 93.0 if on else 1.0,
                "mem": 0.78 if on else 0.004,
                "temp": 71.0 if on else 33.0,
                "power": 0.85 if on else 0.1,
            }
            noise = {"util": 5.0 if on else 1.0, "mem": 0.02, "temp": 1.5, "power": 0.04}
            for key, target in targets.items():
                moved = state[key] + (target - state[key]) * 0.5
                state[key] = moved + self._rng.uniform(-noise[key], noise[key])
            total = gpu["memory_total_bytes"]
            tdp = _TDP_W.get(gpu["gpu_type"], 300)
            used = int(_clamp(state["mem"], 0.001, 0.98) * total)
            gpus.append(
                {
                    "index": gpu["index"],
                    "uuid": gpu["uuid"],
                    "utilization_pct": int(round(_clamp(state["util"], 0, 100))),
                    "memory_used_bytes": used,
                    "memory_total_bytes": total,
                    "temperature_c": int(round(_clamp(state["temp"], 25, 90))),
                    "power_w": round(_clamp(state["power"], 0.05, 1.0) * tdp, 1),
                    "power_limit_w": float(tdp),
                    "processes": [
                        {"pid": pid, "used_memory_bytes": used // len(pids)} for pid in pids
                    ],
                }
            )
        return {"fake": True, "at": time.time(), "gpus": gpus}


def _clamp(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))


def make_probe(fake_spec: str | None, node_name: str, busy: BusyGpus | None = None) -> GpuProbe:
    """FakeProbe when a spec is given, else NvmlProbe (which explains a missing driver)."""
    if fake_spec:
        return FakeProbe(fake_spec, node_name=node_name, busy=busy)
    return NvmlProbe()
