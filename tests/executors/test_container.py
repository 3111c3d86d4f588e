"""weldsim_hpc.executors.container: the `apptainer exec --bind … IMAGE` argv prefix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from weldsim_hpc.errors import WeldSimError
from weldsim_hpc.executors.container import ContainerConfigError, apptainer_prefix, python_in_image


@pytest.fixture()
def image(tmp_path: Path) -> Path:
    path = tmp_path / "weldsim-hpc_0.1.0.sif"
    path.write_bytes(b"SIF stand-in")
    return path


def test_prefix_binds_each_path_at_the_same_place(image):
    argv = apptainer_prefix(image, ["/scratch/runs", Path("/data/meshes")])
    assert argv == ["apptainer", "exec", "--bind", "/scratch/runs:/scratch/runs,/data/meshes:/data/meshes",
                    str(image)]
    assert all(isinstance(a, str) for a in argv)


def test_full_job_step_reads_as_documented(image):
    step = [*apptainer_prefix(image, ["/scratch/runs"]), python_in_image(), "-m", "weldsim_hpc.run",
            "/scratch/runs/k3v9x0q2m7ab"]
    assert step == ["apptainer", "exec", "--bind", "/scratch/runs:/scratch/runs", str(image),
                    "python3", "-m", "weldsim_hpc.run", "/scratch/runs/k3v9x0q2m7ab"]


def test_python_in_image_is_the_system_python():
    assert python_in_image() == "python3"


def test_repeated_and_unnormalised_binds_appear_once_in_order(image):
    argv = apptainer_prefix(image, ["/b/", "/a", "/b", "/a/./", "/c//d"])
    assert argv[3] == "/b:/b,/a:/a,/c/d:/c/d"


def test_no_binds_leaves_out_the_option(image):
    assert apptainer_prefix(image, []) == ["apptainer", "exec", str(image)]


def test_other_container_program(image):
    assert apptainer_prefix(image, ["/x"], apptainer="singularity")[:2] == ["singularity", "exec"]
    assert apptainer_prefix(image, ["/x"], apptainer="/opt/apptainer/bin/apptainer")[0] == \
        "/opt/apptainer/bin/apptainer"


def test_relative_image_comes_back_absolute(image, monkeypatch):
    monkeypatch.chdir(image.parent)
    argv = apptainer_prefix(image.name, ["/x"])
    assert argv[-1] == str(image)
    assert Path(argv[-1]).is_absolute()


def test_legacy_simg_is_accepted(tmp_path):
    legacy = tmp_path / "old.simg"
    legacy.write_bytes(b"x")
    assert apptainer_prefix(legacy, ["/x"])[-1] == str(legacy)


@pytest.mark.parametrize("name", ["image.img", "image.sif.bak", "image", "image.SIF.tar"])
def test_image_with_another_suffix_is_refused(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"x")
    with pytest.raises(ValueError, match=r"\.sif"):
        apptainer_prefix(path, ["/x"])


def test_missing_image_is_refused_with_its_path(tmp_path):
    missing = tmp_path / "nope.sif"
    with pytest.raises(ValueError, match="does not exist") as err:
        apptainer_prefix(missing, ["/x"])
    assert str(missing) in str(err.value)


def test_directory_named_like_an_image_is_refused(tmp_path):
    sandbox = tmp_path / "sandbox.sif"
    sandbox.mkdir()
    with pytest.raises(ValueError, match="directory"):
        apptainer_prefix(sandbox, ["/x"])


def test_empty_image_is_refused():
    with pytest.raises(ValueError, match="empty"):
        apptainer_prefix("", ["/x"])


@pytest.mark.parametrize("bind, words", [
    ("runs", "absolute"),
    ("./runs", "absolute"),
    ("", "absolute"),
    ("/scratch/a,b", "','"),
    ("/scratch/a:b", "':'"),
    ("/scratch/a:b,c", "',' and ':'"),
    ("/", "whole|own file system"),
])
def test_bad_bind_paths_are_refused_and_explained(image, bind, words):
    with pytest.raises(ValueError, match=words) as err:
        apptainer_prefix(image, ["/fine", bind])
    assert repr(bind) in str(err.value) or bind == "/"


def test_a_single_path_instead_of_a_list_is_refused(image):
    # a str is a Sequence too: "/scratch" would otherwise become eight one-letter binds
    with pytest.raises(ValueError, match="list of paths"):
        apptainer_prefix(image, "/scratch/runs")
    with pytest.raises(ValueError, match="list of paths"):
        apptainer_prefix(image, Path("/scratch/runs"))


@pytest.mark.parametrize("program", ["", " apptainer", "apptainer exec", "appt\tainer"])
def test_bad_container_program_is_refused(image, program):
    with pytest.raises(ValueError, match="container program"):
        apptainer_prefix(image, ["/x"], apptainer=program)


def test_errors_are_user_errors_and_value_errors(tmp_path):
    with pytest.raises(ContainerConfigError) as err:
        apptainer_prefix(tmp_path / "x.sif", [])
    assert isinstance(err.value, ValueError) and isinstance(err.value, WeldSimError)


def test_bind_paths_need_not_exist_on_this_machine(image):
    # they are the compute node's paths; only the image is checked on disk
    argv = apptainer_prefix(image, ["/nonexistent/runs-on-the-cluster"])
    assert argv[3] == "/nonexistent/runs-on-the-cluster:/nonexistent/runs-on-the-cluster"


def test_module_imports_no_mpi():
    code = ("import sys, weldsim_hpc.executors.container; "
            "print(sorted(m for m in ('mpi4py', 'dolfinx', 'petsc4py') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
