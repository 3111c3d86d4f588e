"""scipy backend vs fenicsx backend on the same mesh and element order: 1e-6 relative.

Run: OMP_NUM_THREADS=1 mpirun --allow-run-as-root -n 2 .venv/bin/python -m pytest --with-mpi \
         tests/mpi/test_scipy_parity_mpi.py
Rank 0 does the work (scipy runs on one process; fenicsx on COMM_SELF), the other ranks
wait; the verdict is collective. Fields are compared by dof coordinates (max norm over
nodes, relative to the field's range), von Mises cell by cell (matched by centroid).
"""

from __future__ import annotations

import numpy as np
import pytest

import dolfinx  # noqa: F401
from mpi4py import MPI

from weldsim_hpc import mesh as M
from weldsim_hpc.case import CaseSpec
from weldsim_hpc.materials import material_from_dict

COMM = MPI.COMM_WORLD
TOL = 1e-6


def solid(k=50.0, E=200e9, alpha=1.2e-5):
    return material_from_dict({
        "id": "s", "name": "s", "density_kg_m3": 7800.0, "youngs_modulus_Pa": E, "poisson_ratio": 0.3,
        "conductivity_W_mK": k, "specific_heat_J_kgK": 500.0, "expansion_1_K": alpha,
        "yield_strength_Pa": 1e9, "fatigue_strength_Pa": 1e8, "fatigue_cycles": 1e9,
        "loss_factor": 1e-3, "solidus_K": 1700.0})


MATS = {"lower": solid(50.0), "upper": solid(200.0, 100e9, 2e-5)}


def case(analysis, **fields):
    base = {"name": "parity", "analysis": analysis, "solver": {"rtol": 1e-12, "atol": 1e-30},
            "geometry": {"kind": "block", "length_m": 0.01, "width_m": 0.001, "depth_m": 0.001},
            "materials": {"lower": "d2", "upper": "d2"}}
    return CaseSpec.model_validate({**base, **fields})


def on_root_collective(fn):
    """fn() on rank 0 → (ok, message); every rank asserts the same verdict."""
    verdict = None
    if COMM.rank == 0:
        try:
            verdict = (True, fn())
        except AssertionError as exc:
            verdict = (False, str(exc))
        except Exception as exc:  # noqa: BLE001 - reported on every rank
            verdict = (False, f"{type(exc).__name__}: {exc}")
    ok, message = COMM.bcast(verdict, root=0)
    if COMM.rank == 0 and ok:
        print(f"\n{message}")
    assert ok, message


@pytest.fixture(scope="module")
def meshes(tmp_path_factory):
    """(MeshData, FenicsxMesh on COMM_SELF) on rank 0; None elsewhere."""
    if COMM.rank != 0:
        return None
    from tests.backends.scipy.meshes import box_mesh
    from weldsim_hpc.backends.fenicsx.mesh_io import read_mesh

    data = box_mesh((3, 2, 4), (3e-3, 2e-3, 2e-3), z_split=1e-3)
    path = M.write_mesh_dir(data, tmp_path_factory.mktemp("parity") / "mesh")
    return M.read_mesh_dir(path), read_mesh(path, MPI.COMM_SELF)


def rel_diff(coords_a, values_a, coords_b, values_b) -> float:
    """max |a − b| / max |b| with the values matched by coordinates."""
    from scipy.spatial import cKDTree

    dist, idx = cKDTree(coords_b).query(coords_a)
    assert dist.max() < 1e-12, f"unmatched dofs ({dist.max():.3e} m)"
    a, b = np.asarray(values_a), np.asarray(values_b)[idx]
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def fx_scalar(f):
    V = f.function_space
    return V.tabulate_dof_coordinates(), f.x.array.copy()


def fx_vector(u):
    V = u.function_space
    return V.tabulate_dof_coordinates(), u.x.array.reshape(-1, 3).copy()


def fx_cell_centroids(fmesh):
    from dolfinx.cpp.mesh import entities_to_geometry

    mesh = fmesh.mesh
    n = mesh.topology.index_map(3).size_local
    geo = entities_to_geometry(getattr(mesh, "_mesh", mesh), 3, np.arange(n, dtype=np.int32), False)
    return mesh.geometry.x[geo].mean(axis=1)


THERMAL_BCS = [{"type": "temperature", "boundary": "z0", "value": "300 + 1000 * x + 2e4 * y * y"},
               {"type": "convection", "boundary": "x1", "h_W_m2K": 5000.0, "T_inf_K": 350.0},
               {"type": "heat_flux", "boundary": "z1", "value": "1e5 * (1 + 100 * x)"}]


@pytest.mark.mpi
@pytest.mark.parametrize("order", [1, 2])
def test_thermal_steady_parity(meshes, order):
    def check():
        from weldsim_hpc.backends.fenicsx.thermal import solve_thermal as fx_solve
        from weldsim_hpc.backends.scipy.thermal import solve_thermal

        data, fmesh = meshes
        c = case("thermal_steady", element_order=order, boundary_conditions=THERMAL_BCS,
                 loads=[{"type": "heat_source", "volume": "upper", "value": "1e9 * z"}])
        a = solve_thermal(data, c, MATS)
        b = fx_solve(fmesh, MPI.COMM_SELF, c, MATS)
        d = rel_diff(a.space.dof_coords, a.temperature - 300, *(lambda x, v: (x, v - 300))(*fx_scalar(b.temperature)))
        dm = abs(a.heat_input_W / b.heat_input_W - 1)
        assert d < TOL and dm < 1e-10, f"P{order}: T rel diff {d:.2e}, heat input {dm:.2e}"
        return f"thermal steady P{order}: max |ΔT|/max(T−300) = {d:.2e}"
    on_root_collective(check)


