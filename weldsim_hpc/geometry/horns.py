"""Parametric horns (sonotrodes): validated parameters and OpenCASCADE builders.

Conventions (shared by every family): SI units (metres); the horn axis is +z through
x = y = 0; `input_face` is the large end at z = 0 (where the booster drives), `output_face`
the weld face at z = L; every other horn surface is `lateral`; the volume is `horn`.

Each parameter model is a frozen pydantic model with a `kind` discriminator and offers
`groups()` (no gmsh), `build()` (OCC entities in the current gmsh model, synchronised; no
physical groups, no meshing), `volume_m3()` (closed form), `length_m`, `min_feature_m()`,
`bounding_box()`, `refine_area_m2()` (the weld face) and `surface_patches()` (curved areas
with their smallest radius of curvature, for the cell estimate of `geometry.sizing`).

Profiles r(z), z in [0, L], R1 = diameter_input_m/2, R2 = diameter_output_m/2:
conical r = R1 + (R2 - R1) z/L; exponential r = R1 exp(-beta z), beta = ln(R1/R2)/L;
catenoidal r = R2 cosh(gamma (L - z)), cosh(gamma L) = R1/R2.

Example::

    horn = ExponentialHorn(length_m=0.14, diameter_input_m=0.04, diameter_output_m=0.01)
    horn.volume_m3()        # 5.95e-05 (pure Python, no gmsh)
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Annotated, Literal, NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from .groups import HORN, INPUT_FACE, LATERAL, OUTPUT_FACE, SURFACE, VOLUME
from .model import BuiltGeometry
from .step_io import classify_horn_faces

Length = Annotated[float, Field(gt=0, allow_inf_nan=False, description="metres, > 0")]

# spline samples along the curved profiles (exponential, catenoidal): the interpolating
# B-spline through 41 points reproduces the closed-form volume to ~1e-8
_PROFILE_POINTS = 41
# lateral strips used to describe tapered surfaces to the cell estimate
_PATCH_STRIPS = 16
# centroid offset of a fillet's "spandrel" (square minus quarter disc) from its corner, / r
_SPANDREL_CENTROID = (10.0 - 3.0 * math.pi) / (3.0 * (4.0 - math.pi))


class SurfacePatch(NamedTuple):
    """A piece of boundary: its area (m²) and smallest radius of curvature (m; inf = flat)."""

    area_m2: float
    radius_m: float


class _Horn(BaseModel, ABC):
    """Shared behaviour of the horn families (not a case-file kind itself)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def groups(self) -> dict[str, int]:
        """Physical-group name -> dimension (3 volume, 2 surface); needs no gmsh."""
        return {HORN: VOLUME, INPUT_FACE: SURFACE, OUTPUT_FACE: SURFACE, LATERAL: SURFACE}

    def build(self) -> BuiltGeometry:
        """Create the horn in the current gmsh model (OCC kernel) and synchronise."""
        import gmsh

        tag = self._add_occ(gmsh.model.occ)
        gmsh.model.occ.synchronize()
        return classify_horn_faces([tag])

    def bounding_box(self) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
        """((xmin, ymin, zmin), (xmax, ymax, zmax)) in metres; round horns are centred on z."""
        r = self._input_radius()
        return ((-r, -r, 0.0), (r, r, self.length_m))

    def _input_radius(self) -> float:
        return self.diameter_input_m / 2

    def refine_area_m2(self) -> float:
        """Area of the weld face (output_face), around which the mesh is refined."""
        return math.pi * (self.diameter_output_m / 2) ** 2

    @abstractmethod
    def _add_occ(self, occ) -> int:
        """Add the solid to the OCC model; return its volume tag (each family defines it)."""


class CylinderHorn(_Horn):
    """Uniform round bar: diameter_m over length_m."""

    kind: Literal["cylinder"] = "cylinder"
    length_m: Length
    diameter_m: Length

    def _input_radius(self) -> float:
        return self.diameter_m / 2

    def volume_m3(self) -> float:
        return math.pi * (self.diameter_m / 2) ** 2 * self.length_m

    def min_feature_m(self) -> float:
        return self.diameter_m

    def refine_area_m2(self) -> float:
        return math.pi * (self.diameter_m / 2) ** 2

    def surface_patches(self) -> list[SurfacePatch]:
        r = self.diameter_m / 2
        return [SurfacePatch(2 * math.pi * r * self.length_m, r)]

    def _add_occ(self, occ) -> int:
        return occ.addCylinder(0, 0, 0, 0, 0, self.length_m, self.diameter_m / 2)


