"""The cluster's config.toml: nodes, node types and prices, tiers, grace periods, operators.

`config.example.toml` documents every key; this module is the schema it follows.
"""

from __future__ import annotations

import re
import unicodedata
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from skyops_agent.protocol import parse_fake_spec as agent_parse_fake_spec

from .errors import InputError, loads_toml, read_toml, validation_messages
from .money import MICRO, to_micro

FAKE_SPEC = re.compile(r"^\s*(\d+)\s*x\s*([A-Za-z0-9]+)(?:-(\d+)GB)?\s*$")


def parse_fake_gpus(spec: str) -> list[tuple[int, str, int | None]]:
    """'8xH100-80GB' or '4xL40S-48GB,2xA100' -> [(count, type, mem_gb)]. The agent's own
    parser judges the spec, so a config the console accepts is one the agent runs."""
    agent_parse_fake_spec(spec)
    out = []
    for part in spec.split(","):
        m = FAKE_SPEC.match(part)
        if not m:
            raise ValueError(f"fake_gpus part {part.strip()!r} is not like '8xH100-80GB'")
        out.append((int(m.group(1)), m.group(2).upper(), int(m.group(3)) if m.group(3) else None))
    return out


# Bounds (config.example.toml, docs/reliability.md). Money is kept as integer
# micro-units in SQLite's signed 64-bit INTEGER (at most 9.2e18 micro-units): an amount
# of at most MAX_AMOUNT (1e15 micro-units) leaves room for thousands of accounts, each
# at its balance plus its credit, in the ledger's sums (revenue, money paid in). A rate
# above MAX_RATE is a typo in any currency; at it, one GPU's hour costs 1e12 micro-units.
MAX_AMOUNT = 1_000_000_000  # currency units: a balance, credit limit or opening balance
MAX_RATE = 1_000_000  # currency units per GPU-hour
MAX_NODE_GROUP = 4096  # nodes in one `count` group (config.toml and plans)
MAX_GRACE_S = 86_400.0  # checkpoint and stop graces: a job must stop within a day
MAX_INTERVAL_S = 3600.0  # scheduler tick, billing interval, heartbeat timeout
MAX_DURATION_S = 30 * 86_400.0  # slices, backoffs, warnings, simulated stop delays
MAX_GPU_HOURS = 1e9  # a discount tier's threshold


def plain_text(v: str) -> str:
    """Text the console shows as is: no Rich markup ("[bold]", "[/x]") and no control
    or format characters (a terminal would act on them)."""
    for c in v:
        if c in "[]\\":
            raise ValueError(f"{c!r} is not allowed (it would be read as console markup)")
        if unicodedata.category(c) in ("Cc", "Cf"):
            raise ValueError(f"control character {c!r} is not allowed")
    return v


def no_control(v: str) -> str:
    """Paths, hosts and names passed to ssh or the OS: no NUL or other control characters."""
    for c in v:
        if unicodedata.category(c) == "Cc":
            raise ValueError(f"control character {c!r} is not allowed")
    return v


