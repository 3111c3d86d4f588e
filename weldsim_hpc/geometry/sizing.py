"""Mesh size controls: settings, the frequency-based default size, and the cell estimate.

Default element size (metres), from the shear wavelength at 1.5x the target frequency,
lambda_s = c_s / (1.5 f) with c_s = sqrt(E / (2 (1 + nu) rho)):

* quadratic elements (element_order=2):  h = min(lambda_s / 6,  d_min / 4)
* linear elements (element_order=1):     h = min(lambda_s / 10, d_min / 4)

where d_min is the geometry's smallest diameter or thickness (`min_feature_m()`), so that
at least four elements span it. Linear tetrahedra are stiff in bending and converge
slowly, hence the finer rule for them. Near the refine surfaces (a horn's weld face, a
stack's weld interface) the size is `refine_size_m` (default h/2) up to `refine_distance_m`
(default h) from them, growing linearly back to h at twice that distance. Curved surfaces
get `curvature_segments` elements per full turn of their smallest radius of curvature.
The mesh is always built with linear (order-1) tetrahedra; a quadratic solver raises the
order itself, so "cells" below are tetrahedra either way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..errors import MeshError

# Cell-estimate calibration against gmsh 4.8 meshes (Delaunay 3D, sizes from fields,
# MeshSizeExtendFromBoundary = 0): 50 meshes of the six horn families, 900 to 240 000
# tetrahedra, h = 1.5 to 10 mm, 16 to 64 curvature segments: estimate / actual between
# 0.86 and 1.3 (the estimate runs high on fine meshes). Checked in tests/geometry.
TETS_PER_SIZE_CUBED = 5.5      # tetrahedra per h^3 of volume meshed at size h
TETS_PER_CURVED_AREA = 4.3     # extra tetrahedra per s^2 of curved surface meshed at size s
TETS_PER_INTERFACE_AREA = 7.0  # extra tetrahedra per h_r^2 of an internal layer interface

DEFAULT_MAX_CELLS = 1_500_000


class MeshSettings(BaseModel):
    """User mesh controls (the case file's `mesh` section); lengths in metres.

    size_m:             global element size; None -> the frequency rule above
    refine_size_m:      size on the refine surfaces; None -> size_m / 2
    refine_distance_m:  distance over which refine_size_m holds; None -> size_m
    curvature_segments: elements per 2*pi on curved edges and surfaces (32: a round
                        section loses ~0.3% of its area; 16 would lose ~1.3%)
    max_cells:          refuse meshes whose estimated tetrahedron count exceeds this
    optimize:           run gmsh's Netgen optimiser after the 3-D mesh
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    size_m: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    refine_size_m: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    refine_distance_m: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    curvature_segments: int = Field(default=32, ge=6, le=360)
    max_cells: int = Field(default=DEFAULT_MAX_CELLS, gt=0)
    optimize: bool = True

    @model_validator(mode="after")
    def _refine_not_coarser(self):
        if None not in (self.size_m, self.refine_size_m) and self.refine_size_m > self.size_m:
            raise ValueError(f"refine_size_m ({self.refine_size_m:g} m) must not exceed "
                             f"size_m ({self.size_m:g} m)")
        return self


@dataclass(frozen=True)
class ResolvedSizes:
    """Concrete sizes handed to the mesher (metres); `rule` says where size_m came from."""

    size_m: float
    refine_size_m: float
    refine_distance_m: float
    curvature_segments: int = 32
    max_cells: int = DEFAULT_MAX_CELLS
    optimize: bool = True
    rule: str = "given"


def shear_wave_speed(youngs_modulus_Pa: float, poisson_ratio: float,
                     density_kg_m3: float) -> float:
    """c_s = sqrt(G / rho), G = E / (2 (1 + nu)), in m/s."""
    return math.sqrt(youngs_modulus_Pa / (2 * (1 + poisson_ratio) * density_kg_m3))


def default_size_m(shear_speed_m_s: float, target_frequency_Hz: float,
                   min_feature_m: float, element_order: int = 2) -> float:
    """min(lambda_s(1.5 f) / n, d_min / 4), n = 6 (quadratic) or 10 (linear elements)."""
    if element_order not in (1, 2):
        raise MeshError(f"element_order must be 1 or 2, not {element_order!r}")
    if not (shear_speed_m_s > 0 and target_frequency_Hz > 0 and min_feature_m > 0):
        raise MeshError("shear speed, target frequency and minimum feature must be > 0")
    per_wavelength = 6 if element_order == 2 else 10
    wavelength = shear_speed_m_s / (1.5 * target_frequency_Hz)
    return min(wavelength / per_wavelength, min_feature_m / 4)


def resolve_sizes(settings: MeshSettings, geometry, shear_speed_m_s: float | None = None,
                  target_frequency_Hz: float | None = None,
                  element_order: int = 2) -> ResolvedSizes:
    """Fill the defaults of `settings` for `geometry` (any GeometryParams).

    Without mesh.size_m both the shear speed (m/s) and the target frequency (Hz) are needed.
    """
    if settings.size_m is not None:
        size, rule = settings.size_m, "mesh.size_m"
    elif shear_speed_m_s is None or target_frequency_Hz is None:
        raise MeshError("mesh.size_m: give a size, or a target frequency and material so "
                        "that the default size can follow the shear wavelength")
    else:
        size = default_size_m(shear_speed_m_s, target_frequency_Hz,
                              geometry.min_feature_m(), element_order)
        n = 6 if element_order == 2 else 10
        rule = (f"min(lambda_s/{n}, d_min/4) with lambda_s = c_s/(1.5 f), "
                f"c_s = {shear_speed_m_s:.6g} m/s, f = {target_frequency_Hz:.6g} Hz, "
                f"d_min = {geometry.min_feature_m():.6g} m")
    refine = settings.refine_size_m if settings.refine_size_m is not None else size / 2
    if refine > size:
        raise MeshError(f"mesh.refine_size_m ({refine:g} m) must not exceed the element "
                        f"size ({size:g} m)")
    distance = settings.refine_distance_m if settings.refine_distance_m is not None else size
    return ResolvedSizes(size, refine, distance, settings.curvature_segments,
                         settings.max_cells, settings.optimize, rule)


def estimate_cells(geometry, sizes: ResolvedSizes) -> int:
    """Closed-form tetrahedron count from the geometry's volume and surfaces.

    bulk:       k V / h^3
    refinement: the slab of area A_refine and depth d at h_r, the next slab at (h_r + h)/2
    curvature:  c A / s^2 for each curved patch whose size s = 2 pi rho / n is below h
    thin layers: c_i A / h_r^2 for each internal interface between thin layers (individual
                foils: each one is a sheet of flat tetrahedra however thin it is)
    Calibrated against gmsh 4.8 (k, c above); good to about a factor of 2.
    """
    h, hr, d = sizes.size_m, sizes.refine_size_m, sizes.refine_distance_m
    volume = geometry.volume_m3()
    density = TETS_PER_SIZE_CUBED / h**3
    cells = volume * density
    refine_area = _refine_area(geometry)
    fine = min(refine_area * d, volume)
    ramp = min(refine_area * d, volume - fine)
    cells += fine * TETS_PER_SIZE_CUBED * (1 / hr**3 - 1 / h**3)
    cells += ramp * TETS_PER_SIZE_CUBED * (8 / (hr + h) ** 3 - 1 / h**3)
    for area, radius in getattr(geometry, "surface_patches", list)():
        s = 2 * math.pi * radius / sizes.curvature_segments
        if s < h:
            cells += TETS_PER_CURVED_AREA * area * (1 / s**2 - 1 / h**2)
    for area in getattr(geometry, "internal_interface_areas_m2", list)():
        cells += TETS_PER_INTERFACE_AREA * area / hr**2
    return int(round(cells))


def check_cell_limit(geometry, sizes: ResolvedSizes,
                     max_cells: int | MeshSettings | None = None) -> int:
    """Return the cell estimate, or raise MeshError when it exceeds the limit.

    The limit is `max_cells` (an int, or MeshSettings whose max_cells is used), else
    sizes.max_cells.
    """
    limit = getattr(max_cells, "max_cells", max_cells)
    limit = sizes.max_cells if limit is None else limit
    estimate = estimate_cells(geometry, sizes)
    if estimate > limit:
        shown, cap = _count(estimate), _count(limit)
        if shown == cap:  # e.g. 1,500,400 vs 1,500,000: both read "1.5 million"
            shown, cap = f"{estimate:,}", f"{limit:,}"
        raise MeshError(f"estimated {shown} cells exceed the limit of {cap}: "
                        "raise mesh.size_m or mesh.max_cells")
    return estimate


def _refine_area(geometry) -> float:
    """Area of the refine surfaces (m²); without `refine_area_m2`, the bounding box's xy."""
    if hasattr(geometry, "refine_area_m2"):
        return geometry.refine_area_m2()
    (x0, y0, _), (x1, y1, _) = geometry.bounding_box()
    return (x1 - x0) * (y1 - y0)


def _count(n: int) -> str:
    """2300000 -> '2.3 million', 230000 -> '230,000'."""
    return f"{n / 1e6:.3g} million" if n >= 1_000_000 else f"{n:,}"