class BlockHorn(_Horn):
    """Rectangular block horn: width_m along x, depth_m along y, length_m along z.

    The output face equals the input face (centred on the axis)."""

    kind: Literal["block"] = "block"
    length_m: Length
    width_m: Length
    depth_m: Length

    def bounding_box(self):
        w, d = self.width_m / 2, self.depth_m / 2
        return ((-w, -d, 0.0), (w, d, self.length_m))

    def volume_m3(self) -> float:
        return self.length_m * self.width_m * self.depth_m

    def min_feature_m(self) -> float:
        return min(self.width_m, self.depth_m)

    def refine_area_m2(self) -> float:
        return self.width_m * self.depth_m

    def surface_patches(self) -> list[SurfacePatch]:
        return []  # flat faces only: no curvature refinement

    def _add_occ(self, occ) -> int:
        w, d = self.width_m, self.depth_m
        return occ.addBox(-w / 2, -d / 2, 0, w, d, self.length_m)


class SteppedHorn(_Horn):
    """Two coaxial cylinders: diameter_input_m over length_input_m (z from 0), then
    diameter_output_m over length_output_m, with a concave fillet of fillet_radius_m in
    the corner at the step (z = length_input_m) — a sharp corner never converges in stress.
    """

    kind: Literal["stepped"] = "stepped"
    length_input_m: Length
    length_output_m: Length
    diameter_input_m: Length
    diameter_output_m: Length
    fillet_radius_m: Length

    @model_validator(mode="after")
    def _check(self):
        _check_taper(self)
        step = (self.diameter_input_m - self.diameter_output_m) / 2
        if self.fillet_radius_m >= step:
            raise ValueError(
                f"fillet_radius_m ({self.fillet_radius_m:g} m) must be smaller than the step "
                f"height (diameter_input_m - diameter_output_m)/2 = {step:g} m")
        if self.fillet_radius_m >= self.length_output_m:
            raise ValueError(
                f"fillet_radius_m ({self.fillet_radius_m:g} m) must be smaller than "
                f"length_output_m ({self.length_output_m:g} m)")
        return self

    @property
    def length_m(self) -> float:
        return self.length_input_m + self.length_output_m

    def volume_m3(self) -> float:
        r1, r2, rf = self.diameter_input_m / 2, self.diameter_output_m / 2, self.fillet_radius_m
        spandrel = rf * rf * (1 - math.pi / 4)            # Pappus: area x centroid path
        return (math.pi * (r1 * r1 * self.length_input_m + r2 * r2 * self.length_output_m)
                + 2 * math.pi * (r2 + _SPANDREL_CENTROID * rf) * spandrel)

    def min_feature_m(self) -> float:
        return self.diameter_output_m

    def surface_patches(self) -> list[SurfacePatch]:
        r1, r2, rf = self.diameter_input_m / 2, self.diameter_output_m / 2, self.fillet_radius_m
        fillet = 2 * math.pi * (r2 + rf * (1 - 2 / math.pi)) * (math.pi * rf / 2)
        return [SurfacePatch(2 * math.pi * r1 * self.length_input_m, r1),
                SurfacePatch(fillet, rf),
                SurfacePatch(2 * math.pi * r2 * (self.length_output_m - rf), r2)]

    def _add_occ(self, occ) -> int:
        r1, r2, rf = self.diameter_input_m / 2, self.diameter_output_m / 2, self.fillet_radius_m
        l1, length = self.length_input_m, self.length_m
        p = [occ.addPoint(*xz) for xz in
             [(0, 0, 0), (r1, 0, 0), (r1, 0, l1), (r2 + rf, 0, l1), (r2, 0, l1 + rf),
              (r2, 0, length), (0, 0, length)]]
        centre = occ.addPoint(r2 + rf, 0, l1 + rf)
        curves = [occ.addLine(p[0], p[1]), occ.addLine(p[1], p[2]), occ.addLine(p[2], p[3]),
                  occ.addCircleArc(p[3], centre, p[4]), occ.addLine(p[4], p[5]),
                  occ.addLine(p[5], p[6]), occ.addLine(p[6], p[0])]
        occ.remove([(0, centre)])
        return _revolve(occ, curves)


