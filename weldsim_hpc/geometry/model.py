"""What every geometry builder hands to the mesher: OCC entity tags grouped by name.

Builders only build (they create OCC entities in the current gmsh model and synchronise);
physical groups, size fields, meshing and file output are done by `geometry.meshing`.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class BuiltGeometry:
    """OCC tags of a built model, by physical-group name.

    volumes:  group name -> OCC volume tags (dim 3)
    surfaces: group name -> OCC surface tags (dim 2); a surface belongs to one group only
    refine_surfaces: surfaces near which the mesh is refined (weld face, weld interface)
    """

    volumes: dict[str, list[int]]
    surfaces: dict[str, list[int]]
    refine_surfaces: list[int] = field(default_factory=list)