@pytest.mark.mpi
def test_thermal_transient_weld_parity(meshes):
    def check():
        from weldsim_hpc.backends.fenicsx.thermal import solve_thermal as fx_solve
        from weldsim_hpc.backends.scipy.thermal import solve_thermal

        data, fmesh = meshes
        c = case("thermal_transient", weld={"power_W": 500.0, "heat_fraction": 0.5, "weld_time_s": 0.05},
                 time={"end_s": 0.08, "dt_s": 0.02, "theta": 0.5},
                 boundary_conditions=[{"type": "weld_interface_heating", "boundary": "interface"},
                                      {"type": "heat_flux", "boundary": "z1", "value": "1e6 * t"},
                                      {"type": "convection", "boundary": "x0", "h_W_m2K": 1e4, "T_inf_K": 300.0}])
        a = solve_thermal(data, c, MATS)
        b = fx_solve(fmesh, MPI.COMM_SELF, c, MATS)
        T0 = c.thermal.T_initial_K
        x, v = fx_scalar(b.temperature)
        d = rel_diff(a.space.dof_coords, a.temperature - T0, x, v - T0)
        scalars = max(np.abs(a.heat_content_J / b.heat_content_J - 1)[1:].max(),
                      np.abs(a.energy_in_J[1:] / b.energy_in_J[1:] - 1).max(),
                      np.abs(a.T_max_K - b.T_max_K).max() / (b.T_max_K.max() - T0))
        peaks = max(abs(a.T_max_by_volume_K[k] - b.T_max_by_volume_K[k]) for k in MATS) / (b.T_max_K.max() - T0)
        assert list(a.times_s) == list(b.times_s), f"time grids {a.times_s} vs {b.times_s}"
        assert d < TOL and scalars < TOL and peaks < TOL, f"T {d:.2e}, scalars {scalars:.2e}, peaks {peaks:.2e}"
        return f"thermal transient (weld, θ=0.5, {len(a.times_s) - 1} steps): T {d:.2e}, content/energy/T_max {scalars:.2e}"
    on_root_collective(check)


@pytest.mark.mpi
@pytest.mark.parametrize("order", [1, 2])
def test_static_structural_parity(meshes, order):
    def check():
        from weldsim_hpc.backends.fenicsx.elasticity import solve_elasticity as fx_solve
        from weldsim_hpc.backends.scipy.elasticity import solve_elasticity

        data, fmesh = meshes
        c = case("static_structural", element_order=order, thermal={"T_ref_K": 293.15},
                 boundary_conditions=[{"type": "fixed", "boundary": "z0"},
                                      {"type": "displacement", "boundary": "x0", "value": ["1e-7 * z", None, None]},
                                      {"type": "pressure", "boundary": "z1", "value": "1e6 * (1 + 300 * x)"},
                                      {"type": "traction", "boundary": "y1", "value": [0.0, 2e5, "1e8 * x"]}],
                 loads=[{"type": "body_force", "volume": "upper", "value": [0.0, 0.0, -1e7]},
                        {"type": "temperature_field", "volume": "upper", "value": "293.15 + 1e4 * x * (1 + 100 * z)"}])
        a = solve_elasticity(data, c, MATS)
        b = fx_solve(fmesh, MPI.COMM_SELF, c, MATS)
        du = rel_diff(a.space.dof_coords, a.displacement, *fx_vector(b.displacement))
        dvm = rel_diff(data.points[data.cells].mean(axis=1), a.von_mises_dg0, fx_cell_centroids(fmesh),
                       b.von_mises_dg0.x.array)
        pts = np.array([[1.1e-3, 0.7e-3, 1.3e-3], [2.9e-3, 1.2e-3, 0.4e-3]])
        sa, sb = a.stress_at(pts), b.stress_at(pts, MPI.COMM_SELF)
        ds = float(np.abs(sa - sb).max() / np.abs(sb).max())
        dm = abs(a.metrics.max_von_mises_Pa / b.metrics.max_von_mises_Pa - 1)
        assert max(du, dvm, ds, dm) < TOL, f"P{order}: u {du:.2e}, von Mises {dvm:.2e}, stress {ds:.2e}, metric {dm:.2e}"
        return f"static structural P{order}: u {du:.2e}, von Mises (cells) {dvm:.2e}, stress at points {ds:.2e}"
    on_root_collective(check)


@pytest.mark.mpi
def test_coupled_parity(meshes):
    def check():
        from weldsim_hpc.backends.fenicsx.coupled import solve_coupled as fx_solve
        from weldsim_hpc.backends.scipy.coupled import solve_coupled

        data, fmesh = meshes
        c = case("coupled_thermo_structural", thermal={"T_ref_K": 293.15},
                 boundary_conditions=[*THERMAL_BCS, {"type": "fixed", "boundary": "z0"}])
        a = solve_coupled(data, c, MATS)
        b = fx_solve(fmesh, MPI.COMM_SELF, c, MATS)
        dT = rel_diff(a.thermal.space.dof_coords, a.thermal.temperature - 293.15,
                      *(lambda x, v: (x, v - 293.15))(*fx_scalar(b.thermal.temperature)))
        du = rel_diff(a.structural.space.dof_coords, a.structural.displacement, *fx_vector(b.structural.displacement))
        dvm = rel_diff(data.points[data.cells].mean(axis=1), a.structural.von_mises_dg0, fx_cell_centroids(fmesh),
                       b.structural.von_mises_dg0.x.array)
        assert max(dT, du, dvm) < TOL, f"coupled: T {dT:.2e}, u {du:.2e}, von Mises {dvm:.2e}"
        return f"coupled (P1 T, P2 u): T {dT:.2e}, u {du:.2e}, von Mises {dvm:.2e}"
    on_root_collective(check)
