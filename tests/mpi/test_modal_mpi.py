"""fenicsx modal analysis (SLEPc shift-and-invert): mode flags, convergence, rank parity.

Run: OMP_NUM_THREADS=1 mpirun --allow-run-as-root -n 2 .venv/bin/python -m pytest --with-mpi \
         tests/mpi/test_modal_mpi.py      (and with -n 1; the last test compares the two)
Meshes are built with gmsh on rank 0 (weldsim_hpc.geometry.generate), written as mesh dirs
and read collectively; every assertion is collective. Ti-6Al-4V pinned: E = 113.8 GPa,
ν = 0.342, ρ = 4430 kg/m³ (DOMAIN-NOTES). The bar modes (free-free and clamped) and the
1-D preview comparison run on both backends in tests/mpi/validation/test_dynamics.py.

1. free-free Ø40 × 126.71 mm cylinder (the 20 kHz tuning of a plain Ti horn): the second
   bending pair lies ~285 Hz above the working mode (19 852 Hz; Pochhammer–Chree
   19 851.6), is classified flexural and flagged (< 500 Hz); run_modal writes modes.json,
   one XDMF/VTK step per mode and the registry's metrics
2. stepped 20/10 mm horn, 2 × 63.35 mm, 1 mm fillet: the working frequency changes by
   < 0.1 % under one uniform refinement (P2 on the gmsh mesh vs P2 on its refinement)
3. the frequencies of the Ø10 bar agree between the 1- and 2-rank runs to 1e-6
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

# tests/conftest.py leaves tests/mpi uncollected outside an MPI launch (mpi4py import).
import dolfinx  # noqa: F401
from mpi4py import MPI

from weldsim_hpc import mesh as M
from weldsim_hpc.case import CaseSpec
from weldsim_hpc.materials import material_from_dict
from .collective import assert_all, on_root  # noqa: E402

COMM = MPI.COMM_WORLD
E, NU, RHO = 113.8e9, 0.342, 4430.0
L = 0.12671
TI = material_from_dict({
    "id": "ti_pinned", "name": "ti_pinned", "density_kg_m3": RHO, "youngs_modulus_Pa": E,
    "poisson_ratio": NU, "conductivity_W_mK": 6.7, "specific_heat_J_kgK": 526.0,
    "expansion_1_K": 8.6e-6, "yield_strength_Pa": 880e6, "fatigue_strength_Pa": 510e6,
    "fatigue_cycles": 1e7, "loss_factor": 5e-5, "solidus_K": 1877.15})
MATS = {"horn": TI}


def report(text: str) -> None:
    if COMM.rank == 0:
        print(f"\n[{COMM.size} rank(s)] {text}")


def horn_mesh(tmp_path_factory, name, geometry, size, segments):
    def build():
        from weldsim_hpc.geometry import generate
        from weldsim_hpc.geometry.sizing import ResolvedSizes

        base = tmp_path_factory.mktemp(name)
        files = generate(geometry, ResolvedSizes(size, size, size, curvature_segments=segments), base)
        return str(M.write_mesh_dir(M.read_msh(files.msh), base / "mesh"))

    from weldsim_hpc.backends.fenicsx.mesh_io import read_mesh

    return read_mesh(on_root(build), COMM)


def modal_case(target=20e3, modes=10, **fields) -> CaseSpec:
    return CaseSpec.model_validate({
        "name": "modal", "analysis": "modal",
        "geometry": {"kind": "cylinder", "length_m": L, "diameter_m": 0.01},
        "materials": {"horn": "ti6al4v"},
        "solver": {"target_frequency_Hz": target, "modes_wanted": modes}, **fields})


# --- 1. Ø40 cylinder tuned to 20 kHz ----------------------------------------------------
@pytest.fixture(scope="module")
def thick(tmp_path_factory):
    from weldsim_hpc.geometry import CylinderHorn

    return horn_mesh(tmp_path_factory, "thick", CylinderHorn(length_m=L, diameter_m=0.04), 0.008, 32)


class _Writer:
    def __init__(self):
        self.rows = []

    def progress(self, *args, **kwargs):
        self.rows.append(args)
        return True


@pytest.mark.mpi
def test_thick_cylinder_flexural_mode_flagged_near_working_mode(thick, tmp_path_factory):
    from weldsim_hpc.backends.fenicsx.dynamics_runner import run_modal
    from weldsim_hpc.results import metric

    root = Path(on_root(lambda: str(tmp_path_factory.mktemp("run"))))
    paths = SimpleNamespace(results_dir=root / "results", fields_xdmf=root / "results" / "fields.xdmf",
                            fields_pvd=root / "results" / "fields.pvd")
    writer = _Writer()
    ctx = SimpleNamespace(case=modal_case(modes=8), comm=COMM, materials=MATS, paths=paths,
                          open_writer=lambda **kw: writer, log=logging.getLogger("weldsim.test"))
    t0 = time.perf_counter()
    fields, values, w = run_modal(ctx, thick)
    wall = time.perf_counter() - t0
    doc = on_root(lambda: json.loads((paths.results_dir / "modes.json").read_text()))
    modes = doc["modes"]
    work = next(m for m in modes if m["working"])
    flex = [m for m in modes if m["class"] == "flexural" and abs(m["separation_Hz"]) < 500]
    report(f"Ø40 cylinder ({wall:.1f} s incl. output): working {work['frequency_Hz']:.2f} Hz "
           f"(Pochhammer–Chree 19851.6), nearest {values.get('mode_separation_Hz', float('nan')):.1f} Hz away; "
           + ", ".join(f"{m['frequency_Hz']:.1f} {m['class']} (ax {m['axial_fraction']:.3f}, "
                       f"tilt {m['tilt_fraction']:.3f})" for m in modes))
    assert_all(w is writer and fields.displacement is None, "run_modal contract")
    assert_all(abs(work["frequency_Hz"] / 19851.6 - 1) < 0.002, f"working {work}")
    assert_all(len(flex) == 2 and all(0 < m["separation_Hz"] < 500 for m in flex), f"flexural {flex}")
    assert_all(all(m["axial_fraction"] > 0.2 for m in flex),
               "the thick-bar bending pair should carry cross-section tilt (e_ax > 0.2)")
    assert_all(doc["mode_separation_flag"] and values.get("mode_separation_Hz", 1e9) < 500, f"{values}")
    assert_all(values["f_working_Hz"] == work["frequency_Hz"] and values["modes_found"] == 8, f"{values}")
    assert_all(all(math.isfinite(metric(n, v).value) for n, v in values.items()), "metric check")
    # one XDMF step and one VTK step per mode (time value = mode number)
    files = on_root(lambda: ((paths.results_dir / "fields.xdmf").read_text(),
                             sorted(p.name for p in paths.results_dir.glob("fields*.pvtu"))))
    assert_all(files[0].count('<Time Value="') == 8 and len(files[1]) == 8, f"{files[1]}")


# --- 2. stepped horn under refinement -----------------------------------------------------
@pytest.fixture(scope="module")
def stepped(tmp_path_factory):
    from weldsim_hpc.geometry import SteppedHorn

    horn = SteppedHorn(length_input_m=0.06335, length_output_m=0.06335, diameter_input_m=0.02,
                       diameter_output_m=0.01, fillet_radius_m=1e-3)
    return horn_mesh(tmp_path_factory, "stepped", horn, 0.006, 16)


def refined(fmesh):
    """The uniformly refined mesh (every tetrahedron split in 8), all cells in `horn`."""
    from dolfinx import mesh as dmesh

    from weldsim_hpc.backends.fenicsx.mesh_io import FenicsxMesh

    fmesh.mesh.topology.create_entities(1)
    fine = dmesh.refine(fmesh.mesh, redistribute=False)
    n = fine.topology.index_map(3).size_local + fine.topology.index_map(3).num_ghosts
    tags = dmesh.meshtags(fine, 3, np.arange(n, dtype=np.int32),
                          np.full(n, fmesh.groups["horn"][1], dtype=np.int32))
    return FenicsxMesh(fine, tags, None, {"horn": fmesh.groups["horn"]})


@pytest.mark.mpi
def test_stepped_horn_working_frequency_converges(stepped):
    from weldsim_hpc.backends.fenicsx.modal import solve_modal

    case = modal_case(modes=4)
    freqs, dofs, walls = [], [], []
    for fm in (stepped, refined(stepped)):
        t0 = time.perf_counter()
        res = solve_modal(fm, COMM, case, MATS)
        walls.append(time.perf_counter() - t0)
        freqs.append(res.summary.f_working_Hz)
        dofs.append(res.n_dofs)
    change = abs(freqs[1] / freqs[0] - 1)
    report(f"stepped horn: f_working {freqs[0]:.2f} Hz ({dofs[0]} dofs, {walls[0]:.1f} s) → "
           f"{freqs[1]:.2f} Hz ({dofs[1]} dofs, {walls[1]:.1f} s): change {change:.3%}; "
           f"1-D quarter-wave sections give 20000 Hz ({freqs[1] / 20e3 - 1:+.2%})")
    assert_all(None not in freqs and change < 1e-3, f"{freqs}")


# --- 3. the same numbers on 1 and 2 ranks -----------------------------------------------------
@pytest.mark.mpi
def test_frequencies_independent_of_rank_count(tmp_path_factory):
    """The bar solved on every rank and, by rank 0 alone, on COMM_SELF: same frequencies."""
    from weldsim_hpc.backends.fenicsx.mesh_io import read_mesh
    from weldsim_hpc.backends.fenicsx.modal import solve_modal
    from weldsim_hpc.geometry import CylinderHorn, generate
    from weldsim_hpc.geometry.sizing import ResolvedSizes

    def build():
        base = tmp_path_factory.mktemp("parity")
        files = generate(CylinderHorn(length_m=L, diameter_m=0.01), ResolvedSizes(0.005, 0.005, 0.005,
                                                                                 curvature_segments=20), base)
        return str(M.write_mesh_dir(M.read_msh(files.msh), base / "mesh"))

    mesh_dir = on_root(build)
    case = modal_case(modes=8)
    everywhere = [m.frequency_Hz for m in solve_modal(read_mesh(mesh_dir, COMM), COMM, case, MATS).modes]
    alone = None
    if COMM.rank == 0:
        alone = [m.frequency_Hz for m in solve_modal(read_mesh(mesh_dir, MPI.COMM_SELF), MPI.COMM_SELF,
                                                      case, MATS).modes]
    alone = COMM.bcast(alone, root=0)
    assert_all(len(everywhere) == len(alone), f"{everywhere} vs {alone}")
    worst = float(np.max(np.abs(np.array(everywhere) / np.array(alone) - 1)))
    report(f"largest relative frequency difference, {COMM.size} ranks vs 1: {worst:.2e}")
    assert_all(worst < 1e-6, f"{worst}")