class _TaperedHorn(_Horn):
    """A round horn whose radius falls from diameter_input_m (z = 0) to diameter_output_m."""

    length_m: Length
    diameter_input_m: Length
    diameter_output_m: Length

    @model_validator(mode="after")
    def _check(self):
        _check_taper(self)
        return self

    def min_feature_m(self) -> float:
        return self.diameter_output_m

    @abstractmethod
    def radius_m(self, z: np.ndarray) -> np.ndarray:
        """Profile radius r(z) in metres, z in [0, length_m] (each family defines it)."""

    def surface_patches(self) -> list[SurfacePatch]:
        z = np.linspace(0.0, self.length_m, _PATCH_STRIPS + 1)
        r = self.radius_m(z)
        slant = np.hypot(np.diff(z), np.diff(r))
        rm = (r[1:] + r[:-1]) / 2
        return [SurfacePatch(float(2 * math.pi * a * s), float(a)) for a, s in zip(rm, slant)]

    def _add_occ(self, occ) -> int:
        z = np.linspace(0.0, self.length_m, _PROFILE_POINTS)
        r = self.radius_m(z)
        r[0], r[-1] = self.diameter_input_m / 2, self.diameter_output_m / 2
        axis0, axis1 = occ.addPoint(0, 0, 0), occ.addPoint(0, 0, self.length_m)
        pts = [occ.addPoint(float(ri), 0, float(zi)) for zi, ri in zip(z, r)]
        spline = occ.addSpline(pts)
        occ.remove([(0, t) for t in pts[1:-1]])
        curves = [occ.addLine(axis0, pts[0]), spline, occ.addLine(pts[-1], axis1),
                  occ.addLine(axis1, axis0)]
        return _revolve(occ, curves)


class ConicalHorn(_TaperedHorn):
    """Linear taper (a truncated cone)."""

    kind: Literal["conical"] = "conical"

    def radius_m(self, z):
        r1, r2 = self.diameter_input_m / 2, self.diameter_output_m / 2
        return r1 + (r2 - r1) * np.asarray(z, dtype=float) / self.length_m

    def volume_m3(self) -> float:
        r1, r2 = self.diameter_input_m / 2, self.diameter_output_m / 2
        return math.pi * self.length_m * (r1 * r1 + r1 * r2 + r2 * r2) / 3

    def _add_occ(self, occ) -> int:
        return occ.addCone(0, 0, 0, 0, 0, self.length_m,
                           self.diameter_input_m / 2, self.diameter_output_m / 2)


class ExponentialHorn(_TaperedHorn):
    """Exponential taper r = R1 exp(-beta z), beta = ln(R1/R2)/L (gain N = R1/R2)."""

    kind: Literal["exponential"] = "exponential"

    def _beta(self) -> float:
        return math.log(self.diameter_input_m / self.diameter_output_m) / self.length_m

    def radius_m(self, z):
        return self.diameter_input_m / 2 * np.exp(-self._beta() * np.asarray(z, dtype=float))

    def volume_m3(self) -> float:
        r1, r2 = self.diameter_input_m / 2, self.diameter_output_m / 2
        return math.pi * (r1 * r1 - r2 * r2) / (2 * self._beta())


class CatenoidalHorn(_TaperedHorn):
    """Catenoidal taper r = R2 cosh(gamma (L - z)), cosh(gamma L) = R1/R2."""

    kind: Literal["catenoidal"] = "catenoidal"

    def _gamma(self) -> float:
        return math.acosh(self.diameter_input_m / self.diameter_output_m) / self.length_m

    def radius_m(self, z):
        g = self._gamma()
        return self.diameter_output_m / 2 * np.cosh(g * (self.length_m - np.asarray(z, float)))

    def volume_m3(self) -> float:
        g, length, r2 = self._gamma(), self.length_m, self.diameter_output_m / 2
        return math.pi * r2 * r2 * (length / 2 + math.sinh(2 * g * length) / (4 * g))


def _check_taper(horn) -> None:
    if horn.diameter_output_m >= horn.diameter_input_m:
        raise ValueError(
            f"diameter_output_m ({horn.diameter_output_m:g} m) must be smaller than "
            f"diameter_input_m ({horn.diameter_input_m:g} m): the weld face is the small end")


def _revolve(occ, curves: list[int]) -> int:
    """Revolve the closed meridional profile (in the xz half-plane x >= 0) a full turn
    about z; return the volume tag. The profile face itself is removed afterwards (a full
    turn leaves it behind as a free surface); its edges shared with the solid stay."""
    face = occ.addPlaneSurface([occ.addCurveLoop(curves)])
    out = occ.revolve([(2, face)], 0, 0, 0, 0, 0, 1, 2 * math.pi)
    volumes = [t for d, t in out if d == 3]
    occ.remove([(2, face)], recursive=True)
    return volumes[0]


HORN_KINDS = (CylinderHorn, BlockHorn, SteppedHorn, ConicalHorn, ExponentialHorn, CatenoidalHorn)
