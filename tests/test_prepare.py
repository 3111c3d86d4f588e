"""prepare_run builds the run directory of DESIGN.md atomically; load_run_case reads it back.

Meshing runs gmsh in this process (the `ci` presets keep it to about a second per case).
Nothing here may import mpi4py or dolfinx: the plain test process launches mpirun later.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from weldsim_hpc import prepare as prepare_module
from weldsim_hpc.case import CaseSpec
from weldsim_hpc.case_io import apply_preset, load_case, parse_case, read_case_data
from weldsim_hpc.errors import CaseValidationError, GeometryError
from weldsim_hpc.materials import PROPERTY_FIELDS, get_material
from weldsim_hpc.mesh import read_mesh_dir
from weldsim_hpc.prepare import (
    RunExistsError,
    case_hash,
    load_run_case,
    original_material_id,
    prepare_run,
    run_materials,
)
from weldsim_hpc.run_paths import RunIdError, RunPaths, read_attempts, record_attempt_end, record_attempt_start

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
EXAMPLE_FILES = sorted(EXAMPLES.glob("*.toml"))
HORN = EXAMPLES / "horn_20khz_stepped_modal.toml"
STACK = EXAMPLES / "tab_weld_cu_al_transient.toml"
TOP_LEVEL = {"case.json", "mesh", "geometry", "results", "provenance.json", "attempts.json"}

pytestmark = pytest.mark.gmsh


def ci_data(path: Path) -> dict:
    return apply_preset(read_case_data(path), "ci")


def listing(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


@pytest.fixture(scope="module")
def stack_run(tmp_path_factory) -> RunPaths:
    return prepare_run(load_case(STACK, preset="ci"), tmp_path_factory.mktemp("runs"))


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.stem)
def test_layout_is_the_design_run_directory(path, tmp_path):
    case = load_case(path, preset="ci")
    paths = prepare_run(case, tmp_path / "runs")
    assert [p.name for p in (tmp_path / "runs").iterdir()] == [paths.run_id]  # no staging left
    assert {p.name for p in paths.root.iterdir()} == TOP_LEVEL
    assert {p.name for p in paths.mesh_dir.iterdir()} == {"mesh.xdmf", "mesh.h5", "groups.json"}
    assert paths.mesh_xdmf.is_file() and paths.groups_json.is_file()
    assert {p.suffix for p in paths.geometry_dir.iterdir()} >= {".step", ".msh"}
    assert list(paths.results_dir.iterdir()) == []
    assert read_attempts(paths) == []
    assert not paths.progress_h5.exists() and not paths.solver_log.exists()
    as_run = load_run_case(paths)
    assert as_run.analysis == case.analysis and as_run.geometry == case.geometry
    assert set(as_run.materials) == set(read_mesh_dir(paths.mesh_dir).group_names(3))


def test_case_json_inlines_every_material(stack_run):
    data = json.loads(stack_run.case_json.read_text())
    assert data["custom_materials"] == {}
    assert set(data["materials"]) == {"anvil", "tab", "foil_stack", "horn_tip"}
    for volume, record in data["materials"].items():
        assert isinstance(record, dict) and set(PROPERTY_FIELDS) <= set(record), volume
    assert data["materials"]["anvil"]["id"] == "d2.as_run"
    assert original_material_id(data["materials"]["tab"]["id"]) == "cu_c110"
    builtin = get_material("al1060").model_dump(mode="json")
    assert {**data["materials"]["foil_stack"], "id": "al1060"} == builtin
    # an ordinary CaseSpec: the generic loader and material resolution work unchanged
    case = parse_case(data, base_dir=stack_run.root)
    mats = run_materials(case)
    assert mats["tab"].youngs_modulus_Pa == get_material("cu_c110").youngs_modulus_Pa
    assert load_run_case(stack_run) == case


def test_provenance_has_both_hashes_and_versions(stack_run):
    prov = json.loads(stack_run.provenance_json.read_text())
    data = json.loads(stack_run.case_json.read_text())
    assert prov["run_id"] == stack_run.run_id
    assert prov["case_hash"] == case_hash(data) and len(prov["case_hash"]) == 64
    assert prov["mesh_hash"] == read_mesh_dir(stack_run.mesh_dir).digest()
    assert prov["code"]["weldsim_hpc"]
    assert prov["backend_requested"] == "auto" and prov["ranks"] == 1
    assert prov["host"] and prov["python"]["version"].startswith("3.")
    for lib in ("numpy", "scipy", "h5py", "pydantic", "gmsh"):
        assert prov["libraries"][lib], lib
    assert {"fenics-dolfinx", "petsc4py", "mpi4py"} <= set(prov["libraries"])
    anvil = prov["materials"]["anvil"]
    assert anvil["id"] == "d2" and anvil["origin"] == "builtin" and anvil["as_run_id"] == "d2.as_run"
    assert anvil["youngs_modulus_Pa"] == get_material("d2").youngs_modulus_Pa


def test_case_hash_follows_the_case(tmp_path):
    runs = tmp_path / "runs"
    first = prepare_run(load_case(HORN, preset="ci"), runs)
    again = prepare_run(load_case(HORN, preset="ci"), runs, ranks=4)
    data = ci_data(HORN)
    data["mesh"]["size_m"] *= 0.9
    changed = prepare_run(parse_case(data, base_dir=EXAMPLES), runs)
    hashes = [json.loads(p.provenance_json.read_text())["case_hash"] for p in (first, again, changed)]
    assert first.run_id != again.run_id
    assert hashes[0] == hashes[1]  # ranks say how, not what: left out of the hash
    assert hashes[2] != hashes[0]
    assert json.loads(again.case_json.read_text())["solver"]["ranks"] == 4
    assert json.loads(again.provenance_json.read_text())["ranks"] == 4
    assert case_hash({"a": 1, "b": [1, 2]}) == case_hash({"b": [1, 2], "a": 1})


def test_individual_foils_take_the_foil_stack_material(tmp_path):
    data = ci_data(STACK)
    data["geometry"].update(individual_foils=True, n_foils=3, foil_thickness_m=0.3e-3)
    paths = prepare_run(parse_case(data, base_dir=EXAMPLES), tmp_path)
    materials = json.loads(paths.case_json.read_text())["materials"]
    assert set(materials) == {"anvil", "tab", "horn_tip", "foil_01", "foil_02", "foil_03"}
    assert {materials[f"foil_0{i}"]["id"] for i in (1, 2, 3)} == {"al1060.as_run"}
    assert set(run_materials(load_run_case(paths))) == set(materials)


def test_custom_and_inline_materials_are_inlined_with_their_origin(tmp_path):
    data = ci_data(HORN)
    steel = {k: v for k, v in get_material("d2").model_dump(mode="json").items() if k not in ("id", "aliases")}
    data["custom_materials"] = {"shop_steel": {**steel, "name": "Shop steel", "density_kg_m3": 7800.0}}
    data["materials"] = {"horn": "shop_steel"}
    paths = prepare_run(parse_case(data, base_dir=EXAMPLES), tmp_path)
    record = json.loads(paths.case_json.read_text())["materials"]["horn"]
    assert record["id"] == "shop_steel.as_run" and record["density_kg_m3"] == 7800.0
    prov = json.loads(paths.provenance_json.read_text())["materials"]["horn"]
    assert (prov["id"], prov["origin"]) == ("shop_steel", "custom")

    data["custom_materials"] = {}
    data["materials"] = {"horn": {**steel, "id": "bar_stock", "density_kg_m3": 7850.0}}
    paths = prepare_run(parse_case(data, base_dir=EXAMPLES), tmp_path)
    assert json.loads(paths.provenance_json.read_text())["materials"]["horn"]["origin"] == "inline"
    assert run_materials(load_run_case(paths))["horn"].density_kg_m3 == 7850.0


def test_invalid_case_leaves_runs_root_untouched(tmp_path):
    data = ci_data(HORN)
    data["materials"] = {"horn": "unobtainium"}
    bad = CaseSpec.model_validate(data)  # passes the models, fails the cross-field checks
    with pytest.raises(CaseValidationError, match="materials.horn"):
        prepare_run(bad, tmp_path / "new_root")
    assert not (tmp_path / "new_root").exists()
    runs = tmp_path / "runs"
    existing = prepare_run(load_case(HORN, preset="ci"), runs)
    before = listing(runs)
    with pytest.raises(CaseValidationError):
        prepare_run(bad, runs)
    with pytest.raises(CaseValidationError, match="ranks"):
        prepare_run(load_case(HORN, preset="ci"), runs, ranks=0)
    assert listing(runs) == before and existing.case_json.is_file()


def test_mesh_failure_leaves_nothing_behind(tmp_path, monkeypatch):
    def failing_mesh(case, out_dir):
        (Path(out_dir) / "geometry").mkdir()
        (Path(out_dir) / "geometry" / "half.step").write_text("partial")
        raise GeometryError("gmsh could not mesh the fillet")

    runs = tmp_path / "runs"
    existing = prepare_run(load_case(HORN, preset="ci"), runs)
    before = listing(runs)
    monkeypatch.setattr(prepare_module, "mesh_case", failing_mesh)
    with pytest.raises(GeometryError, match="fillet"):
        prepare_run(load_case(HORN, preset="ci"), runs)
    assert listing(runs) == before and existing.mesh_xdmf.is_file()
    with pytest.raises(GeometryError):
        prepare_run(load_case(HORN, preset="ci"), tmp_path / "fresh" / "runs")
    assert not (tmp_path / "fresh").exists()


def test_run_ids_given_are_validated_and_never_reused(tmp_path):
    case = load_case(HORN, preset="ci")
    paths = prepare_run(case, tmp_path, run_id="abcdef123456")
    assert paths.root == tmp_path / "abcdef123456"
    before = listing(tmp_path)
    with pytest.raises(RunExistsError):
        prepare_run(case, tmp_path, run_id="abcdef123456")
    for bad in ("../x", "ABC", "abcdef1234567", "../abcdef1234"):
        with pytest.raises(RunIdError):
            prepare_run(case, tmp_path, run_id=bad)
    assert listing(tmp_path) == before


def test_mesh_file_case_validates_from_inside_a_moved_run_dir(tmp_path, msh_builder):
    (tmp_path / "src").mkdir()
    msh = msh_builder(tmp_path / "src" / "my horn.msh")
    data = {"name": "cylinder", "analysis": "modal", "geometry": {"kind": "mesh_file", "path": str(msh)},
            "materials": {"horn": "ti6al4v"}, "solver": {"target_frequency_Hz": 20000.0},
            "boundary_conditions": [{"boundary": "input_face", "type": "fixed"}]}
    paths = prepare_run(parse_case(data), tmp_path / "runs")
    stored = json.loads(paths.case_json.read_text())
    assert stored["geometry"]["path"] == "geometry/source.msh"
    assert (paths.root / "geometry" / "source.msh").read_bytes() == msh.read_bytes()
    msh.unlink()  # the run no longer needs the original
    moved = Path(shutil.move(str(paths.root), str(tmp_path / "scratch" / paths.run_id)))
    case = load_run_case(RunPaths.from_dir(moved))
    assert Path(case.geometry.path) == (moved / "geometry" / "source.msh").resolve()
    prov = json.loads((moved / "provenance.json").read_text())
    assert prov["case_hash"] == case_hash(json.loads((moved / "case.json").read_text()))


def test_step_horn_case_copies_the_step_into_the_run(tmp_path, step_builder):
    step = step_builder(tmp_path / "horn.step", radius=0.01, length=0.04).rename(tmp_path / "Horn.STEP")
    data = {"name": "step horn", "analysis": "static_structural",
            "geometry": {"kind": "mesh_file", "path": str(step)}, "mesh": {"size_m": 0.004},
            "materials": {"horn": "ti6al4v"},
            "boundary_conditions": [{"boundary": "input_face", "type": "fixed"},
                                    {"boundary": "output_face", "type": "pressure", "value": 1e6}]}
    paths = prepare_run(parse_case(data), tmp_path / "runs")
    assert json.loads(paths.case_json.read_text())["geometry"]["path"] == "geometry/source.step"
    assert {p.name for p in paths.geometry_dir.iterdir()} == {"source.step"}
    assert load_run_case(paths).geometry.is_step


def test_load_run_case_refuses_material_ids(stack_run, tmp_path):
    copy = Path(shutil.copytree(stack_run.root, tmp_path / stack_run.run_id))
    data = json.loads((copy / "case.json").read_text())
    data["materials"]["tab"] = "cu_c110"
    (copy / "case.json").write_text(json.dumps(data))
    with pytest.raises(CaseValidationError, match="materials.tab: a run case must carry the material inline"):
        load_run_case(RunPaths.from_dir(copy))
    with pytest.raises(CaseValidationError, match="no such file"):
        load_run_case(RunPaths.for_id(tmp_path, "zzzzzzzzzzzz"))


def test_attempts_of_a_prepared_run_round_trip(stack_run):
    record_attempt_start(stack_run, 1, pid=1234, start_time=1_700_000_000.0, scheduler_job_id="77")
    record_attempt_end(stack_run, 1, exit_code=0, end_time=1_700_000_060.0)
    [attempt] = read_attempts(stack_run)
    assert (attempt["attempt"], attempt["scheduler_job_id"], attempt["exit_code"]) == (1, "77", 0)


def test_preparing_never_imports_mpi(tmp_path):
    code = (
        "import sys\n"
        "from weldsim_hpc.case_io import load_case\n"
        "from weldsim_hpc.prepare import prepare_run\n"
        f"prepare_run(load_case({str(HORN)!r}, preset='ci'), {str(tmp_path)!r})\n"
        "bad = [m for m in ('mpi4py', 'dolfinx', 'petsc4py', 'slepc4py') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr


def test_xdmf_mesh_with_groups_json_is_a_case_geometry(tmp_path):
    """A mesh written by `weldsim mesh` (XDMF + groups.json) runs as a case's own mesh."""
    from weldsim_hpc.case_io import load_case as _load
    from weldsim_hpc.case_io import parse_case
    from weldsim_hpc.mesh import read_mesh_dir
    from weldsim_hpc.pipeline import mesh_case
    from weldsim_hpc.prepare import load_run_case, prepare_run

    horn = _load(Path(__file__).resolve().parent.parent / "examples" / "horn_coupled.toml", preset="ci")
    mesh, mesh_dir = mesh_case(horn, tmp_path / "made")
    data = horn.to_json_dict()
    data["geometry"] = {"kind": "mesh_file", "path": str(mesh_dir / "mesh.xdmf")}
    data.pop("mesh")
    case = parse_case(data)
    assert case.geometry.groups() == {"horn": 3, "input_face": 2, "output_face": 2, "lateral": 2}
    paths = prepare_run(case, tmp_path / "runs", ranks=1)
    run_case = load_run_case(paths)
    assert run_case.geometry.path.startswith(str(paths.root.resolve()))
    assert read_mesh_dir(paths.mesh_dir).equals(mesh)

    (mesh_dir / "groups.json").unlink()
    with pytest.raises(CaseValidationError, match="needs groups.json"):
        parse_case(data)
