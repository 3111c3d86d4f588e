"""Every dolfinx call whose spelling changed between releases, written for 0.5.2.

The solvers call these helpers instead of dolfinx directly wherever 0.5 differs from the
releases that web examples show (0.7–0.10), so a later port touches this file only.
What changed, and the 0.5.2 spelling used here:

===========================  ==========================================  =====================
what                         0.5.2                                       later
===========================  ==========================================  =====================
scalar/DG0 space             ``fem.FunctionSpace(mesh, ("Lagrange", p))``  ``fem.functionspace``
interpolation points         ``V.element.interpolation_points()``        a property
dofs of each local cell      ``V.dofmap.list.array`` (AdjacencyList)     a 2-D ndarray
PETSc vector of a Function   ``u.vector``                                ``u.x.petsc_vec``
point location               ``geometry.BoundingBoxTree(mesh, tdim)``    ``geometry.bb_tree``
entities → geometry nodes    ``cpp.mesh.entities_to_geometry(cpp mesh)`` python wrapper
===========================  ==========================================  =====================

All functions are local unless they say "collective". Imports of dolfinx are lazy.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np


# --- spaces and functions ------------------------------------------------------------
def lagrange_space(mesh: Any, degree: int) -> Any:
    """Continuous scalar Lagrange space of `degree` (collective)."""
    from dolfinx import fem

    return fem.FunctionSpace(mesh, ("Lagrange", int(degree)))


def dg0_space(mesh: Any) -> Any:
    """Cellwise-constant scalar space (collective)."""
    from dolfinx import fem

    return fem.FunctionSpace(mesh, ("DG", 0))


def cell_dofs(V: Any) -> np.ndarray:
    """(n local cells incl. ghosts, dofs per cell) array of local dof indices."""
    dofs = V.dofmap.list.array
    n_cells = V.mesh.topology.index_map(V.mesh.topology.dim).size_local \
        + V.mesh.topology.index_map(V.mesh.topology.dim).num_ghosts
    return np.asarray(dofs).reshape(n_cells, -1)


def n_owned_dofs(V: Any) -> int:
    """Number of dofs this rank owns (block size 1 spaces)."""
    return V.dofmap.index_map.size_local * V.dofmap.index_map_bs


def petsc_vector(u: Any) -> Any:
    """The PETSc Vec sharing u's local array (ghosted): `u.vector` in 0.5, `u.x.petsc_vec` later."""
    return u.vector


def interpolation_points(V: Any) -> np.ndarray:
    """Reference points for fem.Expression: a method in 0.5, a property later."""
    return V.element.interpolation_points()


def interpolate_callable(u: Any, fn: Callable[[np.ndarray], np.ndarray]) -> None:
    """Collective: u ← fn(x) at the interpolation points of u's space; x has shape (3, n).

    An expression that fails on some ranks only (a non-finite value where one rank holds
    the offending points) raises the same ExpressionError on every rank, so no rank is
    left waiting in the next collective call.
    """
    from ...errors import ExpressionError

    error = None
    try:
        u.interpolate(fn)
    except ExpressionError as exc:
        error = str(exc)
    errors = [e for e in u.function_space.mesh.comm.allgather(error) if e]
    if errors:
        raise ExpressionError(errors[0])
    u.x.scatter_forward()


def interpolate_function(target: Any, source: Any) -> None:
    """target ← source, both on the same mesh (e.g. P2 → P1 for output)."""
    target.interpolate(source)
    target.x.scatter_forward()


# --- tags ----------------------------------------------------------------------------
def tagged_entities(tags: Any, tag: int) -> np.ndarray:
    """Local indices (owned and ghost) of the entities of a MeshTags with value `tag`."""
    return np.asarray(tags.indices[tags.values == tag], dtype=np.int32)


def set_cellwise(f: Any, cell_tags: Any, values_by_tag: dict[int, float]) -> np.ndarray:
    """Fill a DG0 Function with a value per cell tag; return the local cells left unset."""
    dofs = cell_dofs(f.function_space)[:, 0]
    unset = np.ones(len(dofs), dtype=bool)
    for tag, value in values_by_tag.items():
        cells = tagged_entities(cell_tags, tag)
        f.x.array[dofs[cells]] = value
        unset[cells] = False
    f.x.scatter_forward()
    return np.flatnonzero(unset)


def dofs_on_facets(V: Any, facets: np.ndarray) -> np.ndarray:
    """Local dofs of V on the given local facets (topological)."""
    from dolfinx import fem

    tdim = V.mesh.topology.dim
    V.mesh.topology.create_connectivity(tdim - 1, tdim)
    return fem.locate_dofs_topological(V, tdim - 1, facets)


