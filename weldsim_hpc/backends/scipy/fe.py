"""Finite-element core of the scipy backend: P1/P2 tetrahedra, vectorised over all cells.

Conventions (the same as basix/dolfinx, so the two backends agree to round-off):

* reference tetrahedron (0,0,0), (1,0,0), (0,1,0), (0,0,1); local vertices 0..3, then for
  P2 the edge dofs in basix order ``TET_EDGE_VERTICES`` = (2,3), (1,3), (1,2), (0,3), (0,2), (0,1);
* global dofs: one per used mesh node (in point order), then for P2 one per unique edge,
  edges numbered by their sorted (min, max) node-index key — deterministic for a mesh;
* vector spaces are blocked: dof 3·node + component (as dolfinx's VectorFunctionSpace);
* quadrature: collapsed Gauss–Jacobi rules, exact for polynomials of the given degree, so
  every integrand of an affine cell with polynomial coefficients is integrated exactly.

Assembly is numpy einsum over all cells at once; matrices go COO → CSR (scipy.sparse).

    space = Space(points, cells, order=2)
    K = space.assemble(space.stiffness_local(kappa_per_cell))
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import scipy.sparse as sp
from scipy.special import roots_jacobi

TET_EDGE_VERTICES = ((2, 3), (1, 3), (1, 2), (0, 3), (0, 2), (0, 1))
TRI_EDGE_VERTICES = ((1, 2), (0, 2), (0, 1))
#: the 4 faces of a tetrahedron: local vertices (face i is opposite vertex i)
TET_FACES = ((1, 2, 3), (0, 2, 3), (0, 1, 3), (0, 1, 2))


# --- quadrature -----------------------------------------------------------------------
@lru_cache(maxsize=None)
def tet_rule(degree: int) -> tuple[np.ndarray, np.ndarray]:
    """(points (n, 3), weights (n,)) on the reference tetrahedron, exact to `degree`
    (weights sum to 1/6)."""
    m = max(1, (int(degree) + 2) // 2)
    x0, w0 = roots_jacobi(m, 2.0, 0.0)
    x1, w1 = roots_jacobi(m, 1.0, 0.0)
    x2, w2 = roots_jacobi(m, 0.0, 0.0)
    a, b, c = (x0 + 1) / 2, (x1 + 1) / 2, (x2 + 1) / 2
    A, B, C = np.meshgrid(a, b, c, indexing="ij")
    W = np.einsum("i,j,k->ijk", w0 / 8, w1 / 4, w2 / 2)
    x = A
    y = (1 - A) * B
    z = (1 - A) * (1 - B) * C
    return np.stack([x.ravel(), y.ravel(), z.ravel()], 1), W.ravel()


@lru_cache(maxsize=None)
def tri_rule(degree: int) -> tuple[np.ndarray, np.ndarray]:
    """(points (n, 2), weights (n,)) on the reference triangle, exact to `degree` (sum 1/2)."""
    m = max(1, (int(degree) + 2) // 2)
    x0, w0 = roots_jacobi(m, 1.0, 0.0)
    x1, w1 = roots_jacobi(m, 0.0, 0.0)
    a, b = (x0 + 1) / 2, (x1 + 1) / 2
    A, B = np.meshgrid(a, b, indexing="ij")
    W = np.einsum("i,j->ij", w0 / 4, w1 / 2)
    return np.stack([A.ravel(), ((1 - A) * B).ravel()], 1), W.ravel()


# --- reference bases ------------------------------------------------------------------
def tet_basis(order: int, xi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lagrange basis on the reference tetrahedron at points xi (n, 3):
    values (n, ndof) and reference gradients (n, ndof, 3); ndof 4 (P1) or 10 (P2)."""
    xi = np.atleast_2d(np.asarray(xi, dtype=np.float64))
    x, y, z = xi.T
    lam = np.stack([1 - x - y - z, x, y, z], 1)                     # (n, 4)
    dlam = np.array([[-1.0, -1, -1], [1, 0, 0], [0, 1, 0], [0, 0, 1]])  # (4, 3)
    n = len(xi)
    if order == 1:
        return lam, np.broadcast_to(dlam, (n, 4, 3)).copy()
    if order != 2:
        raise ValueError(f"element order {order}: only 1 and 2 are supported")
    vals = np.empty((n, 10))
    grads = np.empty((n, 10, 3))
    vals[:, :4] = lam * (2 * lam - 1)
    grads[:, :4] = (4 * lam - 1)[:, :, None] * dlam[None]
    for e, (a, b) in enumerate(TET_EDGE_VERTICES):
        vals[:, 4 + e] = 4 * lam[:, a] * lam[:, b]
        grads[:, 4 + e] = 4 * (lam[:, a, None] * dlam[b] + lam[:, b, None] * dlam[a])
    return vals, grads


