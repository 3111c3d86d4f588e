"""Structured numpy mesher for the cylinder, block and stepped horns (no gmsh needed).

The fallback of `pipeline.mesh_case` where gmsh is not installed. Pure numpy, vectorised
(no Python loop over cells); the output is a linear-tetrahedron `MeshData` with the same
groups and tags as the gmsh path: volume `horn` (1), surfaces `input_face` (101, z = 0),
`output_face` (102, z = L) and `lateral` (103, everything else, the step shoulder too).

Construction (SI metres, axis +z, as `geometry.horns`):

* cross-section: a rectangular grid (block), or an O-grid of a disc (cylinder, stepped):
  a square core of (N/4)² quads (half-side 0.5 r) blended into rings out to a regular
  N-gon inscribed in the circle. N = max(curvature_segments, 2πR/size_m, 8), rounded up
  to a multiple of 4, R the largest radius; rings are spaced about like the N-gon's sides.
* the quads are split into triangles (shorter diagonal) and extruded in z-layers of about
  size_m into triangular prisms, each split into 3 tetrahedra by the global node order
  (staircase/Kuhn rule: the vertical face on 2-D edge (a, b), a < b, is cut by the diagonal
  from a below to b above), so two prisms that share a face cut it the same way: the mesh
  is conforming. A quad column thus gives 6 tetrahedra per layer.
* stepped: the large section's outer rings (radius R2 + rf .. R1) exist only for z <= L1;
  the inner part (core + rings) is one grid over the whole length and is shared at the step
  plane. The refine size near the weld face is not applied (layers are uniform).

Approximations (see `approximation_note`): round sections are regular N-gons (area factor
N sin(2π/N) / 2π: -0.16% at N = 64, -1.6% at N = 20). The concave fillet of the stepped
horn (radius rf) is replaced by a straight radius ramp, a 45° chamfer from R2 + rf at the
shoulder (z = L1) to R2 at z = L1 + rf, which adds the area between chord and arc,
rf² (π/4 - 1/2) ≈ 0.285 rf², revolved (+0.35% of the 20 kHz example horn's volume). A ramp,
not chords inscribed in the arc: the arc leaves the shoulder horizontally, and chords
that follow it shear the layers into tetrahedra of quality < 0.1. Layers are at most
3 N-gon sides high (`_ASPECT`) so that min quality stays > 0.1 (0.19 and up on the example
horns). The stress concentration at the step is therefore not the filleted one; use gmsh
when it matters. `approximated_volume_m3` is the exact volume of the meshed solid.

Example::

    from weldsim_hpc.geometry import SteppedHorn
    from weldsim_hpc.geometry.structured import structured_mesh, approximation_note
    horn = SteppedHorn(length_input_m=0.06085, length_output_m=0.06085,
                       diameter_input_m=0.04, diameter_output_m=0.02, fillet_radius_m=0.004)
    mesh = structured_mesh(horn, size_m=0.0075, curvature_segments=12)
    print(approximation_note(horn, size_m=0.0075, curvature_segments=12))
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ..errors import GeometryError, MeshError
from ..mesh import MeshData
from .groups import HORN, INPUT_FACE, LATERAL, OUTPUT_FACE, SURFACE, VOLUME

SUPPORTED_KINDS = ("cylinder", "block", "stepped")
HORN_TAG, INPUT_TAG, OUTPUT_TAG, LATERAL_TAG = 1, 101, 102, 103
_CORE = 0.5    # half-side of the O-grid's square core, / radius
_ASPECT = 3.0  # layer height <= _ASPECT x the N-gon's side (keeps the tetrahedra > 0.1)


class _Section(NamedTuple):
    """A 2-D quad mesh: unit coordinates scaled per layer (`scaled`) or absolute."""

    xy: np.ndarray        # (n, 2): unit-disc coordinates if scaled, else metres
    scaled: np.ndarray    # (n,) bool: the node follows the layer radius rho(z)
    quads: np.ndarray     # (q, 4) counter-clockwise
    outer: np.ndarray     # (q,) bool: quad of the stepped horn's outer rings (z <= L1 only)


def _kind(horn) -> str:
    kind = getattr(horn, "kind", type(horn).__name__)
    if kind not in SUPPORTED_KINDS:
        raise GeometryError(f"the structured mesher handles {', '.join(SUPPORTED_KINDS)} horns, "
                            f"not '{kind}': mesh it with gmsh (pip install gmsh, or Debian "
                            "python3-gmsh)")
    return kind


def _sizes(size_m, curvature_segments, sizes) -> tuple[float, int]:
    size = getattr(sizes, "size_m", None) if size_m is None else size_m
    segs = getattr(sizes, "curvature_segments", 32) if curvature_segments is None else curvature_segments
    if size is None or not size > 0:
        raise MeshError("mesh.size_m: the structured mesher needs a positive element size")
    return float(size), int(segs)


def angular_segments(horn, size_m: float, curvature_segments: int) -> int:
    """Sides N of the N-gon standing for the circle: a multiple of 4, at least 8."""
    radius = horn.bounding_box()[1][0]
    n = max(curvature_segments, math.ceil(2 * math.pi * radius / size_m), 8)
    return int(4 * math.ceil(n / 4))


def _layers(length: float, size: float) -> np.ndarray:
    return np.linspace(0.0, length, max(1, math.ceil(length / size - 1e-9)) + 1)


def _disc(n_seg: int, rings: int, outer_radii: np.ndarray) -> _Section:
    """O-grid of the unit disc (core + `rings` rings), plus absolute rings at outer_radii."""
    n = n_seg // 4
    g = np.linspace(-_CORE, _CORE, n + 1)
    core = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)   # id = i (n+1) + j
    k = np.arange(n_seg)
    side, u = k // n, k % n
    i = np.choose(side, [np.full_like(k, n), n - u, np.zeros_like(k), u])
    j = np.choose(side, [u, np.full_like(k, n), n - u, np.zeros_like(k)])
    square = i * (n + 1) + j                                   # core boundary, CCW from (s, -s)
    theta = -math.pi / 4 + 2 * math.pi * k / n_seg
    circle = np.stack([np.cos(theta), np.sin(theta)], -1)
    t = (np.arange(1, rings + 1) / rings)[:, None, None]
    ring_xy = (1 - t) * core[square][None] + t * circle[None]
    abs_xy = outer_radii[:, None, None] * circle[None]
    xy = np.concatenate([core, ring_xy.reshape(-1, 2), abs_xy.reshape(-1, 2)])
    scaled = np.arange(len(xy)) < len(core) + rings * n_seg
    ring_ids = np.concatenate([square[None], len(core) + np.arange((rings + len(outer_radii)) * n_seg)
                               .reshape(-1, n_seg)])           # (rings + outer + 1, N)
    ci = (np.arange(n)[:, None] * (n + 1) + np.arange(n)[None]).ravel()
    core_quads = np.stack([ci, ci + n + 1, ci + n + 2, ci + 1], -1)
    inner, outer = ring_ids[:-1], ring_ids[1:]
    ring_quads = np.stack([inner, np.roll(inner, -1, 1), np.roll(outer, -1, 1), outer], -1).reshape(-1, 4)
    is_outer = np.repeat(np.arange(len(ring_ids) - 1) >= rings, n_seg)
    return _Section(xy, scaled, np.concatenate([core_quads, ring_quads]),
                    np.concatenate([np.zeros(len(core_quads), bool), is_outer]))


def _rectangle(width: float, depth: float, size: float) -> _Section:
    x, y = _layers(width, size) - width / 2, _layers(depth, size) - depth / 2
    xy = np.stack(np.meshgrid(x, y, indexing="ij"), -1).reshape(-1, 2)
    ny = len(y)
    c = (np.arange(len(x) - 1)[:, None] * ny + np.arange(ny - 1)[None]).ravel()
    quads = np.stack([c, c + ny, c + ny + 1, c + 1], -1)
    return _Section(xy, np.zeros(len(xy), bool), quads, np.zeros(len(quads), bool))


def _plan(horn, size: float, segs: int):
    """(section, layer z (K+1,), layer radius rho (K+1,), z of the step or None, N)."""
    kind = _kind(horn)
    if kind == "block":
        z = _layers(horn.length_m, size)
        return _rectangle(horn.width_m, horn.depth_m, size), z, np.ones_like(z), None, 0
    n_seg = angular_segments(horn, size, segs)
    if kind == "cylinder":
        r = horn.diameter_m / 2
        rings = max(1, round((1 - _CORE) * r / min(size, 2 * math.pi * r / n_seg)))
        z = _layers(horn.length_m, min(size, _ASPECT * 2 * math.pi * r / n_seg))
        return _disc(n_seg, rings, np.empty(0)), z, np.full_like(z, r), None, n_seg
    r1, r2, rf = horn.diameter_input_m / 2, horn.diameter_output_m / 2, horn.fillet_radius_m
    l1, length = horn.length_input_m, horn.length_m
    r0 = r2 + rf                                         # inner-grid radius below the step
    h_t = min(size, 2 * math.pi * r0 / n_seg)
    rings = max(1, round((1 - _CORE) * r0 / h_t))
    n_out = max(1, round((r1 - r0) / min(size, 2 * math.pi * (r0 + r1) / 2 / n_seg)))
    dz = min(size, _ASPECT * 2 * math.pi * r2 / n_seg)
    n_ramp = max(1, math.ceil(rf / dz - 1e-9))                # the fillet -> a straight ramp
    zf, rho_f = l1 + np.linspace(0.0, rf, n_ramp + 1), np.linspace(r0, r2, n_ramp + 1)
    z_top = l1 + rf + _layers(length - l1 - rf, dz)
    z = np.concatenate([_layers(l1, min(size, _ASPECT * 2 * math.pi * r0 / n_seg)), zf[1:], z_top[1:]])
    rho = np.concatenate([np.full(len(z) - len(zf) - len(z_top) + 2, r0), rho_f[1:],
                          np.full(len(z_top) - 1, r2)])
    section = _disc(n_seg, rings, r0 + (r1 - r0) * np.arange(1, n_out + 1) / n_out)
    return section, z, rho, l1, n_seg


def _triangles(sec: _Section, rho: float) -> tuple[np.ndarray, np.ndarray]:
    """Split each quad along its shorter diagonal (at layer radius rho); return
    (triangles (2q, 3), outer (2q,))."""
    q, p = sec.quads, np.where(sec.scaled[:, None], sec.xy * rho, sec.xy)
    d02 = np.linalg.norm(p[q[:, 0]] - p[q[:, 2]], axis=1)
    d13 = np.linalg.norm(p[q[:, 1]] - p[q[:, 3]], axis=1)
    use02 = (d02 <= d13)[:, None]
    first = np.where(use02, q[:, [0, 1, 2]], q[:, [0, 1, 3]])
    second = np.where(use02, q[:, [0, 2, 3]], q[:, [1, 2, 3]])
    return np.concatenate([first, second]), np.concatenate([sec.outer, sec.outer])


def structured_mesh(horn, sizes=None, *, size_m: float | None = None,
                    curvature_segments: int | None = None) -> MeshData:
    """Mesh a cylinder, block or stepped horn with linear tetrahedra (positive orientation).

    `sizes` is a ResolvedSizes or MeshSettings (its size_m and curvature_segments are used);
    size_m / curvature_segments override it. GeometryError for any other horn kind.
    """
    size, segs = _sizes(size_m, curvature_segments, sizes)
    sec, z, rho, z_step, _ = _plan(horn, size, segs)
    tri, tri_outer = _triangles(sec, rho[0])
    tri = np.sort(tri, axis=1)
    n2d, n_layers = len(sec.xy), len(z) - 1
    active = np.ones((n_layers, len(tri)), bool)
    if z_step is not None:  # outer rings only below the step plane
        active &= ~(tri_outer[None] & (z[1:, None] > z_step + 1e-12 * horn.length_m))
    layer, t = np.nonzero(active)
    a, b, c = (tri[t, i] + layer * n2d for i in range(3))
    a1, b1, c1 = a + n2d, b + n2d, c + n2d
    cells = np.concatenate([np.stack(v, -1) for v in
                            ((a, b, c, c1), (a, b, b1, c1), (a, a1, b1, c1))])
    xy = np.where(sec.scaled[None, :, None], sec.xy[None] * rho[:, None, None], sec.xy[None])
    points = np.concatenate([xy, np.broadcast_to(z[:, None, None], (len(z), n2d, 1))], -1)
    used, cells = np.unique(cells, return_inverse=True)
    points, cells = points.reshape(-1, 3)[used], cells.reshape(-1, 4)
    p = points[cells]
    det = np.einsum("ij,ij->i", p[:, 1] - p[:, 0], np.cross(p[:, 2] - p[:, 0], p[:, 3] - p[:, 0]))
    cells[det < 0] = cells[det < 0][:, [0, 1, 3, 2]]
    facets = boundary_faces(cells)
    fz = points[facets, 2]
    tol = 1e-9 * horn.length_m
    tags = np.full(len(facets), LATERAL_TAG, np.int32)
    tags[(fz < tol).all(1)] = INPUT_TAG
    tags[(fz > horn.length_m - tol).all(1)] = OUTPUT_TAG
    groups = {HORN: (VOLUME, HORN_TAG), INPUT_FACE: (SURFACE, INPUT_TAG),
              OUTPUT_FACE: (SURFACE, OUTPUT_TAG), LATERAL: (SURFACE, LATERAL_TAG)}
    return MeshData(points, cells, np.full(len(cells), HORN_TAG, np.int32), facets, tags, groups)


def boundary_faces(cells: np.ndarray) -> np.ndarray:
    """Triangles that belong to exactly one tetrahedron (k, 3), in cell-local order."""
    faces = cells[:, [[1, 2, 3], [0, 3, 2], [0, 1, 3], [0, 2, 1]]].reshape(-1, 3)
    key = np.sort(faces, axis=1)
    n = int(cells.max()) + 1 if len(cells) else 1
    if n < 2_000_000:  # one int64 per triangle: much faster than unique(axis=0)
        key = (key[:, 0] * n + key[:, 1]) * n + key[:, 2]
    _, idx, counts = np.unique(key, axis=0 if key.ndim == 2 else None, return_index=True,
                               return_counts=True)
    return faces[np.sort(idx[counts == 1])]


def approximated_volume_m3(horn, sizes=None, *, size_m: float | None = None,
                           curvature_segments: int | None = None) -> float:
    """Exact volume (m³) of the solid the structured mesh fills: N-gon sections, the
    fillet as a ramp (polygonal frustums, V = c (dz/3)(ρ0² + ρ0ρ1 + ρ1²))."""
    size, segs = _sizes(size_m, curvature_segments, sizes)
    sec, z, rho, _, n_seg = _plan(horn, size, segs)
    if not n_seg:
        return float(horn.volume_m3())
    c = n_seg / 2 * math.sin(2 * math.pi / n_seg)
    frustums = c * np.diff(z) / 3 * (rho[:-1] ** 2 + rho[:-1] * rho[1:] + rho[1:] ** 2)
    if getattr(horn, "kind", "") == "stepped":
        r1, r0 = horn.diameter_input_m / 2, horn.diameter_output_m / 2 + horn.fillet_radius_m
        return float(frustums.sum() + c * (r1 ** 2 - r0 ** 2) * horn.length_input_m)
    return float(frustums.sum())


def approximation_note(horn, sizes=None, *, size_m: float | None = None,
                       curvature_segments: int | None = None) -> str:
    """One line for the log: what the structured mesh changes in the geometry."""
    size, segs = _sizes(size_m, curvature_segments, sizes)
    kind = _kind(horn)
    exact, approx = horn.volume_m3(), approximated_volume_m3(horn, size_m=size, curvature_segments=segs)
    parts = [f"structured mesher ({kind}, size {size * 1e3:g} mm)"]
    if kind != "block":
        n_seg = angular_segments(horn, size, segs)
        area = n_seg * math.sin(2 * math.pi / n_seg) / (2 * math.pi) - 1
        parts.append(f"round sections are regular {n_seg}-gons (area {area:+.2%})")
    if kind == "stepped":
        parts.append(f"the fillet (r = {horn.fillet_radius_m * 1e3:g} mm) is a straight ramp "
                     "(a 45-degree chamfer) from R2 + r at the shoulder to R2 at L1 + r")
    parts.append(f"meshed volume {approx:.6g} m³ vs {exact:.6g} m³ exact ({approx / exact - 1:+.3%})")
    return "; ".join(parts)
