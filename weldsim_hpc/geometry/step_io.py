"""STEP files in metres, and grouping a horn's faces by position.

The unit trap: gmsh 4.8 writes STEP through OpenCASCADE, which declares millimetres
(`SI_UNIT(.MILLI.,.METRE.)`) and writes the model's numbers as they are, so a horn built
in metres comes out 1000x too small in CAD. Setting `Geometry.OCCTargetUnit = "M"` before
writing tells OpenCASCADE the model is in metres: it converts the numbers to the declared
millimetres exactly (a 40 mm diameter is written as 40.). The other fix one might try,
`occ.dilate` by 1000 before writing, turns cylinders and cones into approximating B-spline
surfaces (a 0.9% volume error on a cylinder, measured with gmsh 4.8), so it is not used.
Reading back with `Geometry.OCCTargetUnit = "M"` gives metres again.

OpenCASCADE's unit setting is process-global and sticky, so every function here sets it
explicitly before it reads or writes. OpenCASCADE also prints transfer statistics straight
to the C stdout; they are silenced around each transfer.

Horn axis convention for imported files: the horn lies along +z; planar faces normal to z
at the lowest z form `input_face`, at the highest z `output_face`; all other faces are
`lateral`; every solid is `horn`.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from pathlib import Path

from ..errors import GeometryError
from .groups import HORN, INPUT_FACE, LATERAL, OUTPUT_FACE
from .model import BuiltGeometry

# a face is "planar normal to z" when its z extent is below this fraction of the model size
_FLAT_REL_TOL = 1e-5
_FLAT_ABS_TOL = 1e-6  # m; OCC pads bounding boxes by its 1e-7 confusion tolerance


@contextlib.contextmanager
def quiet_c_stdout():
    """Send the C-level stdout (file descriptor 1) to /dev/null inside the block."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no usable fd 1 (embedded interpreters): nothing to silence
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 1)
        yield
    finally:
        sys.stdout.flush()
        _flush_c_stdio()  # OCC's std::cout output sits in the C stdio buffer until now
        os.dup2(saved, 1)
        os.close(saved)


def _flush_c_stdio() -> None:
    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):  # no C library handle: nothing buffered we can reach
        pass


def write_step(path: str | os.PathLike) -> Path:
    """Write every OCC entity of the current gmsh model to a STEP file in correct units.

    The model is in metres; the file declares millimetres and holds millimetre numbers.
    """
    import gmsh

    path = Path(path)
    gmsh.option.setString("Geometry.OCCTargetUnit", "M")
    with quiet_c_stdout():
        gmsh.write(str(path))
    return path


def import_step_horn(path: str | os.PathLike) -> BuiltGeometry:
    """Import a STEP horn into the current gmsh model, in metres, grouped automatically.

    The file's solids become `horn`; planar end faces normal to +z become `input_face`
    (lowest z) and `output_face` (highest z, also the refine surfaces); the rest `lateral`.
    Raises GeometryError when the file is unreadable, holds no solid, or lacks planar end
    faces. The model is synchronised on return.
    """
    import gmsh

    path = Path(path)
    if not path.is_file():
        raise GeometryError(f"STEP file {path} does not exist")
    gmsh.option.setString("Geometry.OCCTargetUnit", "M")
    try:
        with quiet_c_stdout():
            entities = gmsh.model.occ.importShapes(str(path), highestDimOnly=True,
                                                   format="step")
    except Exception as exc:  # gmsh raises a bare Exception with its last error
        raise GeometryError(f"cannot read {path.name} as a STEP file: {exc}") from exc
    gmsh.model.occ.synchronize()
    volumes = [t for d, t in entities if d == 3]
    if not volumes:
        raise GeometryError(
            f"{path.name} holds no solid (found {len(entities)} lower-dimensional shapes): "
            "export the horn as a closed STEP solid")
    if len(volumes) > 1:  # make several solids conforming (shared faces become interior)
        out, _ = gmsh.model.occ.fragment([(3, v) for v in volumes[:1]],
                                         [(3, v) for v in volumes[1:]])
        gmsh.model.occ.synchronize()
        volumes = [t for d, t in out if d == 3]
    return classify_horn_faces(volumes, source=path.name)


def classify_horn_faces(volumes: list[int], source: str = "the horn") -> BuiltGeometry:
    """Group the boundary faces of the given OCC volumes (synchronised model) by position.

    Only the outer boundary counts (faces shared by two volumes are interior).
    Faces lying in a plane z = const at the lowest z of the volumes -> input_face, at the
    highest z -> output_face; every other face -> lateral.
    """
    import gmsh

    boxes = [gmsh.model.getBoundingBox(3, v) for v in volumes]
    zmin, zmax = min(b[2] for b in boxes), max(b[5] for b in boxes)
    extent = max(max(b[3] for b in boxes) - min(b[0] for b in boxes),
                 max(b[4] for b in boxes) - min(b[1] for b in boxes), zmax - zmin)
    tol = max(_FLAT_ABS_TOL, _FLAT_REL_TOL * extent)
    faces = sorted({t for _, t in gmsh.model.getBoundary([(3, v) for v in volumes],
                                                         combined=True, oriented=False)})
    groups: dict[str, list[int]] = {INPUT_FACE: [], OUTPUT_FACE: [], LATERAL: []}
    for face in faces:
        _, _, z0, _, _, z1 = gmsh.model.getBoundingBox(2, face)
        flat = (z1 - z0) < tol
        if flat and abs(z0 - zmin) < tol:
            groups[INPUT_FACE].append(face)
        elif flat and abs(z1 - zmax) < tol:
            groups[OUTPUT_FACE].append(face)
        else:
            groups[LATERAL].append(face)
    for name in (INPUT_FACE, OUTPUT_FACE):
        if not groups[name]:
            end = "lowest" if name == INPUT_FACE else "highest"
            raise GeometryError(
                f"{source} has no planar end face normal to the z axis at its {end} z "
                f"(needed for {name}): the horn must lie along +z with flat end faces")
    return BuiltGeometry(volumes={HORN: sorted(volumes)}, surfaces=groups,
                         refine_surfaces=list(groups[OUTPUT_FACE]))