def tri_basis(order: int, xi: np.ndarray) -> np.ndarray:
    """Lagrange basis values (n, 3|6) on the reference triangle (vertices, then edges in
    TRI_EDGE_VERTICES order)."""
    xi = np.atleast_2d(np.asarray(xi, dtype=np.float64))
    lam = np.stack([1 - xi[:, 0] - xi[:, 1], xi[:, 0], xi[:, 1]], 1)
    if order == 1:
        return lam
    vals = np.empty((len(xi), 6))
    vals[:, :3] = lam * (2 * lam - 1)
    for e, (a, b) in enumerate(TRI_EDGE_VERTICES):
        vals[:, 3 + e] = 4 * lam[:, a] * lam[:, b]
    return vals


def reference_nodes(order: int) -> np.ndarray:
    """The Lagrange nodes (ndof, 3) of the reference tetrahedron (vertices, edge midpoints)."""
    verts = np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    if order == 1:
        return verts
    mids = np.array([(verts[a] + verts[b]) / 2 for a, b in TET_EDGE_VERTICES])
    return np.vstack([verts, mids])


def _used_nodes(cells: np.ndarray, n_points: int) -> np.ndarray:
    """np.unique(cells) (sorted node indices, int64) by marking: O(m) instead of a sort."""
    mark = np.zeros(n_points, dtype=bool)
    mark[cells.reshape(-1)] = True
    return np.flatnonzero(mark).astype(np.int64, copy=False)


def _index_array(a: np.ndarray, n: int) -> np.ndarray:
    """COO row/column indices as int32 when every index of an n×n matrix fits: scipy then
    keeps int32 and skips the int64 → int32 down-cast and check of every entry, and the
    COO → CSR conversion moves half the bytes (same result; scipy itself goes back to int64
    when the number of entries needs it)."""
    return a.astype(np.int32, copy=False) if n < np.iinfo(np.int32).max else a


def _coo_to_csr(data: np.ndarray, rows: np.ndarray, cols: np.ndarray, n: int) -> sp.csr_matrix:
    return sp.coo_matrix((data, (_index_array(rows, n), _index_array(cols, n))), shape=(n, n)).tocsr()


