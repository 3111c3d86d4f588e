"""The battery-tab weld stack: anvil, tab, foil stack and horn tip as one conforming model.

Built bottom-up along +z and centred on the z axis (SI metres): the anvil block stands on
z = 0, the tab plate lies on the anvil, the foil stack on the tab and the horn-tip block on
the foils. The weld area is the horn-tip footprint. Footprints are nested: the horn tip
fits on the foil stack, the foil stack on the tab, the tab on the anvil (equal is allowed).

The foil stack is one homogenised layer of ``n_foils * foil_thickness_m`` by default;
``individual_foils=True`` builds ``n_foils`` separate volumes ``foil_01``, ``foil_02``, …
with shared interfaces between them (group ``foil_interfaces``). Foils of 25 µm make very
large meshes: the cell-count guard in `geometry.sizing` decides whether that is allowed,
and `min_feature_m` reports the true thinnest layer so that its estimate is honest.

All parts are fused with ``occ.fragment``, so touching faces become one shared surface and
the mesh is conforming (one node set on every interface). Groups:

=================  ===  ===========================================================
name               dim  what
=================  ===  ===========================================================
anvil, tab         3    the anvil block, the tab plate
foil_stack         3    the homogenised foil layer (or foil_01 … foil_NN)
horn_tip           3    the horn-tip block
weld_interface     2    tab <-> (lowest) foil
horn_contact       2    horn tip <-> (top) foil — the weld area
anvil_contact      2    anvil <-> tab
foil_interfaces    2    foil_i <-> foil_i+1 (individual foils, n_foils >= 2 only)
anvil_base         2    bottom face of the anvil (z = 0)
horn_top           2    top face of the horn tip (where it is driven)
outer              2    every other boundary surface
=================  ===  ===========================================================

Example::

    import gmsh
    from weldsim_hpc.geometry.stack import TabStackParams
    p = TabStackParams(n_foils=40, horn_tip_width_m=6e-3, horn_tip_depth_m=4e-3)
    p.groups()["weld_interface"]   # 2
    gmsh.initialize()
    try:
        built = p.build()          # BuiltGeometry; meshing.generate adds the groups
    finally:
        gmsh.finalize()
"""

from __future__ import annotations

from typing import Annotated, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..errors import GeometryError
from . import groups as g
from .model import BuiltGeometry

#: interfaces between neighbouring individual foils (only with individual_foils, n >= 2)
FOIL_INTERFACES = "foil_interfaces"

#: two footprints either coincide or differ by at least this much (a thinner sliver would
#: sit near the OCC tolerance and force absurdly small elements)
MIN_MARGIN_M = 1e-6

MAX_FOILS = 200

# a length in metres: at least 1 µm (the OCC tolerance is 0.1 µm), at most 1 m (a value
# above 1 is almost surely millimetres typed as metres)
Length = Annotated[float, Field(ge=1e-6, le=1.0, allow_inf_nan=False)]


class Layer(NamedTuple):
    """One box of the stack: a part name, its footprint (x width, y depth), its bottom z
    and its thickness along z (all m)."""

    name: str
    width_m: float
    depth_m: float
    z0_m: float
    thickness_m: float

    @property
    def z1_m(self) -> float:
        return self.z0_m + self.thickness_m

    @property
    def volume_m3(self) -> float:
        return self.width_m * self.depth_m * self.thickness_m


