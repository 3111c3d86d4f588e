"""ExecutorConfig / load_config: defaults → file → environment (WELDSIM_*) → arguments,
merged once into a frozen object; every error names its source and its field."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from weldsim_hpc.errors import WeldSimError
from weldsim_hpc.executors.config import CONFIG_FILE_NAME, ConfigError, ExecutorConfig, load_config


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_defaults_with_an_empty_environment(tmp_path):
    config = load_config({"runs_root": tmp_path}, env={})
    assert config.runs_root == tmp_path.absolute()
    assert (config.executor, config.poll_s, config.heartbeat_s) == ("local", 1.0, 2.0)
    assert (config.cancel_grace_s, config.max_resubmissions, config.local_max_runs) == (10.0, 1, 2)
    assert config.slurm_mpi == "pmix" and config.slurm_binds == ()
    assert config.lost_after_s == 4.0
    assert config.agent_dir == tmp_path.absolute() / ".agent"


def test_relative_runs_root_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_config({"runs_root": "rel/runs"}, env={})
    assert config.runs_root == tmp_path / "rel" / "runs" and config.runs_root.is_absolute()
    assert load_config(env={}).runs_root == tmp_path / "runs"  # default: ./runs


def test_later_sources_win_defaults_file_environment_arguments(tmp_path):
    file = write(tmp_path / "conf.toml", "[executor]\npoll_s = 5.0\nlocal_max_runs = 3\nexecutor = 'slurm'\n"
                                         "slurm_partition = 'file-part'\n")
    env = {"WELDSIM_POLL_S": "3.0", "WELDSIM_SLURM_PARTITION": "env-part", "WELDSIM_CONFIG": str(file)}
    config = load_config({"runs_root": tmp_path, "poll_s": 0.5, "slurm_partition": None}, env=env)
    assert config.poll_s == 0.5  # arguments beat environment, file, default
    assert config.slurm_partition == "env-part"  # an unset (None) argument overrides nothing
    assert config.local_max_runs == 3 and config.executor == "slurm"  # from the file only
    assert config.heartbeat_s == 2.0  # default: nobody set it
    env_only = load_config({"runs_root": tmp_path}, env=env)
    assert env_only.poll_s == 3.0


def test_file_is_explicit_then_weldsim_config_then_runs_root_weldsim_toml(tmp_path):
    in_root = write(tmp_path / "runs" / CONFIG_FILE_NAME, "poll_s = 7.0\n")  # top-level keys work too
    named = write(tmp_path / "named.toml", "[executor]\npoll_s = 8.0\n")
    explicit = write(tmp_path / "explicit.toml", "[executor]\npoll_s = 9.0\n")
    root = in_root.parent
    assert load_config({"runs_root": root}, env={}).poll_s == 7.0
    assert load_config({"runs_root": root}, env={"WELDSIM_CONFIG": str(named)}).poll_s == 8.0
    assert load_config({"runs_root": root}, env={"WELDSIM_CONFIG": str(named)}, file=explicit).poll_s == 9.0
    # the runs root that locates weldsim.toml comes from the arguments, else the environment
    assert load_config(env={"WELDSIM_RUNS_ROOT": str(root)}).poll_s == 7.0
    assert load_config({"runs_root": tmp_path / "elsewhere"}, env={"WELDSIM_RUNS_ROOT": str(root)}).poll_s == 1.0


def test_environment_values_are_parsed_to_the_field_types(tmp_path):
    env = {"WELDSIM_LOCAL_MAX_RUNS": "4", "WELDSIM_HEARTBEAT_S": "0.5", "WELDSIM_EXECUTOR": "slurm",
           "WELDSIM_SLURM_IMAGE": "/img/weldsim.sif", "WELDSIM_MAX_RESUBMISSIONS": "0",
           "WELDSIM_RUNS_ROOT": str(tmp_path / "r"), "WELDSIM_UNRELATED_THING": "x", "OTHER_POLL_S": "y"}
    config = load_config(env=env)
    assert config.local_max_runs == 4 and config.heartbeat_s == 0.5 and config.lost_after_s == 1.0
    assert config.executor == "slurm" and config.slurm_image == "/img/weldsim.sif"
    assert config.max_resubmissions == 0 and config.runs_root == tmp_path / "r"


def test_slurm_binds_from_the_environment_split_on_the_path_separator(tmp_path):
    env = {"WELDSIM_SLURM_BINDS": "/scratch/runs:/data/meshes::/opt/x:"}
    config = load_config({"runs_root": tmp_path}, env=env)
    assert config.slurm_binds == ("/scratch/runs", "/data/meshes", "/opt/x")
    assert load_config({"runs_root": tmp_path}, env={"WELDSIM_SLURM_BINDS": ""}).slurm_binds == ()
    file = write(tmp_path / "c.toml", "[executor]\nslurm_binds = ['/a', '/b']\n")
    assert load_config({"runs_root": tmp_path}, env={}, file=file).slurm_binds == ("/a", "/b")


def test_the_result_is_frozen(tmp_path):
    config = load_config({"runs_root": tmp_path}, env={})
    with pytest.raises(ValidationError, match="frozen"):
        config.poll_s = 0.1
    with pytest.raises(ValidationError, match="frozen"):
        config.runs_root = Path("/elsewhere")
    assert config.poll_s == 1.0
    changed = config.model_copy(update={"poll_s": 0.1})  # a copy, never the shared object
    assert config.poll_s == 1.0 and changed.poll_s == 0.1


def test_error_in_the_file_names_the_file_and_the_field(tmp_path):
    file = write(tmp_path / "bad.toml", "[executor]\npoll_s = -1\n")
    with pytest.raises(ConfigError) as info:
        load_config({"runs_root": tmp_path}, env={}, file=file)
    assert str(file) in str(info.value) and "poll_s" in str(info.value) and "greater than 0" in str(info.value)
    assert isinstance(info.value, WeldSimError)


def test_unknown_key_in_the_file_names_the_file_and_the_key(tmp_path):
    file = write(tmp_path / "runs" / CONFIG_FILE_NAME, "[executor]\npoll_seconds = 2\n")
    with pytest.raises(ConfigError, match=r"from .*weldsim\.toml: poll_seconds: Extra inputs are not permitted"):
        load_config({"runs_root": file.parent}, env={})


def test_error_in_the_environment_names_the_environment_and_the_field(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config({"runs_root": tmp_path}, env={"WELDSIM_LOCAL_MAX_RUNS": "many"})
    text = str(info.value)
    assert "the environment (WELDSIM_*)" in text and "local_max_runs" in text
    with pytest.raises(ConfigError, match=r"environment.*executor: Input should be 'local' or 'slurm'"):
        load_config({"runs_root": tmp_path}, env={"WELDSIM_EXECUTOR": "pbs"})


def test_a_valid_file_does_not_take_the_blame_for_the_environment(tmp_path):
    file = write(tmp_path / "ok.toml", "[executor]\npoll_s = 2.0\n")
    with pytest.raises(ConfigError) as info:
        load_config({"runs_root": tmp_path}, env={"WELDSIM_POLL_S": "0", "WELDSIM_CONFIG": str(file)})
    assert "the environment" in str(info.value) and str(file) not in str(info.value)


def test_error_in_the_arguments_names_the_arguments_and_the_field(tmp_path):
    with pytest.raises(ConfigError, match=r"from the arguments: cancel_grace_s: .*greater than or equal to 0"):
        load_config({"runs_root": tmp_path, "cancel_grace_s": -5}, env={})
    with pytest.raises(ConfigError, match=r"from the arguments: no_such_option: Extra inputs"):
        load_config({"runs_root": tmp_path, "no_such_option": 1}, env={})


def test_unreadable_or_invalid_toml_file_is_a_clear_error(tmp_path):
    missing = tmp_path / "missing.toml"
    with pytest.raises(ConfigError, match=r"missing\.toml: cannot read the configuration file"):
        load_config({"runs_root": tmp_path}, env={"WELDSIM_CONFIG": str(missing)})
    broken = write(tmp_path / "broken.toml", "[executor\npoll_s = ")
    with pytest.raises(ConfigError, match=r"broken\.toml: not valid TOML"):
        load_config({"runs_root": tmp_path}, env={}, file=broken)
    not_table = write(tmp_path / "nt.toml", "executor = 3\n")
    with pytest.raises(ConfigError, match=r"\[executor\] must be a table"):
        load_config({"runs_root": tmp_path}, env={}, file=not_table)


def test_every_field_is_documented():
    for name, field in ExecutorConfig.model_fields.items():
        assert field.description and len(field.description) > 10, name