def _symmetric_from_upper(U: sp.csr_matrix) -> sp.csr_matrix:
    """U + U^T − diag(U) for a canonical CSR U with entries on and above the diagonal only,
    built by placing each row's strictly-lower entries (a transpose: an O(nnz) counting
    pass) before its upper ones — sorted indices, explicit zeros kept, no arithmetic."""
    n = U.shape[0]
    idx = U.indices.dtype
    counts_u = np.diff(U.indptr)
    rows_u = np.repeat(np.arange(n, dtype=idx), counts_u)
    strict = U.indices != rows_u
    S = sp.csr_matrix((U.data[strict], U.indices[strict],
                       np.concatenate([[0], np.cumsum(np.bincount(rows_u[strict], minlength=n))]).astype(idx)),
                      shape=U.shape)
    T = S.tocsc()                      # CSC of S = CSR of S^T, row indices sorted
    counts_l = np.diff(T.indptr).astype(idx, copy=False)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts_l + counts_u, out=indptr[1:])
    nnz = int(indptr[-1])
    indices, data = np.empty(nnz, dtype=idx), np.empty(nnz, dtype=U.data.dtype)
    rows_l = np.repeat(np.arange(n, dtype=idx), counts_l)
    pos = indptr[rows_l] + (np.arange(len(rows_l)) - T.indptr[rows_l])
    indices[pos], data[pos] = T.indices, T.data
    pos = indptr[rows_u] + counts_l[rows_u] + (np.arange(len(rows_u)) - U.indptr[rows_u])
    indices[pos], data[pos] = U.indices, U.data
    A = sp.csr_matrix((data, indices, indptr.astype(idx) if nnz < np.iinfo(idx).max else indptr), shape=U.shape)
    A.has_sorted_indices = True
    return A


def _edge_key(a: np.ndarray, b: np.ndarray, width: int) -> np.ndarray:
    return np.minimum(a, b).astype(np.int64) * width + np.maximum(a, b)


