"""Field output and probes of a finished solve (collective).

results/fields.xdmf (+ .h5): P1 nodal fields and the cellwise (DG0) von Mises stress, for
quick looks and the portal's viewer; results/fields.pvd (+ .pvtu/.vtu pieces): the
fields at full order for ParaView (dolfinx 0.5 writes one .vtu piece per rank).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import compat


@dataclass
class SolvedFields:
    """The fields of one solve; any may be None. Temperatures in K, displacements in m."""

    temperature: Any = None        # full order
    temperature_p1: Any = None
    displacement: Any = None       # full order, vector
    displacement_p1: Any = None
    von_mises_dg0: Any = None      # Pa, cellwise
    stress: Any = None             # callable (n, 3) points -> (n, 6) σ components, Pa
    t: float = 0.0


def write_fields(fields: SolvedFields, xdmf_path: Path, pvd_path: Path) -> None:
    """Collective: write the XDMF (P1 + DG0) and the full-order VTK files."""
    from dolfinx import fem, io

    nodal = [f for f in (fields.temperature_p1, fields.displacement_p1, fields.von_mises_dg0) if f is not None]
    if not nodal:
        return
    mesh = nodal[0].function_space.mesh
    with io.XDMFFile(mesh.comm, str(xdmf_path), "w") as xdmf:
        xdmf.write_mesh(mesh)
        for f in nodal:
            xdmf.write_function(f, fields.t)
    full = [f for f in (fields.temperature, fields.displacement) if f is not None]
    if fields.temperature is not None and fields.displacement is not None:
        # VTK needs one element for all point fields: the temperature at the displacement order
        degree = fields.displacement.function_space.ufl_element().degree()
        if fields.temperature.function_space.ufl_element().degree() != degree:
            T = fem.Function(compat.lagrange_space(mesh, degree), name="temperature")
            compat.interpolate_function(T, fields.temperature)
            full = [T, fields.displacement]
    if fields.von_mises_dg0 is not None:
        full.append(fields.von_mises_dg0)
    with io.VTKFile(mesh.comm, str(pvd_path), "w") as vtk:
        vtk.write_function(full, fields.t)


def _components(u: Any) -> list[Any]:
    """Scalar P(k) Functions of the components of a vector Function."""
    return [u.sub(i).collapse() for i in range(u.function_space.num_sub_spaces)]


def probe_values(case: Any, fields: SolvedFields, comm: Any) -> dict[str, float]:
    """Collective: `probe.<name>.<field>` -> value for the fields each probe asks for.

    Stress components come from `fields.stress` when the solver provides it (a callable
    (points) -> (n, 6) array in the order xx, yy, zz, xy, yz, xz). Points outside the mesh
    yield no value (nan is not a metric).
    """
    from ...results import PROBE_QUANTITIES

    if not case.probes:
        return {}
    points = np.array([p.point for p in case.probes], dtype=float)
    columns: dict[str, np.ndarray] = {}
    wanted = {f for p in case.probes for f in p.fields}
    if "temperature" in wanted and fields.temperature is not None:
        columns["temperature_K"] = compat.evaluate_at_points(fields.temperature, points, comm)
    if "displacement" in wanted and fields.displacement is not None:
        comps = [compat.evaluate_at_points(c, points, comm) for c in _components(fields.displacement)]
        columns.update(zip(("ux_m", "uy_m", "uz_m"), comps))
        columns["displacement_m"] = np.sqrt(sum(c**2 for c in comps))
    if "von_mises" in wanted and fields.von_mises_dg0 is not None:
        columns["von_mises_Pa"] = compat.evaluate_at_points(fields.von_mises_dg0, points, comm)
    if "stress" in wanted and getattr(fields, "stress", None) is not None:
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