Label = Annotated[str, AfterValidator(plain_text)]
Text = Annotated[str, AfterValidator(no_control)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


Money = Annotated[float, Field(ge=0, le=MAX_AMOUNT)]


class Tier(Strict):
    gpu_hours: float = Field(
        ge=0, le=MAX_GPU_HOURS, description="total committed GPU-hours at which it applies"
    )
    discount: float = Field(ge=0, le=0.5, description="fraction off the standard rate, at most 0.5")


DEFAULT_TIERS = (
    Tier(gpu_hours=24, discount=0.15),
    Tier(gpu_hours=168, discount=0.30),
    Tier(gpu_hours=720, discount=0.50),
)


class NodeType(Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    rate: float = Field(gt=0, le=MAX_RATE, description="standard price per GPU-hour")
    tiers: tuple[Tier, ...] | None = None

    @field_validator("rate")
    @classmethod
    def _whole_micro(cls, v: float) -> float:
        if to_micro(v) < 1:
            raise ValueError(f"a rate is at least one micro-unit (1/{MICRO:,} of the currency)")
        return v


class NodeConfig(Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    host: Text = Field(default="localhost", min_length=1)
    port: int = Field(default=22, ge=1, le=65535)
    user: Text | None = None
    identity: Text | None = None
    gpu_type: str | None = None
    gpus: int | None = Field(default=None, ge=1, le=64)
    fake_gpus: str | None = None
    count: int = Field(default=1, ge=1, le=MAX_NODE_GROUP)
    python: Text = Field(default="python3", min_length=1)
    agent_dir: Text = Field(default="~/.skyops", min_length=1)
    local: bool = False

    @field_validator("fake_gpus")
    @classmethod
    def _fake(cls, v: str | None) -> str | None:
        if v is not None:
            parse_fake_gpus(v)
        return v

    @model_validator(mode="after")
    def _shape(self) -> NodeConfig:
        if self.fake_gpus is None and (self.gpu_type is None or self.gpus is None):
            # Real nodes report their inventory; but the scheduler needs type and size.
            raise ValueError("give gpu_type and gpus, or fake_gpus (e.g. '8xH100-80GB')")
        return self

    @property
    def resolved_type(self) -> str:
        if self.gpu_type:
            return self.gpu_type
        return parse_fake_gpus(self.fake_gpus or "")[0][1]

    @property
    def resolved_gpus(self) -> int:
        if self.gpus:
            return self.gpus
        return sum(n for n, _, _ in parse_fake_gpus(self.fake_gpus or ""))

    def expand(self) -> list[NodeConfig]:
        """A node group (`count` > 1) becomes count nodes named name-1..name-N."""
        if self.count == 1:
            return [self]
        width = len(str(self.count))
        return [
            self.model_copy(update={"name": f"{self.name}-{i:0{width}d}", "count": 1})
            for i in range(1, self.count + 1)
        ]


class Cluster(Strict):
    name: Label = Field(default="skyops", min_length=1, max_length=64)
    currency: Label = Field(default="$", max_length=8)
    checkpoint_signal: str = Field(default="SIGUSR1", pattern=r"^SIG[A-Z0-9]+$")
    grace_s: float = Field(
        default=120, ge=0, le=MAX_GRACE_S, description="Flex checkpoint grace before SIGTERM"
    )
    stop_grace_s: float = Field(
        default=30, ge=0, le=MAX_GRACE_S, description="SIGTERM grace before SIGKILL"
    )
    shared_checkpoint_path: Text | None = None
    billing_interval_s: float = Field(default=60, gt=0, le=MAX_INTERVAL_S)
    tick_s: float = Field(default=1.0, gt=0, le=MAX_INTERVAL_S)
    heartbeat_timeout_s: float = Field(default=15, gt=0, le=MAX_INTERVAL_S)
    settle_s: float = Field(
        default=5, ge=0, description="seconds after start before preempting for anyone"
    )
    # Jobs on a box (docs/security.md): Skyops user -> Unix user ("*": everyone not
    # listed; unlisted users run as the same name), allowed work and checkpoint folders
    # (empty: the job user's home and /tmp; the agent's own and the shared checkpoint
    # folder), and what an unpacked checkpoint may grow to.
    unix_users: dict[
        Annotated[str, Field(pattern=r"^(\*|[A-Za-z0-9_.@-]{1,64})$")],
        Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_-]{0,31}$")],
    ] = {}
    work_roots: tuple[Annotated[str, Field(pattern=r"^/[^\x00-\x1f]*$")], ...] = ()
    checkpoint_roots: tuple[Annotated[str, Field(pattern=r"^/[^\x00-\x1f]*$")], ...] = ()
    unpack_max_bytes: int = Field(default=16 * 1024**3, gt=0, le=2**50)
    unpack_max_ratio: float = Field(default=200.0, ge=1, le=1e6)
    # Where the leading scheduler serves the API (docs/api.md); default: beside the
    # state file. A service for several Unix users puts it in a folder they can reach.
    api_socket: Annotated[str, Field(pattern=r"^[^\x00-\x1f]{1,100}$")] | None = None

    def unix_user(self, user: str) -> str:
        """The Unix account a Skyops user's jobs run as on a box."""
        return self.unix_users.get(user) or self.unix_users.get("*") or user


class Pricing(Strict):
    flex_floor: float = Field(default=0.30, gt=0, le=1)
    min_outbid: float = Field(default=0.05, ge=0, le=10)
    min_slice_s: float = Field(default=300, ge=0, le=MAX_DURATION_S)
    early_exit_refund: float = Field(default=0.5, ge=0, le=1)
    min_funded_minutes: float = Field(default=10, ge=0, le=MAX_DURATION_S / 60)
    warn_before_s: tuple[Annotated[float, Field(le=MAX_DURATION_S)], ...] = (600, 60)
    retry_backoff_s: float = Field(default=30, ge=0, le=MAX_DURATION_S)
    retry_backoff_max_s: float = Field(default=3600, ge=0, le=MAX_DURATION_S)
    tiers: tuple[Tier, ...] = DEFAULT_TIERS

    @field_validator("warn_before_s")
    @classmethod
    def _two_warnings(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if len(v) != 2 or v[0] <= v[1] or v[1] <= 0:
            raise ValueError("give two positive numbers, the earlier first, e.g. [600, 60]")
        return v


class UserAccount(Strict):
    name: Label = Field(min_length=1, max_length=64)
    balance: Money = 0


class Accounts(Strict):
    operators: tuple[Annotated[Label, Field(min_length=1, max_length=64)], ...] = ()
    # Members of this Unix group are operators too (docs/security.md).
    operator_group: Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_-]{0,31}$")] | None = None
    default_balance: Money = 1000
    credit_limit: Money = 0
    users: tuple[UserAccount, ...] = ()


class Simulation(Strict):
    initial_balance: Money = 1_000_000_000
    stop_delay_s: float = Field(
        default=5, ge=0, le=MAX_GRACE_S, description="seconds a simulated job takes to stop"
    )


SlurmName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]


class Backend(Strict):
    """What runs the jobs: Skyops's own fleet (agents over SSH or locally) or a Slurm
    cluster (docs/slurm.md); with Slurm, `[[nodes]]` names are Slurm node names."""

    kind: Literal["fleet", "slurm"] = "fleet"
    slurm_conf: Text | None = None
    priority_partition: SlurmName = "priority"
    flex_partition: SlurmName = "flex"
    commit_partition: SlurmName | None = None
    account: SlurmName | None = None
    gres_type: bool = False
    state_dir: Text = Field(default="~/.skyops/slurm", min_length=1)
    poll_s: float = Field(default=0.5, gt=0, le=60)


class Config(Strict):
    cluster: Cluster = Cluster()
    pricing: Pricing = Pricing()
    node_types: tuple[NodeType, ...] = ()
    nodes: tuple[NodeConfig, ...] = ()
    accounts: Accounts = Accounts()
    simulation: Simulation = Simulation()
    backend: Backend = Backend()

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        types = {t.name for t in self.node_types}
        if len(types) != len(self.node_types):
            raise ValueError("node_types: two entries share a name")
        names: set[str] = set()
        for i, n in enumerate(self.nodes):
            if n.resolved_type not in types:
                raise ValueError(
                    f"nodes[{i}] ({n.name}): gpu type {n.resolved_type!r} has no [[node_types]] "
                    f"entry (known: {', '.join(sorted(types)) or 'none'})"
                )
            for e in n.expand():
                if e.name in names:
                    raise ValueError(f"nodes[{i}]: node name {e.name!r} is used twice")
                names.add(e.name)
        return self

    # Derived, in micro-units
    def rate(self, gpu_type: str) -> int:
        for t in self.node_types:
            if t.name == gpu_type:
                return to_micro(t.rate)
        raise KeyError(gpu_type)

    def floor(self, gpu_type: str) -> int:
        return int(Fraction(self.rate(gpu_type)) * Fraction(str(self.pricing.flex_floor)))

    def tiers(self, gpu_type: str) -> tuple[Tier, ...]:
        for t in self.node_types:
            if t.name == gpu_type and t.tiers is not None:
                return t.tiers
        return self.pricing.tiers

    def all_nodes(self) -> list[NodeConfig]:
        return [e for n in self.nodes for e in n.expand()]

    def is_operator(self, user: str) -> bool:
        if user in self.accounts.operators:
            return True
        return self.accounts.operator_group is not None and in_unix_group(
            user, self.accounts.operator_group
        )


def load_config(path: str | Path) -> Config:
    path = Path(path).expanduser()
    data = read_toml(path)
    return parse_config(data, str(path))


def parse_config_text(text: str, source: str = "config.toml") -> Config:
    """A config from TOML text, every failure an InputError (load_config without a file)."""
    return parse_config(loads_toml(text, source), source)


def parse_config(data: dict[str, Any], source: str = "config") -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise InputError(validation_messages(source, e)) from None


DEMO_CONFIG: dict[str, Any] = {
    "cluster": {"name": "demo", "grace_s": 20, "stop_grace_s": 5},
    "node_types": [
        {"name": "H100", "rate": 2.50},
        {"name": "A100", "rate": 1.60},
        {"name": "L40S", "rate": 0.90},
    ],
    "nodes": [
        {"name": "h100-a", "fake_gpus": "8xH100-80GB", "local": True},
        {"name": "h100-b", "fake_gpus": "8xH100-80GB", "local": True},
        {"name": "a100-a", "fake_gpus": "8xA100-80GB", "local": True},
        {"name": "l40s-a", "fake_gpus": "4xL40S-48GB", "local": True},
    ],
    "accounts": {"operators": [], "default_balance": 5000},
}


def demo_config(operator: str | None = None) -> Config:
    """The demo grid; `operator` (the person trying it) may act on every job."""
    data = dict(DEMO_CONFIG)
    if operator:
        data["accounts"] = {**DEMO_CONFIG["accounts"], "operators": [operator]}
    return parse_config(data, "demo config")


def in_unix_group(user: str, group: str) -> bool:
    """Whether a Unix user is in a Unix group (as a member or by its primary group)."""
    import grp
    import pwd

    try:
        g = grp.getgrnam(group)
    except KeyError:
        return False
    if user in g.gr_mem:
        return True
    try:
        return pwd.getpwnam(user).pw_gid == g.gr_gid
    except KeyError:
        return False
