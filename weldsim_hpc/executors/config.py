"""Executor configuration: merged once, frozen, documented.

Why one frozen object: the agent, its executors and the CLI must agree on the runs root,
the scheduler and its limits; a setting read from the environment in one place and from
a file in another is how two agents end up owning one runs root. Sources, later ones win:

    defaults  →  file (TOML: $WELDSIM_CONFIG, else <runs_root>/weldsim.toml)
              →  environment (WELDSIM_<FIELD>, e.g. WELDSIM_EXECUTOR=slurm,
                 WELDSIM_SLURM_PARTITION=debug, WELDSIM_LOCAL_MAX_RUNS=4)
              →  arguments (keyword overrides, e.g. from the CLI)

Every field, its default and its meaning is in `ExecutorConfig`'s field descriptions
(`weldsim agent config` prints the merged result). Unknown keys are errors, naming the
source they came from.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import WeldSimError

ENV_PREFIX = "WELDSIM_"
CONFIG_FILE_NAME = "weldsim.toml"


class ConfigError(WeldSimError):
    """The executor configuration is invalid (names the source and the field)."""


class ExecutorConfig(BaseModel):
    """Where runs live, which scheduler runs them, and the limits the agent keeps."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    runs_root: Path = Field(Path("runs"), description="directory holding one directory per run")
    executor: Literal["local", "slurm"] = Field("local", description="default executor for `weldsim submit`")
    python: str = Field("", description="interpreter that runs the entry point (default: the agent's own)")
    heartbeat_s: float = Field(2.0, gt=0, description="interval of progress rows; lost after twice this "
                                                     "without a row, a final status or a scheduler record")
    poll_s: float = Field(1.0, gt=0, description="how often the agent checks its runs")
    cancel_grace_s: float = Field(10.0, ge=0, description="SIGTERM/scancel → SIGKILL after this many seconds")
    max_resubmissions: int = Field(1, ge=0, description="resubmissions of a run lost to a node or agent failure")
    # local executor
    local_max_runs: int = Field(2, ge=1, description="runs the local executor runs at once")
    # slurm executor
    slurm_partition: str | None = Field(None, description="partition (sbatch --partition)")
    slurm_account: str | None = Field(None, description="account (sbatch --account)")
    slurm_qos: str | None = Field(None, description="QOS (sbatch --qos)")
    slurm_walltime: str = Field("01:00:00", description="default walltime of a run's job")
    slurm_mem: str | None = Field(None, description="memory per job, e.g. 4G (default: the partition's)")
    slurm_mpi: str = Field("pmix", pattern=r"^[a-z0-9_]+$", description="srun --mpi plugin (pmix is the one that works with OpenMPI 4.1)")
    slurm_signal_lead_s: int = Field(60, ge=0, description="USR1 this many seconds before the walltime: "
                                                           "the run checkpoints and ends interrupted")
    slurm_sweep_max_jobs: int = Field(2, ge=1, description="adaptive worker jobs shared by single-rank runs")
    slurm_image: str | None = Field(None, description="Apptainer image to run the entry point in")
    slurm_binds: tuple[str, ...] = Field((), description="extra paths bound into the image (runs root always)")
    slurm_command_timeout_s: float = Field(30.0, gt=0, description="timeout of sbatch/squeue/sacct/scancel")

    @property
    def lost_after_s(self) -> float:
        return 2.0 * self.heartbeat_s

    @property
    def agent_dir(self) -> Path:
        """<runs_root>/.agent: the agent's pid, address, key and lock."""
        return self.runs_root / ".agent"


def _from_environment(env: Mapping[str, str]) -> dict[str, Any]:
    fields = ExecutorConfig.model_fields
    out: dict[str, Any] = {}
    for key, value in env.items():
        if not key.startswith(ENV_PREFIX):
            continue
        name = key[len(ENV_PREFIX):].lower()
        if name in fields:
            out[name] = tuple(p for p in value.split(os.pathsep) if p) if name == "slurm_binds" else value
    return out


def _read_file(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration file ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    section = data.get("executor", data)  # [executor] table, or the keys at top level
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: [executor] must be a table")
    return section


def _describe(exc: ValidationError, source: str) -> str:
    parts = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "(root)"
        parts.append(f"{field}: {err['msg']}")
    return f"invalid executor configuration from {source}: " + "; ".join(parts)


def load_config(overrides: Mapping[str, Any] | None = None, *, env: Mapping[str, str] | None = None,
                file: str | os.PathLike | None = None) -> ExecutorConfig:
    """Merge defaults → file → environment → overrides into one frozen ExecutorConfig.

    `overrides` values of None are ignored (an unset CLI option overrides nothing). The
    file is `file`, else $WELDSIM_CONFIG, else <runs_root>/weldsim.toml if it exists
    (runs_root itself taken from overrides, environment or default, in that order).
    """
    env = os.environ if env is None else env
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    from_env = _from_environment(env)
    layers: list[tuple[str, dict[str, Any]]] = []
    runs_root = Path(overrides.get("runs_root") or from_env.get("runs_root") or ExecutorConfig().runs_root)
    path = Path(file) if file else Path(env[ENV_PREFIX + "CONFIG"]) if env.get(ENV_PREFIX + "CONFIG") else None
    if path is None and (runs_root / CONFIG_FILE_NAME).is_file():
        path = runs_root / CONFIG_FILE_NAME
    if path is not None:
        layers.append((str(path), _read_file(path)))
    layers += [("the environment (WELDSIM_*)", from_env), ("the arguments", overrides)]
    merged: dict[str, Any] = {}
    for source, values in layers:
        merged.update(values)
        try:  # validate after each layer, so the error names the layer that broke it
            ExecutorConfig(**merged)
        except ValidationError as exc:
            raise ConfigError(_describe(exc, source)) from None
    config = ExecutorConfig(**merged)
    return config.model_copy(update={"runs_root": config.runs_root.absolute()})