# --- the space ------------------------------------------------------------------------
class Space:
    """A scalar Lagrange space of order 1 or 2 on a linear tetrahedral mesh (numpy).

    cell_dofs (m, 4|10); n_dofs; dof_coords (n, 3); dof_keys (n, 2) int64 — (node, −1) for
    a vertex dof, (min, max) node indices for a P2 edge dof (field_order's keys);
    vertex_dof (n_points,) the dof of each mesh node (−1: node in no cell).
    Geometry per cell: J (m, 3, 3) with columns x_k − x_0, detJ (m,), invJ (m, 3, 3).
    """

    def __init__(self, points: np.ndarray, cells: np.ndarray, order: int):
        if order not in (1, 2):
            raise ValueError(f"element order {order}: only 1 and 2 are supported")
        self.points = np.asarray(points, dtype=np.float64)
        self.cells = np.asarray(cells, dtype=np.int64)
        self.order = order
        n_pts = len(self.points)
        used = _used_nodes(self.cells, n_pts)
        self.vertex_dof = np.full(n_pts, -1, dtype=np.int64)
        self.vertex_dof[used] = np.arange(len(used))
        dofs = [self.vertex_dof[self.cells]]
        keys = [np.stack([used, np.full(len(used), -1)], 1)]
        coords = [self.points[used]]
        self._width = n_pts + 1
        if order == 2:
            ends = np.stack([np.stack([self.cells[:, a], self.cells[:, b]], 1) for a, b in TET_EDGE_VERTICES], 1)
            flat = _edge_key(ends[..., 0], ends[..., 1], self._width)
            self.edge_keys, inverse = np.unique(flat.ravel(), return_inverse=True)
            dofs.append(len(used) + inverse.reshape(-1, 6))
            lo, hi = np.divmod(self.edge_keys, self._width)
            keys.append(np.stack([lo, hi], 1))
            coords.append(0.5 * (self.points[lo] + self.points[hi]))
        self.cell_dofs = np.concatenate(dofs, axis=1)
        self.dof_keys = np.concatenate(keys).astype(np.int64)
        self.dof_coords = np.concatenate(coords)
        self.n_dofs = len(self.dof_coords)
        x = self.points[self.cells]
        self.J = np.stack([x[:, 1] - x[:, 0], x[:, 2] - x[:, 0], x[:, 3] - x[:, 0]], axis=2)
        self.detJ = np.linalg.det(self.J)
        if (self.detJ == 0).any():
            raise ValueError("degenerate (zero-volume) tetrahedra in the mesh")
        self.invJ = np.linalg.inv(self.J)
        self.absdet = np.abs(self.detJ)

    # dofs of mesh entities -------------------------------------------------------------
    def edge_dofs(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """P2 dofs of the edges (a[i], b[i]) (node indices)."""
        keys = _edge_key(np.asarray(a), np.asarray(b), self._width)
        pos = np.searchsorted(self.edge_keys, keys)
        if (pos >= len(self.edge_keys)).any() or (self.edge_keys[np.minimum(pos, len(self.edge_keys) - 1)] != keys).any():
            raise ValueError("an edge of the group is not an edge of the mesh")
        return int(self.vertex_dof.max()) + 1 + pos

    def facet_dofs(self, tris: np.ndarray) -> np.ndarray:
        """(k, 3|6) dofs of triangles (node indices): vertices, then edges (TRI_EDGE_VERTICES)."""
        tris = np.asarray(tris, dtype=np.int64).reshape(-1, 3)
        out = [self.vertex_dof[tris]]
        if self.order == 2:
            out.append(np.stack([self.edge_dofs(tris[:, a], tris[:, b]) for a, b in TRI_EDGE_VERTICES], 1))
        return np.concatenate(out, axis=1)

    def entity_dofs(self, dim: int, entities: np.ndarray) -> np.ndarray:
        """Unique dofs on the closure of entities of dimension 2 (triangles), 1 (edges) or 0."""
        ent = np.asarray(entities, dtype=np.int64)
        if dim == 2:
            d = self.facet_dofs(ent)
        elif dim == 1:
            ent = ent.reshape(-1, 2)
            d = [self.vertex_dof[ent]]
            if self.order == 2:
                d.append(self.edge_dofs(ent[:, 0], ent[:, 1])[:, None])
            d = np.concatenate(d, axis=1)
        else:
            d = self.vertex_dof[ent.reshape(-1)]
        d = np.unique(d.ravel())
        if (d < 0).any():
            raise ValueError("a group refers to nodes that belong to no cell")
        return d

    # geometry at reference points ------------------------------------------------------
    def grads(self, xi: np.ndarray) -> np.ndarray:
        """Physical basis gradients (m, nq, ndof, 3) at reference points xi (nq, 3)."""
        _, dref = tet_basis(self.order, xi)
        return np.einsum("cji,qaj->cqai", self.invJ, dref, optimize=True)

    def physical(self, xi: np.ndarray) -> np.ndarray:
        """Physical coordinates (m, nq, 3) of reference points xi (nq, 3)."""
        return self.points[self.cells[:, 0]][:, None, :] + np.einsum("cij,qj->cqi", self.J, np.atleast_2d(xi))

    # local matrices ---------------------------------------------------------------------
    def stiffness_local(self, coef: np.ndarray) -> np.ndarray:
        """∫ coef ∇φ_a·∇φ_b dx per cell (m, ndof, ndof); coef per cell."""
        xi, w = tet_rule(max(2 * (self.order - 1), 0))
        G = self.grads(xi)
        W = (coef * self.absdet)[:, None] * w[None]
        return np.einsum("cq,cqai,cqbi->cab", W, G, G, optimize=True)

    def mass_ref(self, degree: int | None = None) -> np.ndarray:
        """∫_ref φ_a φ_b (ndof, ndof) on the reference tetrahedron."""
        xi, w = tet_rule(2 * self.order if degree is None else degree)
        N, _ = tet_basis(self.order, xi)
        return np.einsum("q,qa,qb->ab", w, N, N)

    def mass_local(self, coef: np.ndarray) -> np.ndarray:
        """∫ coef φ_a φ_b dx per cell; coef per cell."""
        return (coef * self.absdet)[:, None, None] * self.mass_ref()[None]

    def elasticity_local(self, lam: np.ndarray, mu: np.ndarray) -> np.ndarray:
        """∫ 2μ ε(u):ε(v) + λ div u div v per cell, (m, 3·ndof, 3·ndof), blocked (a, i)."""
        xi, w = tet_rule(max(2 * (self.order - 1), 0))
        G = self.grads(xi)
        W = self.absdet[:, None] * w[None]
        nd = G.shape[2]
        lamG = np.einsum("cq,cqai->cqai", W * lam[:, None], G)
        muG = np.einsum("cq,cqai->cqai", W * mu[:, None], G)
        K = np.einsum("cqai,cqbj->caibj", lamG, G, optimize=True)
        K += np.einsum("cqaj,cqbi->caibj", muG, G, optimize=True)
        lap = np.einsum("cqak,cqbk->cab", muG, G, optimize=True)
        for i in range(3):
            K[:, :, i, :, i] += lap
        return K.reshape(-1, 3 * nd, 3 * nd)

    # assembly -----------------------------------------------------------------------------
    def assemble(self, local: np.ndarray, block: int = 1, cells: np.ndarray | None = None,
                 symmetric: bool = True) -> sp.csr_matrix:
        """Sum local matrices (m, k, k) into a CSR matrix (COO → CSR); block 3 for vector dofs.

        symmetric (every bilinear form of this backend): only the upper triangles of the
        local matrices are summed (global (min, max) positions), and the lower triangle is
        their transpose — 10 of 16 (P1) / 78 of 144 (P1 vector) entries per cell go through
        the COO → CSR sort, half the time at 1M dofs, and the matrix is exactly symmetric.
        """
        n = block * self.n_dofs
        dofs = _index_array(self.block_dofs(block, cells), n)
        k = dofs.shape[1]
        if not symmetric:
            rows = np.repeat(dofs, k, axis=1).ravel()
            cols = np.tile(dofs, (1, k)).ravel()
            A = _coo_to_csr(local.ravel(), rows, cols, n)
            A.sum_duplicates()
            return A
        ia, ib = np.triu_indices(k)
        r, c = dofs[:, ia], dofs[:, ib]
        U = _coo_to_csr(local[:, ia, ib].ravel(), np.minimum(r, c).ravel(), np.maximum(r, c).ravel(), n)
        U.sum_duplicates()
        return _symmetric_from_upper(U)

    def assemble_vector(self, local: np.ndarray, block: int = 1, cells: np.ndarray | None = None) -> np.ndarray:
        """Sum local vectors (m, k) into a global vector."""
        dofs = self.block_dofs(block, cells)
        return np.bincount(dofs.ravel(), weights=local.ravel(), minlength=block * self.n_dofs)

    def block_dofs(self, block: int, cells: np.ndarray | None = None) -> np.ndarray:
        dofs = self.cell_dofs if cells is None else self.cell_dofs[cells]
        if block == 1:
            return dofs
        return (block * dofs[:, :, None] + np.arange(block)).reshape(len(dofs), -1)

    def load_from_nodal(self, values: np.ndarray, cells: np.ndarray | None = None) -> np.ndarray:
        """∫ f φ_a dx for f in this space (dof values), over all cells or the given ones."""
        sel = np.arange(len(self.cells)) if cells is None else np.asarray(cells)
        local = self.absdet[sel, None] * (values[self.cell_dofs[sel]] @ self.mass_ref().T)
        return self.assemble_vector(local, cells=sel)

    def interpolate(self, fn) -> np.ndarray:
        """Dof values of fn(x, y, z) (vectorised) at the dof coordinates."""
        c = self.dof_coords
        return np.asarray(fn(c[:, 0], c[:, 1], c[:, 2]), dtype=np.float64) * np.ones(self.n_dofs)

    def p1_values(self, values: np.ndarray) -> np.ndarray:
        """Nodal (per point) values of a field of this space; nan at unused nodes."""
        values = np.asarray(values)
        out = np.full((len(self.points),) + values.shape[1:], np.nan)
        used = self.vertex_dof >= 0
        out[used] = values[self.vertex_dof[used]]
        return out


# --- facets ---------------------------------------------------------------------------
class Facets:
    """Tagged triangles with their areas, outward normals (exterior ones) and dofs."""

    def __init__(self, space: Space, tris: np.ndarray, tags: np.ndarray):
        self.space = space
        self.tris = np.asarray(tris, dtype=np.int64).reshape(-1, 3)
        self.tags = np.asarray(tags)
        pts = space.points
        # Only a cell face whose three nodes all lie on tagged triangles can be one of them:
        # keep those (cell_face = 4·cell + local face, increasing) and sort only them —
        # the same counts and the same first (lowest) cell_face per key as sorting all 4m.
        on_tri = np.zeros(len(pts), dtype=bool)
        on_tri[self.tris.reshape(-1)] = True
        cand = np.flatnonzero(np.count_nonzero(on_tri[space.cells], axis=1) >= 3)
        cand_faces = space.cells[cand][:, TET_FACES]                       # (k, 4, 3)
        keep = on_tri[cand_faces].all(axis=2)
        face_ids = (4 * cand[:, None] + np.arange(4))[keep]
        faces = np.sort(cand_faces[keep], axis=1)
        w = len(pts) + 1
        fkey = (faces[:, 0] * w + faces[:, 1]) * w + faces[:, 2]
        order = np.argsort(fkey, kind="stable")
        fkey_sorted = fkey[order]
        uniq, first, counts = np.unique(fkey_sorted, return_index=True, return_counts=True)
        s = np.sort(self.tris, axis=1)
        tkey = (s[:, 0] * w + s[:, 1]) * w + s[:, 2]
        pos = np.searchsorted(uniq, tkey)
        pos_c = np.minimum(pos, len(uniq) - 1)
        if len(tkey) and (not len(uniq) or (uniq[pos_c] != tkey).any()):
            raise ValueError("a tagged triangle is not a face of any tetrahedron")
        self.n_cells = counts[pos_c] if len(tkey) else np.zeros(0, int)
        self.exterior = self.n_cells == 1
        cell_face = face_ids[order[first[pos_c]]] if len(tkey) else np.zeros(0, int)
        cell, local = np.divmod(cell_face, 4)
        p = pts[self.tris]
        nvec = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
        self.area = 0.5 * np.linalg.norm(nvec, axis=1)
        normal = nvec / np.maximum(2 * self.area, 1e-300)[:, None]
        opposite = pts[space.cells[cell, local]] if len(tkey) else np.zeros((0, 3))
        flip = np.einsum("ij,ij->i", opposite - p[:, 0], normal) > 0
        normal[flip] *= -1
        self.normal = normal
        self.dofs = space.facet_dofs(self.tris)

    def select(self, tag: int, exterior_only: bool) -> np.ndarray:
        sel = self.tags == tag
        return np.flatnonzero(sel & self.exterior) if exterior_only else np.flatnonzero(sel)

    def mass_ref(self) -> np.ndarray:
        xi, w = tri_rule(2 * self.space.order)
        N = tri_basis(self.space.order, xi)
        return np.einsum("q,qa,qb->ab", w, N, N)

    def mass_local(self, idx: np.ndarray, coef: float) -> np.ndarray:
        return (2 * self.area[idx] * coef)[:, None, None] * self.mass_ref()[None]

    def load(self, idx: np.ndarray, values: np.ndarray) -> np.ndarray:
        """∫ f φ_a ds over the triangles idx, f given by dof values (n,) of the space:
        local (k, ndof_facet)."""
        return (2 * self.area[idx])[:, None] * (values[self.dofs[idx]] @ self.mass_ref().T)

    def assemble_vector(self, idx: np.ndarray, local: np.ndarray, n: int) -> np.ndarray:
        return np.bincount(self.dofs[idx].ravel(), weights=local.ravel(), minlength=n)

    def assemble_matrix(self, idx: np.ndarray, local: np.ndarray, n: int) -> sp.csr_matrix:
        d = _index_array(self.dofs[idx], n)
        k = d.shape[1]
        rows, cols = np.repeat(d, k, axis=1).ravel(), np.tile(d, (1, k)).ravel()
        return _coo_to_csr(local.ravel(), rows, cols, n)


# --- Dirichlet elimination --------------------------------------------------------------
def solve_with_dirichlet(A: sp.csr_matrix, b: np.ndarray, dofs: np.ndarray, values: np.ndarray,
                         solve, x0: np.ndarray | None = None) -> np.ndarray:
    """x with x[dofs] = values and A_ff x_f = b_f − A_fc values (row/column elimination with
    lifting); solve(A_ff, rhs, x0_f, free) does the free part."""
    n = A.shape[0]
    x = np.zeros(n) if x0 is None else np.array(x0, dtype=np.float64)
    fixed = np.zeros(n, dtype=bool)
    fixed[dofs] = True
    free = np.flatnonzero(~fixed)
    x[dofs] = values
    if not len(free):
        return x
    g = np.zeros(n)
    g[dofs] = values
    rhs = (b - A @ g)[free]
    x[free] = solve(A[free][:, free], rhs, x[free], free)
    return x


# --- point location ---------------------------------------------------------------------
def containing_cells(space: Space, point: np.ndarray, tol: float = 1e-10) -> tuple[np.ndarray, np.ndarray]:
    """Cells containing `point` (barycentric coordinates ≥ −tol, vectorised over cells) and
    the point's reference coordinates in each: (k,), (k, 3); empty outside the mesh."""
    p = np.asarray(point, dtype=np.float64).reshape(3)
    ref = np.einsum("cij,cj->ci", space.invJ, p[None] - space.points[space.cells[:, 0]])
    bary = np.concatenate([1 - ref.sum(axis=1, keepdims=True), ref], axis=1)
    inside = np.flatnonzero(bary.min(axis=1) >= -tol)
    return inside, ref[inside]


def evaluate(space: Space, values: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Values of a field of `space` (dof values (n,) or (n, k)) at points (p, 3), in the
    lowest-numbered containing cell; nan outside the mesh."""
    values = np.asarray(values, dtype=np.float64)
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    out = np.full((len(pts),) + values.shape[1:], np.nan)
    for i, p in enumerate(pts):
        cells, ref = containing_cells(space, p)
        if len(cells):
            N, _ = tet_basis(space.order, ref[:1])
            out[i] = np.tensordot(N[0], values[space.cell_dofs[cells[0]]], axes=1)
    return out


def dirichlet_system(A: sp.csr_matrix, b: np.ndarray, dofs: np.ndarray, values: np.ndarray
                     ) -> tuple[sp.csr_matrix, np.ndarray]:
    """The full-size system with the Dirichlet rows and columns replaced by the identity
    scaled by A's diagonal d (dolfinx puts 1 there; the scaled rows keep the matrix well
    conditioned for AMG and give the same solution): b − A g on the free rows (lifting),
    d·g on the fixed ones. Keeps the block structure of a vector system (BSR blocks)."""
    n = A.shape[0]
    fixed = np.zeros(n, dtype=bool)
    fixed[dofs] = True
    keep = sp.diags((~fixed).astype(np.float64))
    d = _bc_diagonal(A)
    A_bc = (keep @ A @ keep + sp.diags(np.where(fixed, d, 0.0))).tocsr()
    return A_bc, dirichlet_rhs(A, b, dofs, values)


def dirichlet_rhs(A: sp.csr_matrix, b: np.ndarray, dofs: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The right-hand side of `dirichlet_system` alone (its matrix does not depend on b)."""
    n = A.shape[0]
    g = np.zeros(n)
    g[dofs] = values
    fixed = np.zeros(n, dtype=bool)
    fixed[dofs] = True
    d = _bc_diagonal(A)
    rhs = b - A @ g
    rhs[fixed] = d[fixed] * g[fixed]
    return rhs


def _bc_diagonal(A: sp.csr_matrix) -> np.ndarray:
    d = A.diagonal()
    return np.where(d > 0, d, 1.0)
