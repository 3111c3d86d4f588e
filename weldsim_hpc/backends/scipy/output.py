"""Field output and probes of the scipy backend, without dolfinx.

results/fields.xdmf (+ .h5, meshio's XDMF time-series writer): the linear mesh, P1 nodal
temperature (K) and displacement (m), cellwise von_mises (Pa) — what the fenicsx backend
writes. results/fields.pvd + fields_000000.vtu: the fields at full order (tetra10 with the
edge-midpoint nodes for P2; the temperature brought to the displacement's order).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .fe import TET_EDGE_VERTICES, Space, evaluate

#: meshio/VTK tetra10 edge order → our basix edge index
_VTK_EDGES = ((0, 1), (1, 2), (0, 2), (0, 3), (1, 3), (2, 3))
_VTK_FROM_BASIX = [4 + TET_EDGE_VERTICES.index(e) for e in _VTK_EDGES]


@dataclass
class SolvedFields:
    """Fields of one solve (any may be None): (space, values) pairs, von Mises per cell."""

    points: np.ndarray
    cells: np.ndarray
    temperature: tuple[Space, np.ndarray] | None = None
    displacement: tuple[Space, np.ndarray] | None = None
    von_mises_dg0: np.ndarray | None = None
    stress: Callable[[np.ndarray], np.ndarray] | None = None
    t: float = 0.0


def _to_order(space: Space, values: np.ndarray, target: Space) -> np.ndarray:
    """Values of a P1/P2 field at the dofs of `target` (same mesh)."""
    if space.order == target.order:
        return values
    if space.order == 1:   # P1 → P2: vertex values, edge means
        lo, hi = target.dof_keys[:, 0], target.dof_keys[:, 1]
        out = values[space.vertex_dof[lo]].astype(float)
        edge = hi >= 0
        out[edge] = 0.5 * (values[space.vertex_dof[lo[edge]]] + values[space.vertex_dof[hi[edge]]])
        return out
    return values[space.vertex_dof[target.dof_keys[:, 0]]]   # P2 → P1: vertex values


def write_fields(fields: SolvedFields, xdmf_path: Path, pvd_path: Path) -> None:
    """Write the XDMF (P1 + cellwise) and the full-order VTU + PVD files."""
    import meshio

    point_data: dict[str, np.ndarray] = {}
    for name, f in (("temperature", fields.temperature), ("displacement", fields.displacement)):
        if f is not None:
            point_data[name] = np.nan_to_num(f[0].p1_values(f[1]))
    cell_data = {} if fields.von_mises_dg0 is None else {"von_mises": [np.asarray(fields.von_mises_dg0)]}
    if not point_data and not cell_data:
        return
    # meshio writes the .h5 beside the .xdmf by bare name, i.e. into the working directory
    with contextlib.chdir(Path(xdmf_path).parent), meshio.xdmf.TimeSeriesWriter(Path(xdmf_path).name) as writer:
        writer.write_points_cells(fields.points, [("tetra", fields.cells)])
        writer.write_data(fields.t, point_data=point_data, cell_data=cell_data)

    ref = fields.displacement or fields.temperature
    space = ref[0] if ref is not None else Space(fields.points, fields.cells, 1)
    full: dict[str, np.ndarray] = {}
    for name, f in (("temperature", fields.temperature), ("displacement", fields.displacement)):
        if f is not None:
            full[name] = _to_order(f[0], f[1], space)
    if space.order == 2:
        conn = space.cell_dofs[:, [0, 1, 2, 3] + _VTK_FROM_BASIX]
        cell_type = "tetra10"
    else:
        conn = space.cell_dofs
        cell_type = "tetra"
    piece = pvd_path.with_name(f"{pvd_path.stem}_000000.vtu")
    meshio.write(str(piece), meshio.Mesh(space.dof_coords, [(cell_type, conn)], point_data=full,
                                         cell_data=cell_data), file_format="vtu")
    pvd_path.write_text(
        '<?xml version="1.0"?>\n<VTKFile type="Collection" version="0.1">\n  <Collection>\n'
        f'    <DataSet timestep="{fields.t!r}" part="0" file="{piece.name}"/>\n'
        '  </Collection>\n</VTKFile>\n')


def probe_values(case: Any, fields: SolvedFields) -> dict[str, float]:
    """`probe.<name>.<field>` -> value, as the fenicsx backend (points outside: no value)."""
    from ...results import PROBE_QUANTITIES

    if not case.probes:
        return {}
    points = np.array([p.point for p in case.probes], dtype=float)
    wanted = {f for p in case.probes for f in p.fields}
    columns: dict[str, np.ndarray] = {}
    if "temperature" in wanted and fields.temperature is not None:
        columns["temperature_K"] = evaluate(*fields.temperature, points)
    if "displacement" in wanted and fields.displacement is not None:
        u = evaluate(*fields.displacement, points)
        columns.update(zip(("ux_m", "uy_m", "uz_m"), u.T))
        columns["displacement_m"] = np.sqrt((u**2).sum(axis=1))
    if "von_mises" in wanted and fields.von_mises_dg0 is not None:
        cellwise = Space(fields.points, fields.cells, 1)
        from .fe import containing_cells

        vm = np.full(len(points), np.nan)
        for i, p in enumerate(points):
            cells, _ = containing_cells(cellwise, p)
            if len(cells):
                vm[i] = fields.von_mises_dg0[cells[0]]
        columns["von_mises_Pa"] = vm
    if "stress" in wanted and fields.stress is not None:
        stress = fields.stress(points)
        for j, name in enumerate(PROBE_QUANTITIES["stress"]):
            columns[name] = stress[:, j]
    out: dict[str, float] = {}
    for i, probe in enumerate(case.probes):
        for quantity in probe.fields:
            for name in PROBE_QUANTITIES[quantity]:
                if name in columns and np.isfinite(columns[name][i]):
                    out[f"probe.{probe.name}.{name}"] = float(columns[name][i])
    return out