class TabStackParams(BaseModel):
    """Parameters of the battery-tab weld stack (SI metres; x = width, y = depth, z = up).

    Defaults: a 16 × 10 × 4 mm anvil, a 12 × 8 mm tab of 0.2 mm, 40 foils of 25 µm
    (1 mm homogenised) on 10 × 6 mm, and a 6 × 4 mm horn tip, 3 mm high.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["tab_stack"] = "tab_stack"
    anvil_width_m: Length = 16e-3
    anvil_depth_m: Length = 10e-3
    anvil_height_m: Length = 4e-3
    tab_width_m: Length = 12e-3
    tab_depth_m: Length = 8e-3
    tab_thickness_m: Length = 0.2e-3
    foil_width_m: Length = 10e-3
    foil_depth_m: Length = 6e-3
    foil_thickness_m: Length = 25e-6
    n_foils: int = Field(40, ge=1, le=MAX_FOILS, strict=True, description="number of foils")
    individual_foils: bool = Field(
        False, description="N separate foil volumes instead of one homogenised layer"
    )
    horn_tip_width_m: Length = 6e-3
    horn_tip_depth_m: Length = 4e-3
    horn_tip_height_m: Length = 3e-3

    @model_validator(mode="after")
    def _footprints_nested(self) -> "TabStackParams":
        pairs = [  # (inner part, outer part, what sits on what)
            ("horn_tip", "foil", "the horn tip must fit on the foil stack"),
            ("foil", "tab", "the foil stack must fit on the tab"),
            ("tab", "anvil", "the tab must fit on the anvil"),
        ]
        problems = []
        for inner, outer, why in pairs:
            for axis in ("width", "depth"):
                a = f"{inner}_{axis}_m"
                b = f"{outer}_{axis}_m"
                va, vb = getattr(self, a), getattr(self, b)
                if va > vb:
                    problems.append(
                        f"{a} ({va * 1e3:g} mm) is larger than {b} ({vb * 1e3:g} mm): {why}; "
                        f"reduce {a} or enlarge {b}"
                    )
                elif 0.0 < vb - va < MIN_MARGIN_M:
                    problems.append(
                        f"{a} ({va * 1e3:g} mm) and {b} ({vb * 1e3:g} mm) differ by less than "
                        f"{MIN_MARGIN_M * 1e6:g} µm: make them equal or differ by more"
                    )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    # ---- description without gmsh -------------------------------------------------
    def foil_names(self) -> list[str]:
        """Names of the foil volumes: ['foil_stack'] or ['foil_01', …]."""
        if self.individual_foils:
            return [g.foil_name(i) for i in range(1, self.n_foils + 1)]
        return [g.FOIL_STACK]

    @property
    def foil_stack_thickness_m(self) -> float:
        return self.n_foils * self.foil_thickness_m

    def layers(self) -> list[Layer]:
        """The boxes of the stack, bottom-up, each centred on the z axis."""
        out = []
        z = 0.0

        def add(name: str, w: float, d: float, t: float) -> None:
            nonlocal z
            out.append(Layer(name, w, d, z, t))
            z += t

        add(g.ANVIL, self.anvil_width_m, self.anvil_depth_m, self.anvil_height_m)
        add(g.TAB, self.tab_width_m, self.tab_depth_m, self.tab_thickness_m)
        if self.individual_foils:
            for name in self.foil_names():
                add(name, self.foil_width_m, self.foil_depth_m, self.foil_thickness_m)
        else:
            add(g.FOIL_STACK, self.foil_width_m, self.foil_depth_m, self.foil_stack_thickness_m)
        add(g.HORN_TIP, self.horn_tip_width_m, self.horn_tip_depth_m, self.horn_tip_height_m)
        return out

    def groups(self) -> dict[str, int]:
        """Physical-group name -> dimension (3 volume, 2 surface); every group is non-empty."""
        out = {layer.name: g.VOLUME for layer in self.layers()}
        for name in (g.WELD_INTERFACE, g.HORN_CONTACT, g.ANVIL_CONTACT):
            out[name] = g.SURFACE
        if self.individual_foils and self.n_foils >= 2:
            out[FOIL_INTERFACES] = g.SURFACE
        for name in (g.ANVIL_BASE, g.HORN_TOP, g.OUTER):
            out[name] = g.SURFACE
        return out

    def part_volumes_m3(self) -> dict[str, float]:
        """Volume of each part (volume group), bottom-up, in m³."""
        return {layer.name: layer.volume_m3 for layer in self.layers()}

    def volume_m3(self) -> float:
        """Total volume of the stack, m³."""
        return sum(self.part_volumes_m3().values())

    @property
    def length_m(self) -> float:
        """Total height of the stack along z, m."""
        return self.layers()[-1].z1_m

    def min_feature_m(self) -> float:
        """The smallest geometric feature, m: the thinnest layer (a single foil of 25 µm
        when individual), or a narrower non-zero footprint margin if there is one."""
        sizes = [layer.thickness_m for layer in self.layers()]
        inner_outer = [
            (self.horn_tip_width_m, self.foil_width_m), (self.horn_tip_depth_m, self.foil_depth_m),
            (self.foil_width_m, self.tab_width_m), (self.foil_depth_m, self.tab_depth_m),
            (self.tab_width_m, self.anvil_width_m), (self.tab_depth_m, self.anvil_depth_m),
        ]
        sizes += [(b - a) / 2 for a, b in inner_outer if b > a]
        return min(sizes)

    def refine_area_m2(self) -> float:
        """Area of the refine surfaces (weld_interface + horn_contact), m²."""
        return self.foil_width_m * self.foil_depth_m + self.horn_tip_width_m * self.horn_tip_depth_m

    def internal_interface_areas_m2(self) -> list[float]:
        """Areas of the foil-to-foil interfaces (m²), for the cell estimate: none when homogenised."""
        if not self.individual_foils:
            return []
        return [self.foil_width_m * self.foil_depth_m] * (self.n_foils - 1)

    def surface_patches(self) -> list:
        """Curved boundary patches for the cell estimate: none, the stack is all boxes."""
        return []

    def bounding_box(self) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
        """((xmin, ymin, zmin), (xmax, ymax, zmax)) of the whole stack, m."""
        layers = self.layers()
        w = max(layer.width_m for layer in layers) / 2
        d = max(layer.depth_m for layer in layers) / 2
        return (-w, -d, 0.0), (w, d, layers[-1].z1_m)

    # ---- gmsh ----------------------------------------------------------------------
    def build(self) -> BuiltGeometry:
        """Create the stack in the current gmsh model (OCC) and return its tags by group.

        gmsh must be initialised (main thread). The boxes are fused with ``occ.fragment``
        and the model is synchronised; no physical groups are added here.
        """
        import gmsh

        occ = gmsh.model.occ
        layers = self.layers()
        boxes = [
            occ.addBox(-L.width_m / 2, -L.depth_m / 2, L.z0_m, L.width_m, L.depth_m, L.thickness_m)
            for L in layers
        ]
        _, children = occ.fragment([(3, boxes[0])], [(3, b) for b in boxes[1:]])
        occ.synchronize()

        volume_of: dict[str, int] = {}
        for layer, kids in zip(layers, children):
            vols = [tag for dim, tag in kids if dim == 3]
            if len(vols) != 1:
                raise GeometryError(
                    f"tab stack: part {layer.name!r} became {len(vols)} volumes after fusing "
                    "(expected 1); check that the footprints are nested and centred"
                )
            volume_of[layer.name] = vols[0]

        owners: dict[int, list[str]] = {}
        for name, vol in volume_of.items():
            for _, s in gmsh.model.getBoundary([(3, vol)], combined=False, oriented=False):
                owners.setdefault(abs(s), []).append(name)

        foils = self.foil_names()
        foil_index = {name: i for i, name in enumerate(foils)}
        top_z = layers[-1].z1_m
        tol = 1e-3 * self.min_feature_m()
        surfaces: dict[str, list[int]] = {
            name: [] for name, dim in self.groups().items() if dim == g.SURFACE
        }
        for s, names in sorted(owners.items()):
            parts = frozenset(names)
            if len(names) == 1:
                z = occ.getCenterOfMass(2, s)[2]
                if names[0] == g.ANVIL and abs(z) < tol:
                    group = g.ANVIL_BASE
                elif names[0] == g.HORN_TIP and abs(z - top_z) < tol:
                    group = g.HORN_TOP
                else:
                    group = g.OUTER
            elif parts == {g.ANVIL, g.TAB}:
                group = g.ANVIL_CONTACT
            elif parts == {g.TAB, foils[0]}:
                group = g.WELD_INTERFACE
            elif parts == {foils[-1], g.HORN_TIP}:
                group = g.HORN_CONTACT
            elif (
                len(parts) == 2
                and parts <= foil_index.keys()
                and abs(foil_index[names[0]] - foil_index[names[1]]) == 1
            ):
                group = FOIL_INTERFACES
            else:
                raise GeometryError(
                    f"tab stack: surface {s} is shared by {sorted(names)}, which is not an "
                    "interface of the stack"
                )
            surfaces[group].append(s)

        empty = [name for name, tags in surfaces.items() if not tags]
        if empty:
            raise GeometryError(f"tab stack: surface groups {empty} came out empty after fusing")
        return BuiltGeometry(
            volumes={name: [tag] for name, tag in volume_of.items()},
            surfaces=surfaces,
            refine_surfaces=surfaces[g.WELD_INTERFACE] + surfaces[g.HORN_CONTACT],
        )
