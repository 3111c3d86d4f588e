"""The one rule for names users give (projects, cases, tokens, materials' display names).

Names are data: they are shown and stored, and never become file names. They are still
refused when they look like paths (a '/' or '\\', only dots) or hold control characters,
so that no export or download can ever be tricked by one, and a clear 4xx says why.

Example::

    check_name("  Horn v2 ", "name")   # 'Horn v2'
    check_name("../etc", "name")       # Invalid: name: must not contain '/' ...
"""

from __future__ import annotations

import unicodedata

from .errors import Invalid

MAX_NAME_LENGTH = 200


def check_name(value: str, field: str = "name", max_length: int = MAX_NAME_LENGTH) -> str:
    """`value` stripped of surrounding blanks, or Invalid naming `field` and the rule broken."""
    if not isinstance(value, str):
        raise Invalid(f"must be a string, got {type(value).__name__}", field=field)
    text = value.strip()
    if not text:
        raise Invalid("must not be empty", field=field)
    if len(text) > max_length:
        raise Invalid(f"must be at most {max_length} characters (got {len(text)})", field=field)
    if "/" in text or "\\" in text:
        raise Invalid("must not contain '/' or '\\' (names are labels, not paths)", field=field)
    if set(text) == {"."}:
        raise Invalid(f"{text!r} is not a name", field=field)
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in text):
        raise Invalid("must not contain control characters", field=field)
    return text
