"""Checks of uploaded geometry files, done before anything is stored.

Why here and not in the job: a refused upload must leave nothing behind (no row, no
file), so every check that can refuse it cheaply runs in the request, on a temporary
file outside the storage root:

* the name: a plain file name (a path such as ``../../etc/passwd.step`` is refused, not
  cleaned up), a supported suffix (.step/.stp, .msh); archives are refused outright.
  Only a sanitised copy of the name is kept, as a label — files get generated names.
* the size: read in chunks, refused as soon as it passes the limit (TooLarge).
* the content: sniffed, whatever the name says: a STEP file starts with
  ``ISO-10303-21;``, a gmsh mesh with ``$MeshFormat`` (ASCII or binary); archives by their
  magic bytes; a .msh must name its physical groups.

Example::

    label, suffix = check_filename("Horn v2.STEP")      # ('Horn v2.STEP', '.step')
    tmp = receive(stream, max_bytes=100 << 20)
    kind = sniff(tmp, suffix)                           # 'step'
"""

from __future__ import annotations

import os
import re
import tempfile
import unicodedata
from pathlib import Path
from typing import BinaryIO

from .errors import Invalid

STEP_SUFFIXES = (".step", ".stp")
MSH_SUFFIXES = (".msh",)
ARCHIVE_SUFFIXES = (".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar", ".zst")
STEP_MAGIC = b"ISO-10303-21;"
MSH_MAGIC = b"$MeshFormat"
ARCHIVE_MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"7z\xbc\xaf\x27\x1c",
                 b"Rar!\x1a\x07", b"\x28\xb5\x2f\xfd")
MAX_NAME_LENGTH = 255
CHUNK = 1 << 20
FIELD = "file"
_UNSAFE = re.compile(r"[^A-Za-z0-9 ._()+-]+")
_KINDS = "a STEP horn (.step or .stp) or a gmsh mesh with physical names (.msh)"


class TooLarge(Invalid):
    """The upload passes the size limit (the API answers 413)."""

    code = "payload_too_large"


def check_filename(filename: object) -> tuple[str, str]:
    """(sanitised label, lower-case suffix) of an upload's name; Invalid if it is a path,
    has no supported suffix, or names an archive."""
    if not isinstance(filename, str) or not filename.strip():
        raise Invalid("give the file a name ending in .step, .stp or .msh", field=FIELD)
    name = filename.strip()
    if len(name) > MAX_NAME_LENGTH:
        raise Invalid(f"the file name is longer than {MAX_NAME_LENGTH} characters", field=FIELD)
    if "/" in name or "\\" in name or name.startswith(".") or "\x00" in name:
        raise Invalid(f"the file name must be a plain name, not a path or hidden file (got {name!r})", field=FIELD)
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in name):
        raise Invalid("the file name must not contain control characters", field=FIELD)
    suffix = Path(name).suffix.lower()
    if suffix in ARCHIVE_SUFFIXES:
        raise Invalid(f"archives are not accepted: upload {_KINDS} itself", field=FIELD)
    if suffix not in STEP_SUFFIXES + MSH_SUFFIXES:
        raise Invalid(f"unsupported file type {suffix or '(none)'!r}: upload {_KINDS}", field=FIELD)
    label = _UNSAFE.sub("_", unicodedata.normalize("NFKC", name)).strip(" ._") or "upload"
    return label[:200], suffix


def receive(stream: BinaryIO, max_bytes: int) -> Path:
    """Copy `stream` to a temporary file (outside the storage root); TooLarge past `max_bytes`,
    Invalid when empty. The caller removes the file."""
    fd, name = tempfile.mkstemp(prefix="weldsim-upload-")
    path = Path(name)
    try:
        size = 0
        with os.fdopen(fd, "wb") as out:
            while True:
                chunk = stream.read(CHUNK)
                if not chunk:
                    break
                size += len(chunk)
                if size > max_bytes:
                    raise TooLarge(f"the file is larger than the upload limit of {_size(max_bytes)} "
                                   "(setting MAX_UPLOAD_BYTES)", field=FIELD)
                out.write(chunk)
        if size == 0:
            raise Invalid("the file is empty", field=FIELD)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def sniff(path: Path, suffix: str) -> str:
    """'step' or 'msh' from the content, which must agree with the name's suffix."""
    with open(path, "rb") as fh:
        head = fh.read(4096)
    if any(head.startswith(m) for m in ARCHIVE_MAGIC) or head[257:262] == b"ustar":
        raise Invalid(f"archives are not accepted: upload {_KINDS} itself", field=FIELD)
    text = head.removeprefix(b"\xef\xbb\xbf").lstrip()
    found = "step" if text.startswith(STEP_MAGIC) else "msh" if text.startswith(MSH_MAGIC) else None
    wanted = "step" if suffix in STEP_SUFFIXES else "msh"
    if found != wanted:
        what = {"step": f"a STEP file (it must start with {STEP_MAGIC.decode()})",
                "msh": f"a gmsh mesh (it must start with {MSH_MAGIC.decode()})"}[wanted]
        seems = {"step": "; it looks like a STEP file: name it .step",
                 "msh": "; it looks like a gmsh mesh: name it .msh"}.get(found or "", "")
        raise Invalid(f"the content is not {what}{seems}", field=FIELD)
    return found


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:g} {unit} ({n:,} bytes)"
    return f"{n:,} bytes"
