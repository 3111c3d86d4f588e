"""The `weldsim` command: readable errors (exit 1, no traceback) and the mesh pipeline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import pytest
from click.testing import CliRunner

from weldsim_hpc.cli import main

ROOT = Path(__file__).resolve().parent.parent
HORN = ROOT / "examples" / "horn_20khz_stepped_modal.toml"
WELDSIM = Path(sys.executable).parent / "weldsim"


def run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def bad_case(tmp_path: Path) -> Path:
    text = HORN.read_text().replace('horn = "ti6al4v"', 'horn = "Ti64x"').replace(
        "fillet_radius_m = 0.004", "fillet_radius_m = -0.004"
    )
    path = tmp_path / "bad.toml"
    path.write_text(text)
    return path


def test_validate_prints_every_error_and_exits_1_without_traceback(tmp_path):
    proc = subprocess.run([str(WELDSIM), "validate", str(bad_case(tmp_path))], capture_output=True, text=True)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "geometry.fillet_radius_m" in proc.stderr


def test_validate_reports_material_error_with_suggestion(tmp_path):
    path = bad_case(tmp_path)
    path.write_text(HORN.read_text().replace('horn = "ti6al4v"', 'horn = "Ti64x"'))
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 1
    assert "materials.horn: unknown material 'Ti64x' (did you mean 'ti6al4v'?)" in result.output


def test_validate_accepts_an_example():
    result = run("validate", HORN, "--preset", "ci")
    assert result.exit_code == 0 and "valid" in result.output


def test_schema_is_json_schema_of_the_case():
    result = run("schema")
    schema = json.loads(result.output)
    assert schema["title"] == "CaseSpec" and "geometry" in schema["properties"]


def test_materials_table_and_show():
    listing = run("materials")
    assert "ti6al4v" in listing.output and "ss304" in listing.output
    detail = run("materials", "show", "ti6al4v")
    assert detail.exit_code == 0 and "Young" in detail.output
    missing = CliRunner().invoke(main, ["materials", "show", "Ti64x"])
    assert missing.exit_code == 1 and "did you mean 'ti6al4v'" in missing.output


@pytest.mark.gmsh
def test_mesh_command_writes_the_mesh_dir_and_prints_the_summary(tmp_path):
    result = run("mesh", HORN, "--preset", "ci", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert "output_face" in result.output and "cells" in result.output
    mesh_dir = tmp_path / "mesh"
    groups = json.loads((mesh_dir / "groups.json").read_text())
    assert set(groups) == {"horn", "input_face", "output_face", "lateral"}
    with h5py.File(mesh_dir / "mesh.h5", "r") as h5:
        assert h5["mesh/topology"].shape[1] == 4 and h5["mesh/topology"].shape[0] > 500
    assert (tmp_path / "geometry" / "geometry.step").stat().st_size > 0


@pytest.mark.gmsh
def test_geometry_command_writes_step_stl_msh_groups(tmp_path):
    result = run("geometry", HORN, "--preset", "ci", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    for name in ("geometry.step", "geometry.stl", "geometry.msh", "groups.json"):
        assert (tmp_path / name).stat().st_size > 0, name


@pytest.mark.gmsh
def test_mesh_command_on_a_corrupt_mesh_file_is_a_clear_error(tmp_path):
    (tmp_path / "horn.msh").write_bytes(b"$MeshFormat\n4.1 0 8\n$EndMeshFormat\n$Nodes\ngarbage\n")
    case = tmp_path / "case.toml"
    case.write_text(
        'name = "from file"\nanalysis = "modal"\n[geometry]\nkind = "mesh_file"\npath = "horn.msh"\n'
        '[materials]\nhorn = "ti6al4v"\n[solver]\ntarget_frequency_Hz = 20000.0\n'
    )
    result = CliRunner().invoke(main, ["mesh", str(case), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "horn.msh" in result.output
    assert not (tmp_path / "out" / "mesh" / "mesh.xdmf").exists()


@pytest.mark.gmsh
def test_mesh_command_from_a_msh_file_with_groups(tmp_path, msh_builder):
    msh_builder(tmp_path / "horn.msh")
    case = tmp_path / "case.toml"
    case.write_text(
        'name = "from file"\nanalysis = "modal"\n[geometry]\nkind = "mesh_file"\npath = "horn.msh"\n'
        '[materials]\nhorn = "ti6al4v"\n[solver]\ntarget_frequency_Hz = 20000.0\n'
        '[[boundary_conditions]]\nboundary = "input_face"\ntype = "fixed"\n'
    )
    result = run("mesh", case, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "out" / "mesh" / "groups.json").read_text())["output_face"]["dim"] == 2
