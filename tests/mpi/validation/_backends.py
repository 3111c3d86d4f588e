"""One adapter per solver backend, so each validation case is written once for both.

The validation tests run under ``mpirun -n 2``. The fenicsx backend solves on every rank
(COMM_WORLD); the scipy backend is serial, so it solves on rank 0 while the other ranks
wait idle (a non-blocking barrier polled with sleeps: a blocking MPI wait would spin on a
core the solve needs) and the measured numbers are broadcast. A test therefore has the
shape::

    def test_case(backend, some_mesh_dir):
        def measure():                       # runs where the backend solves
            mesh = backend.mesh(some_mesh_dir)
            res = backend.solve_thermal(mesh, case, materials)
            return {"tip": backend.temperature_at(res, tip)[0], ...}   # plain numbers
        m = backend.measure(measure)         # the same dict on every rank
        assert_all(abs(m["tip"] / exact - 1) < 0.01, ...)   # one reference, one tolerance

Every method below is called inside `measure` (or `run`), so for fenicsx it is collective
and for scipy it runs on rank 0 only. Results come from each backend's public solve/run
functions; the adapters only read them (point values, face means, norms).
"""

from __future__ import annotations

import contextlib
import logging
import time
import traceback
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np
import pytest
from mpi4py import MPI

COMM = MPI.COMM_WORLD
BACKENDS = ("fenicsx", "scipy")
Probe = Callable[[np.ndarray], np.ndarray]


def report(backend: "Backend", text: str) -> None:
    if COMM.rank == 0:
        where = f"{COMM.size} rank(s)" if backend.name == "fenicsx" else "rank 0 alone"
        print(f"\n[{backend.name}, {where}] {text}")


def _run_paths(root: str | Path) -> Any:
    from weldsim_hpc.run_paths import RunPaths

    return RunPaths.from_dir(root)


def root_only(fn: Callable[[], Any]) -> Any:
    """fn() on rank 0 while the other ranks wait idle; its value on rank 0 (None elsewhere).
    An exception on rank 0 fails the test on every rank."""
    value, error = None, None
    if COMM.rank == 0:
        try:
            value = fn()
        except Exception as exc:  # noqa: BLE001 - reported on every rank below
            error = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
    idle = COMM.Ibarrier()
    while not idle.Test():
        time.sleep(0.02)
    error = COMM.bcast(error, root=0)
    if error is not None:
        pytest.fail(f"rank 0 failed: {error}")
    return value


def on_root_idle(fn: Callable[[], Any]) -> Any:
    """fn() on rank 0 (the others idle); its value on every rank."""
    return COMM.bcast(root_only(fn), root=0)


class _Recorder:
    """A progress writer stand-in: keeps every progress row."""

    def __init__(self) -> None:
        self.rows: list[tuple] = []

    def progress(self, *args: Any, **kwargs: Any) -> bool:
        self.rows.append(args)
        return True