def dirichlet_bc(value: Any, dofs: np.ndarray, V: Any | None = None) -> Any:
    """A DirichletBC; value is a Function on V (then V is omitted) or a Constant/array with V."""
    from dolfinx import fem

    return fem.dirichletbc(value, dofs) if V is None else fem.dirichletbc(value, dofs, V)


# --- points --------------------------------------------------------------------------
def evaluate_at_points(u: Any, points: np.ndarray, comm: Any) -> np.ndarray:
    """Collective: values of scalar u at (n, 3) points, the same array on every rank.

    Each point is evaluated by the lowest rank that owns a cell containing it; points
    outside the mesh give nan.
    """
    from dolfinx import geometry

    mesh = u.function_space.mesh
    pts = np.ascontiguousarray(np.asarray(points, dtype=np.float64).reshape(-1, 3))
    tree = geometry.BoundingBoxTree(mesh, mesh.topology.dim)
    candidates = geometry.compute_collisions(tree, pts)
    colliding = geometry.compute_colliding_cells(mesh, candidates, pts)
    n_owned_cells = mesh.topology.index_map(mesh.topology.dim).size_local
    local = np.full(len(pts), np.nan)
    for i in range(len(pts)):
        cells = [c for c in colliding.links(i) if c < n_owned_cells]
        if cells:
            local[i] = u.eval(pts[i], [cells[0]])[0]
    everywhere = comm.allgather(local)
    out = np.full(len(pts), np.nan)
    for values in reversed(everywhere):  # lowest rank wins
        found = ~np.isnan(values)
        out[found] = values[found]
    return out


# --- added for the structural solvers (elasticity.py) ---------------------------------
def evaluate_vector_at_points(u: Any, points: np.ndarray, comm: Any, average: bool = False) -> np.ndarray:
    """Collective: values of u (scalar, vector or tensor) at (n, 3) points as an
    (n, value size) array, the same on every rank (nan outside the mesh).

    average=False: the lowest owning rank's first cell that contains the point.
    average=True: the mean over EVERY cell containing the point (all ranks) — for a
    discontinuous field at a point on a face, edge or vertex this is the partition-
    independent "averaged nodal" value; inside a cell it is that cell's value.
    """
    from dolfinx import geometry

    mesh = u.function_space.mesh
    pts = np.ascontiguousarray(np.asarray(points, dtype=np.float64).reshape(-1, 3))
    size = int(np.prod(u.ufl_shape)) if u.ufl_shape else 1
    tree = geometry.BoundingBoxTree(mesh, mesh.topology.dim)
    candidates = geometry.compute_collisions(tree, pts)
    colliding = geometry.compute_colliding_cells(mesh, candidates, pts)
    n_owned_cells = mesh.topology.index_map(mesh.topology.dim).size_local
    local = np.full((len(pts), size), np.nan)
    sums, counts = np.zeros((len(pts), size)), np.zeros(len(pts))
    for i in range(len(pts)):
        cells = [c for c in colliding.links(i) if c < n_owned_cells]
        for c in (cells if average else cells[:1]):
            value = np.asarray(u.eval(pts[i], [c])).reshape(-1)
            sums[i] += value
            counts[i] += 1
        if cells:
            local[i] = sums[i] / counts[i]
    if average:
        from mpi4py import MPI

        total, n = np.empty_like(sums), np.empty_like(counts)
        comm.Allreduce(sums, total, op=MPI.SUM)
        comm.Allreduce(counts, n, op=MPI.SUM)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n[:, None] > 0, total / n[:, None], np.nan)
    out = np.full((len(pts), size), np.nan)
    for values in reversed(comm.allgather(local)):
        found = ~np.isnan(values[:, 0])
        out[found] = values[found]
    return out


def lumped_projection(expr: Any, V: Any, quadrature_degree: int, name: str | None = None) -> Any:
    """Collective: the lumped-mass L2 projection of a scalar UFL expression onto a scalar
    space V: u_i = ∫ expr φ_i dx / ∫ φ_i dx (no solve; a smooth nodal average, P1 is best)."""
    import ufl
    from dolfinx import fem
    from dolfinx.fem import petsc as fpetsc
    from petsc4py import PETSc

    w = ufl.TestFunction(V)
    dx = ufl.dx(domain=V.mesh, metadata={"quadrature_degree": int(quadrature_degree)})
    vecs = []
    for integrand in (expr * w, w):
        vec = fpetsc.assemble_vector(fem.form(integrand * dx))
        vec.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
        vecs.append(vec)
    out = fem.Function(V, name=name) if name else fem.Function(V)
    vecs[0].pointwiseDivide(vecs[0], vecs[1])
    n = V.dofmap.index_map.size_local * V.dofmap.index_map_bs
    out.x.array[:n] = vecs[0].array_r[:n]
    out.x.scatter_forward()
    for vec in vecs:
        vec.destroy()
    return out
