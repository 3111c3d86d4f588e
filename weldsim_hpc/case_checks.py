"""Cross-field checks of a CaseSpec: what one field alone cannot tell.

Each check returns (field path, reason) pairs so that `weldsim validate` can print every
problem at once. Nothing here runs gmsh: group names come from the geometry parameters
(or the mesh file's physical names), and the cell count is estimated from mesh settings.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from .case import (
    DYNAMIC_ANALYSES,
    STRUCTURAL_BC_TYPES,
    THERMAL_ANALYSES,
    THERMAL_BC_TYPES,
    CaseSpec,
)
from .errors import MaterialError, WeldSimError
from .geometry import groups as g
from .geometry.sizing import ResolvedSizes, check_cell_limit, resolve_sizes
from .materials import Material, resolve_material

Problem = tuple[str, str]


def _suggest(name: str, known: Iterable[str]) -> str:
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return f"({hint}known: {', '.join(known) or 'none'})"


def resolve_case_materials(case: CaseSpec) -> tuple[dict[str, Material], list[Problem]]:
    """Volume group -> Material (custom materials inlined), and the problems found."""
    resolved: dict[str, Material] = {}
    problems: list[Problem] = []
    custom: dict[str, Material] = {}
    for mat_id, props in case.custom_materials.items():
        try:
            custom[mat_id] = resolve_material({"id": mat_id, **props}, None)
        except MaterialError as exc:
            problems.append((f"custom_materials.{mat_id}", str(exc)))
    for volume, value in case.materials.items():
        try:
            resolved[volume] = resolve_material(value, custom)
        except MaterialError as exc:
            problems.append((f"materials.{volume}", str(exc)))
    return resolved, problems


def material_key_for_volume(volume: str, material_keys: Iterable[str]) -> str | None:
    """The `materials` key that gives a volume its material.

    Individual foils (foil_01, foil_02, ...) take the `foil_stack` material unless a foil
    is named on its own, so one line covers a stack of 150 foils.
    """
    keys = set(material_keys)
    if volume in keys:
        return volume
    if volume.startswith("foil_") and volume[5:].isdigit() and g.FOIL_STACK in keys:
        return g.FOIL_STACK
    return None


#: boundary types that may act on an edge (dim 1) or point (dim 0) group as well as a surface
_ANY_DIM_BC_TYPES = ("fixed", "displacement")
_DIM_NAMES = {3: "a volume", 2: "a surface", 1: "an edge", 0: "a point"}


def _boundary_problem(bc_type: str, name: str, groups: dict[str, int]) -> str | None:
    """Why a condition of `bc_type` cannot act on group `name`, or None.

    fixed / displacement may name a surface, edge or point group (NAFEMS LE10 holds one
    edge); every other condition needs a surface (dim 2).
    """
    allowed = (2, 1, 0) if bc_type in _ANY_DIM_BC_TYPES else (2,)
    candidates = {n for n, d in groups.items() if d in allowed}
    if name not in groups:
        return f"unknown boundary '{name}' for this geometry {_suggest(name, candidates)}"
    dim = groups[name]
    if dim in allowed:
        return None
    if bc_type in _ANY_DIM_BC_TYPES:
        need = "a surface, edge or point group (dim 2, 1 or 0)"
    else:
        need = "a surface group (dim 2); only fixed and displacement conditions may act on edges or points"
    return (f"'{name}' is {_DIM_NAMES.get(dim, f'a dim-{dim}')} group (dim {dim}); "
            f"a {bc_type} condition needs {need} {_suggest(name, candidates)}")


def check_groups(case: CaseSpec, groups: dict[str, int]) -> list[Problem]:
    """Materials cover every volume; boundaries and load volumes exist in the geometry.

    `groups`: name -> dim (3 volume, 2 surface, 1 edge, 0 point).
    """
    volumes = {n for n, d in groups.items() if d == g.VOLUME}
    surfaces = {n for n, d in groups.items() if d == g.SURFACE}
    problems: list[Problem] = []
    used_keys = {material_key_for_volume(v, case.materials) for v in volumes}
    for volume in case.materials:
        if volume not in volumes and volume not in used_keys:
            problems.append((f"materials.{volume}", f"'{volume}' is not a volume of the geometry {_suggest(volume, volumes)}"))
    for volume in sorted(v for v in volumes if material_key_for_volume(v, case.materials) is None):
        problems.append(("materials", f"no material for volume '{volume}'"))
    for i, bc in enumerate(case.boundary_conditions):
        problem = _boundary_problem(bc.type, bc.boundary, groups)
        if problem:
            problems.append((f"boundary_conditions[{i}].boundary", problem))
    for i, load in enumerate(case.loads):
        if load.volume is not None and load.volume not in volumes:
            problems.append((f"loads[{i}].volume", f"unknown volume '{load.volume}' {_suggest(load.volume, volumes)}"))
    if case.analysis == "harmonic":
        for face in (g.INPUT_FACE, g.OUTPUT_FACE):
            if face not in surfaces:
                problems.append(("geometry", f"a harmonic analysis needs a '{face}' surface group"))
    return problems


def check_analysis(case: CaseSpec) -> list[Problem]:
    """Requirements that depend on the analysis type."""
    problems: list[Problem] = []
    thermal_only = case.analysis in THERMAL_ANALYSES
    structural_only = case.analysis in ("static_structural",) + DYNAMIC_ANALYSES
    for i, bc in enumerate(case.boundary_conditions):
        if thermal_only and bc.type in STRUCTURAL_BC_TYPES:
            problems.append((f"boundary_conditions[{i}].type", f"'{bc.type}' is a structural condition; a {case.analysis} analysis has no displacements"))
        if structural_only and bc.type in THERMAL_BC_TYPES:
            problems.append((f"boundary_conditions[{i}].type", f"'{bc.type}' is a thermal condition; use a thermal or coupled_thermo_structural analysis"))
        if bc.type == "weld_interface_heating" and case.weld is None:
            problems.append((f"boundary_conditions[{i}]", "weld_interface_heating needs the [weld] section"))
    if case.analysis == "thermal_transient" and case.time is None:
        problems.append(("time", "a thermal_transient analysis needs the [time] section (end_s, dt_s)"))
    if case.analysis in DYNAMIC_ANALYSES and case.target_frequency_Hz is None:
        problems.append(("solver.target_frequency_Hz", f"a {case.analysis} analysis needs a target frequency"))
    names = [p.name for p in case.probes]
    for i, name in enumerate(names):
        if names.index(name) != i:
            problems.append((f"probes[{i}].name", f"probe name '{name}' is used twice"))
    return problems


def check_probes_inside(case: CaseSpec) -> list[Problem]:
    """Probe points must lie in the bounding box of a parametric geometry."""
    bbox = getattr(case.geometry, "bounding_box", None)
    if bbox is None:
        return []
    (x0, y0, z0), (x1, y1, z1) = bbox()
    tol = 1e-9
    problems = []
    for i, probe in enumerate(case.probes):
        x, y, z = probe.point
        if not (x0 - tol <= x <= x1 + tol and y0 - tol <= y <= y1 + tol and z0 - tol <= z <= z1 + tol):
            problems.append((f"probes[{i}].point", f"{probe.point} lies outside the geometry's bounding box"))
    return problems


def resolve_case_sizes(case: CaseSpec, materials: dict[str, Material]) -> ResolvedSizes:
    """Mesh sizes of a parametric geometry: the case's settings, defaults from physics.

    The default size resolves the slowest shear wave of the case's materials at the
    target frequency (the solver's, else the weld's).
    """
    settings = case.mesh
    frequency = case.target_frequency_Hz
    if settings.size_m is None and frequency is None:
        # static and thermal cases have no wavelength to resolve: a quarter of the
        # smallest diameter (or layer), as for dynamic cases
        settings = settings.model_copy(update={"size_m": case.geometry.min_feature_m() / 4})
    shear = min((m.shear_speed_m_s for m in materials.values()), default=None)
    return resolve_sizes(settings, case.geometry, shear, frequency, case.effective_element_order)


def check_cell_budget(case: CaseSpec, materials: dict[str, Material]) -> list[Problem]:
    """Refuse meshes whose estimated cell count exceeds mesh.max_cells."""
    if not hasattr(case.geometry, "build") or not materials:
        return []
    try:
        sizes = resolve_case_sizes(case, materials)
        check_cell_limit(case.geometry, sizes)
    except WeldSimError as exc:
        message = str(exc)
        field, sep, rest = message.partition(": ")
        if sep and field.startswith("mesh.") and " " not in field:
            return [(field, rest)]
        return [("mesh", message)]
    return []


def check_case(case: CaseSpec) -> list[Problem]:
    """Every cross-field problem of a case (empty when the case is sound)."""
    materials, problems = resolve_case_materials(case)
    try:
        groups = case.geometry.groups()
    except WeldSimError as exc:
        return problems + [("geometry", str(exc))]
    problems += check_groups(case, groups)
    problems += check_analysis(case)
    problems += check_probes_inside(case)
    if not problems:
        problems += check_cell_budget(case, materials)
    return problems
