"""A case geometry given as a mesh file: a .msh with physical names, an XDMF mesh with
groups.json beside it (what `weldsim mesh` writes), or a STEP horn.

The path is resolved against the directory of the case file (validation context
`base_dir`), so a case and its mesh travel together. Group names are read without gmsh:
from the .msh physical names (meshio), or the automatic STEP-horn groups.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

from . import groups as g

MESH_SUFFIXES = (".msh", ".xdmf")
GROUPS_JSON = "groups.json"
STEP_SUFFIXES = (".step", ".stp")


class MeshFileGeometry(BaseModel):
    """Geometry from a file: a gmsh .msh with named physical groups, or a STEP horn."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["mesh_file"]
    path: str

    @field_validator("path")
    @classmethod
    def _resolve(cls, value: str, info: ValidationInfo) -> str:
        path = Path(value)
        suffix = path.suffix.lower()
        if suffix not in MESH_SUFFIXES + STEP_SUFFIXES:
            raise ValueError(
                f"'{path.name}' is not a mesh or STEP file (expected one of "
                f"{', '.join(MESH_SUFFIXES + STEP_SUFFIXES)})"
            )
        base = (info.context or {}).get("base_dir")
        if not path.is_absolute() and base is not None:
            path = Path(base) / path
        if not path.is_file():
            raise ValueError(f"file not found: {path}")
        if suffix == ".xdmf" and not (path.parent / GROUPS_JSON).is_file():
            raise ValueError(f"an XDMF mesh needs {GROUPS_JSON} (group name -> dim, tag) beside it in {path.parent}")
        return str(path.resolve())

    @property
    def is_step(self) -> bool:
        return Path(self.path).suffix.lower() in STEP_SUFFIXES

    def groups(self) -> dict[str, int]:
        """Group name -> dimension, read from the file without gmsh."""
        if self.is_step:
            return {g.HORN: g.VOLUME, g.INPUT_FACE: g.SURFACE, g.OUTPUT_FACE: g.SURFACE, g.LATERAL: g.SURFACE}
        if Path(self.path).suffix.lower() == ".xdmf":
            from ..mesh import read_groups_json

            return {name: dim for name, (dim, _) in read_groups_json(Path(self.path).parent).items()}
        from ..mesh import read_msh_group_names

        return read_msh_group_names(Path(self.path))

    def companion_files(self) -> list[Path]:
        """The files that travel with the mesh file (an XDMF's HDF5 data and groups.json)."""
        path = Path(self.path)
        if path.suffix.lower() != ".xdmf":
            return []
        import re

        h5_names = sorted(set(re.findall(r"([\w.-]+\.h5):", path.read_text(errors="replace"))))
        return [path.parent / n for n in h5_names] + [path.parent / GROUPS_JSON]