class Backend:
    """The common interface; see the module docstring."""

    name = ""

    def __init__(self) -> None:
        self._meshes: dict[str, Any] = {}

    # where the work happens ---------------------------------------------------------------
    def run(self, fn: Callable[[], Any]) -> Any:
        """fn() where this backend solves; its value there (None on idle ranks)."""
        raise NotImplementedError

    def measure(self, fn: Callable[[], Any]) -> Any:
        """fn() where this backend solves; its (picklable) value on every rank."""
        raise NotImplementedError

    def mesh(self, mesh_dir: str) -> Any:
        if mesh_dir not in self._meshes:
            self._meshes[mesh_dir] = self._read_mesh(mesh_dir)
        return self._meshes[mesh_dir]

    def iterative_only(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Solve with CG + AMG even where a direct solve would be used (scipy's small systems)."""

    def direct_only(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Solve scipy's linear systems by sparse LU whatever their size (fenicsx: unchanged)."""


class Fenicsx(Backend):
    """dolfinx/PETSc on COMM_WORLD: every call is collective, every rank gets the numbers."""

    name = "fenicsx"

    def run(self, fn):
        return fn()

    def measure(self, fn):
        return fn()

    def _read_mesh(self, mesh_dir):
        from weldsim_hpc.backends.fenicsx.mesh_io import read_mesh

        return read_mesh(mesh_dir, COMM)

    # thermal ------------------------------------------------------------------------------
    def solve_thermal(self, mesh, case, materials, *, on_step: Callable[[int, float, Probe], None] | None = None,
                      on_progress=None):
        """on_step(k, t, probe): probe(points) -> the temperature there after step k."""
        from weldsim_hpc.backends.fenicsx import compat
        from weldsim_hpc.backends.fenicsx.thermal import solve_thermal

        step = None if on_step is None else (
            lambda k, t, T: on_step(k, t, lambda pts: compat.evaluate_at_points(T, pts, COMM)))
        return solve_thermal(mesh, COMM, case, materials, on_step=step, on_progress=on_progress)

    def temperature_at(self, res, points) -> np.ndarray:
        from weldsim_hpc.backends.fenicsx import compat

        return compat.evaluate_at_points(res.temperature, points, COMM)

    def heat_content(self, res, T0: float) -> float:
        from weldsim_hpc.backends.fenicsx.thermal import heat_content_J

        return heat_content_J(res.temperature, res.rho_c, T0)

    def convected_W(self, mesh, res, faces, h: float, T_inf: float) -> float:
        """∫ h (T − T_inf) ds over the exterior faces of the named groups, W."""
        import ufl
        from dolfinx import fem

        ds = ufl.Measure("ds", domain=mesh.mesh, subdomain_data=mesh.facet_tags)
        measure = sum((ds(mesh.groups[f][1]) for f in faces[1:]), ds(mesh.groups[faces[0]][1]))
        return COMM.allreduce(fem.assemble_scalar(fem.form((res.temperature - T_inf) * h * measure)))

    def interface(self, mesh, group: str) -> dict:
        """The facets of an interior surface group: every one between two cells? how many
        each process holds, and the group's area (measured from the mesh, not the solver)."""
        from weldsim_hpc.backends.fenicsx.mesh_io import owned_facet_area

        tag = mesh.groups[group][1]
        tdim = mesh.mesh.topology.dim
        mesh.mesh.topology.create_connectivity(tdim - 1, tdim)
        f2c = mesh.mesh.topology.connectivity(tdim - 1, tdim)
        n_owned = mesh.mesh.topology.index_map(tdim - 1).size_local
        facets = mesh.facet_tags.indices[mesh.facet_tags.values == tag]
        facets = facets[facets < n_owned]   # a ghost facet may miss its far cell; owned ones may not
        interior = COMM.allreduce(all(len(f2c.links(f)) == 2 for f in facets), op=MPI.LAND)
        return {"interior": interior, "per_process": COMM.allgather(len(facets)),
                "area": COMM.allreduce(owned_facet_area(mesh.mesh, mesh.facet_tags, tag))}

    # elasticity ---------------------------------------------------------------------------
    def solve_elasticity(self, mesh, case, materials, *, on_progress=None):
        from weldsim_hpc.backends.fenicsx.elasticity import solve_elasticity

        return solve_elasticity(mesh, COMM, case, materials, on_progress=on_progress)

    def face_mean(self, mesh, res, component: int, face: str) -> float:
        """Area mean of displacement component `component` over a face group."""
        import ufl
        from dolfinx import fem

        ds = ufl.Measure("ds", domain=mesh.mesh, subdomain_data=mesh.facet_tags)
        tag = mesh.groups[face][1]
        area = COMM.allreduce(fem.assemble_scalar(fem.form(fem.Constant(mesh.mesh, 1.0) * ds(tag))))
        return COMM.allreduce(fem.assemble_scalar(fem.form(res.displacement[component] * ds(tag)))) / area

    def displacement_at(self, res, points, *, p1: bool = False) -> np.ndarray:
        from weldsim_hpc.backends.fenicsx import compat

        return compat.evaluate_vector_at_points(res.displacement_p1 if p1 else res.displacement, points, COMM)

    def displacement_error(self, res, exact: Callable[[np.ndarray], np.ndarray]) -> float:
        """max over every displacement dof of |u − exact(x)| (all components)."""
        u = res.displacement
        x = u.function_space.tabulate_dof_coordinates()
        err = np.abs(u.x.array.reshape(-1, 3) - exact(x)).max(initial=0.0)
        return COMM.allreduce(float(err), op=MPI.MAX)

    def max_cell_von_mises(self, res) -> float:
        return COMM.allreduce(float(res.von_mises_dg0.x.array.max(initial=0.0)), op=MPI.MAX)

    def stress_at(self, res, points) -> np.ndarray:
        return res.stress_at(np.asarray(points, dtype=float), COMM)

    def strain_temperature_range(self, res) -> tuple[float, float] | None:
        """(min, max) of the temperature the thermal strain used; None without one."""
        if res.temperature is None:
            return None
        a = res.temperature.x.array
        return (COMM.allreduce(float(a.min(initial=np.inf)), op=MPI.MIN),
                COMM.allreduce(float(a.max(initial=-np.inf)), op=MPI.MAX))

    def nodal_average(self, mesh, res, point_group: str, point, component: tuple[int, int]) -> tuple[float, int]:
        """Mean of the cellwise (DG) stress component at the vertex of `point_group` over every
        cell sharing it (each owned cell once over ranks); (value, number of cells)."""
        m = mesh.mesh
        tag = mesh.groups[point_group][1]
        verts = mesh.point_tags.indices[mesh.point_tags.values == tag]
        m.topology.create_connectivity(0, 3)
        v_to_c = m.topology.connectivity(0, 3)
        n_owned = m.topology.index_map(3).size_local
        index = 3 * component[0] + component[1]   # row-major 3×3
        total, count = 0.0, 0
        for v in verts:
            cells = [c for c in v_to_c.links(v) if c < n_owned]
            for c in cells:
                total += float(res.stress.eval(np.asarray(point, dtype=float), [c])[index])
            count += len(cells)
        total, count = COMM.allreduce(total), COMM.allreduce(count)
        return (total / count if count else float("nan")), count

    # modal and harmonic ---------------------------------------------------------------------
    def solve_modal(self, mesh, case, materials, *, on_progress=None):
        from weldsim_hpc.backends.fenicsx.modal import solve_modal

        return solve_modal(mesh, COMM, case, materials, on_progress=on_progress)

    def mass_norms(self, mesh, res, case, materials) -> list[float]:
        """φ_kᵀ M φ_k of every mode shape (M: the consistent mass of the case's materials)."""
        import ufl
        from dolfinx import fem

        from weldsim_hpc.backends.fenicsx import compat
        from weldsim_hpc.case_checks import material_key_for_volume

        rho = fem.Function(compat.dg0_space(mesh.mesh))
        compat.set_cellwise(rho, mesh.cell_tags, {
            tag: materials[material_key_for_volume(name, materials)].density_kg_m3
            for name, (dim, tag) in mesh.groups.items() if dim == 3})
        return [COMM.allreduce(fem.assemble_scalar(fem.form(rho * ufl.inner(phi, phi) * ufl.dx)))
                for phi in res.shapes]

    def solve_harmonic(self, mesh, case, materials, f_working_Hz: float):
        from weldsim_hpc.backends.fenicsx.harmonic import solve_harmonic

        return solve_harmonic(mesh, COMM, case, materials, f_working_Hz=f_working_Hz)

    @contextlib.contextmanager
    def harmonic_problem(self, mesh, case, materials):
        from weldsim_hpc.backends.fenicsx.harmonic import HarmonicProblem

        problem = HarmonicProblem(mesh, COMM, case, materials)
        try:
            yield problem
        finally:
            problem.destroy()

    def von_mises_at(self, res, points) -> np.ndarray:
        """The cellwise von Mises (peak over the cycle) of the cell holding each point."""
        from weldsim_hpc.backends.fenicsx import compat

        return compat.evaluate_at_points(res.von_mises_dg0, points, COMM)

    def run_harmonic(self, mesh, case, materials, run_dir: str) -> dict:
        """The backend's harmonic runner + field output into run_dir, as `weldsim run` does."""
        from weldsim_hpc.backends.fenicsx.harmonic_runner import run_harmonic
        from weldsim_hpc.backends.fenicsx.output import write_fields

        return _run_harmonic(run_harmonic, write_fields, mesh, case, materials, run_dir, COMM)


def _run_harmonic(run, write_fields, mesh, case, materials, run_dir, comm) -> dict:
    import json

    writer = _Recorder()
    paths = _run_paths(run_dir)
    ctx = SimpleNamespace(case=case, comm=comm, materials=materials, paths=paths,
                          open_writer=lambda **_: writer, log=logging.getLogger("weldsim.test.validation"))
    t0 = time.perf_counter()
    fields, values, _ = run(ctx, mesh)
    seconds = time.perf_counter() - t0
    write_fields(fields, paths.fields_xdmf, paths.fields_pvd)
    curves = json.loads((paths.results_dir / "curves.json").read_text()) if comm.rank == 0 else None
    return {"values": dict(values), "curves": comm.bcast(curves, root=0), "seconds": seconds,
            "last_percent": writer.rows[-1][2] if writer.rows else None,
            "fields_xdmf": comm.bcast(paths.fields_xdmf.is_file() if comm.rank == 0 else None, root=0)}


class Scipy(Backend):
    """numpy/scipy on rank 0 alone; the other ranks idle until it is done."""

    name = "scipy"

    def run(self, fn):
        return root_only(fn)

    def measure(self, fn):
        return on_root_idle(fn)

    def _read_mesh(self, mesh_dir):
        from weldsim_hpc import mesh as M

        return M.read_mesh_dir(mesh_dir)

    def iterative_only(self, monkeypatch):
        from weldsim_hpc.backends.scipy import solvers

        monkeypatch.setattr(solvers, "DIRECT_MAX_DOFS", 0)

    def direct_only(self, monkeypatch):
        from weldsim_hpc.backends.scipy import solvers

        monkeypatch.setattr(solvers, "DIRECT_MAX_DOFS", 10**7)

    # thermal ------------------------------------------------------------------------------
    def solve_thermal(self, mesh, case, materials, *, on_step=None, on_progress=None):
        from weldsim_hpc.backends.scipy import fe
        from weldsim_hpc.backends.scipy.thermal import solve_thermal

        space = fe.Space(mesh.points, mesh.cells, case.effective_element_order)
        step = None if on_step is None else (lambda k, t, T: on_step(k, t, lambda pts: fe.evaluate(space, T, pts)))
        return solve_thermal(mesh, case, materials, on_step=step, on_progress=on_progress, space=space)

    def temperature_at(self, res, points):
        from weldsim_hpc.backends.scipy import fe

        return fe.evaluate(res.space, res.temperature, points)

    def heat_content(self, res, T0):
        from weldsim_hpc.backends.scipy.thermal import heat_content_J

        return heat_content_J(res, T0)

    @staticmethod
    def _facets(mesh, space=None):
        from weldsim_hpc.backends.scipy import fe

        space = space or fe.Space(mesh.points, mesh.cells, 1)
        return fe.Facets(space, mesh.facets, mesh.facet_tags)

    def convected_W(self, mesh, res, faces, h, T_inf):
        facets = self._facets(mesh, res.space)
        idx = np.concatenate([facets.select(mesh.groups[f][1], True) for f in faces])
        return float(h * facets.load(idx, res.temperature - T_inf).sum())

    def interface(self, mesh, group):
        facets = self._facets(mesh)
        idx = facets.select(mesh.groups[group][1], False)
        return {"interior": bool((facets.n_cells[idx] == 2).all()), "per_process": [len(idx)],
                "area": float(facets.area[idx].sum())}

    # elasticity ---------------------------------------------------------------------------
    def solve_elasticity(self, mesh, case, materials, *, on_progress=None):
        from weldsim_hpc.backends.scipy.elasticity import solve_elasticity

        return solve_elasticity(mesh, case, materials, on_progress=on_progress)

    def face_mean(self, mesh, res, component, face):
        facets = self._facets(mesh, res.space)
        idx = facets.select(mesh.groups[face][1], True)
        return float(facets.load(idx, res.displacement[:, component]).sum() / facets.area[idx].sum())

    def displacement_at(self, res, points, *, p1=False):
        from weldsim_hpc.backends.scipy import fe

        if not p1:
            return fe.evaluate(res.space, res.displacement, points)
        V1 = fe.Space(res.space.points, res.space.cells, 1)
        used = np.unique(res.space.cells)            # P1 dof i is node used[i]
        return fe.evaluate(V1, res.displacement_p1[used], points)

    def displacement_error(self, res, exact):
        return float(np.abs(res.displacement - exact(res.space.dof_coords)).max(initial=0.0))

    def max_cell_von_mises(self, res):
        return float(np.max(res.von_mises_dg0, initial=0.0))

    def stress_at(self, res, points):
        return res.stress_at(np.asarray(points, dtype=float))

    def strain_temperature_range(self, res):
        if res.temperature is None:
            return None
        return float(res.temperature.min()), float(res.temperature.max())

    def nodal_average(self, mesh, res, point_group, point, component):
        tag = mesh.groups[point_group][1]
        node = int(mesh.vertices[mesh.vertex_tags == tag][0])
        cells, local = np.nonzero(mesh.cells == node)
        values = res.stress_nodes[cells, local, component[0], component[1]]
        return (float(values.mean()) if len(cells) else float("nan")), int(len(cells))

    # modal and harmonic ---------------------------------------------------------------------
    def solve_modal(self, mesh, case, materials, *, on_progress=None):
        from weldsim_hpc.backends.scipy.modal import solve_modal

        return solve_modal(mesh, case, materials, on_progress=on_progress)

    def mass_norms(self, mesh, res, case, materials):
        from weldsim_hpc.backends.scipy.modal import ModalProblem

        M = ModalProblem(mesh, case, materials).M
        return [float(s.ravel() @ (M @ s.ravel())) for s in res.shapes]

    def solve_harmonic(self, mesh, case, materials, f_working_Hz):
        from weldsim_hpc.backends.scipy.harmonic import solve_harmonic

        return solve_harmonic(mesh, case, materials, f_working_Hz=f_working_Hz)

    @contextlib.contextmanager
    def harmonic_problem(self, mesh, case, materials):
        from weldsim_hpc.backends.scipy.harmonic import HarmonicProblem

        yield HarmonicProblem(mesh, case, materials)

    def von_mises_at(self, res, points):
        from weldsim_hpc.backends.scipy import fe

        out = []
        for p in np.asarray(points, dtype=float).reshape(-1, 3):
            cells, _ = fe.containing_cells(res.space, p)
            out.append(res.von_mises_dg0[cells[0]] if len(cells) else np.nan)
        return np.array(out)

    def run_harmonic(self, mesh, case, materials, run_dir):
        from weldsim_hpc.backends.scipy.dynamics_runner import run_harmonic
        from weldsim_hpc.backends.scipy.output import write_fields
        from weldsim_hpc.comm import SerialComm

        return _run_harmonic(run_harmonic, write_fields, mesh, case, materials, run_dir, SerialComm())


def make_backend(name: str) -> Backend:
    return {"fenicsx": Fenicsx, "scipy": Scipy}[name]()
