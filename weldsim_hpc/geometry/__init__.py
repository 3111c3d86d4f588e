"""Parametric geometry (gmsh OpenCASCADE): horns and the tab-weld stack, sizing, meshing.

Importing this package needs pydantic and numpy only; gmsh is imported inside the
functions that build or mesh. gmsh 4.8 runs only in a process's main thread: `generate`
runs in the caller's process, `generate_in_subprocess` in a fresh one (for threads).

Public API::

    GeometryParams            discriminated union on `kind`: cylinder, block, stepped,
                              exponential, conical, catenoidal, tab_stack
    parse_geometry(data)      dict -> GeometryParams (pydantic ValidationError on bad input)
    MeshSettings, ResolvedSizes, resolve_sizes, default_size_m, shear_wave_speed,
    estimate_cells, check_cell_limit                       (geometry.sizing)
    generate, generate_in_subprocess, GeneratedFiles, mesh_built   (geometry.meshing)
    import_step_horn, write_step                           (geometry.step_io)

Example::

    from weldsim_hpc.geometry import CylinderHorn, MeshSettings, generate
    horn = CylinderHorn(length_m=0.127, diameter_m=0.04)
    files = generate(horn, MeshSettings(), "out", shear_speed_m_s=3094.0,
                     target_frequency_Hz=20e3)       # size = min(lambda_s/6, d/4) = 10 mm
    files.msh                                        # out/geometry.msh
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Union

from pydantic import Field, TypeAdapter

from .horns import (
    BlockHorn,
    CatenoidalHorn,
    ConicalHorn,
    CylinderHorn,
    ExponentialHorn,
    SteppedHorn,
)
from .model import BuiltGeometry
from .sizing import (
    MeshSettings,
    ResolvedSizes,
    check_cell_limit,
    default_size_m,
    estimate_cells,
    resolve_sizes,
    shear_wave_speed,
)
from .stack import TabStackParams
from .step_io import import_step_horn, write_step

if TYPE_CHECKING:
    from .meshing import GeneratedFiles, generate, generate_in_subprocess, mesh_built

HornParams = Union[CylinderHorn, BlockHorn, SteppedHorn, ExponentialHorn, ConicalHorn,
                   CatenoidalHorn]
GeometryParams = Annotated[Union[HornParams, TabStackParams], Field(discriminator="kind")]

_ADAPTER: TypeAdapter = TypeAdapter(GeometryParams)


def parse_geometry(data: dict[str, Any]) -> GeometryParams:
    """Validate a geometry description (with its `kind`) into its parameter model."""
    return _ADAPTER.validate_python(data)


__all__ = [
    "BlockHorn", "BuiltGeometry", "CatenoidalHorn", "ConicalHorn", "CylinderHorn",
    "ExponentialHorn", "GeneratedFiles", "GeometryParams", "HornParams", "MeshSettings",
    "ResolvedSizes", "SteppedHorn", "TabStackParams", "check_cell_limit", "default_size_m",
    "estimate_cells", "generate", "generate_in_subprocess", "import_step_horn", "mesh_built",
    "parse_geometry", "resolve_sizes", "shear_wave_speed", "write_step",
]


# `geometry.meshing` is loaded on first use, so that `python -m weldsim_hpc.geometry.meshing`
# runs it as __main__ without a second copy of the module
_MESHING = ("GeneratedFiles", "generate", "generate_in_subprocess", "mesh_built")


def __getattr__(name: str):
    if name in _MESHING:
        from . import meshing

        return getattr(meshing, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
