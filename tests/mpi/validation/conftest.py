"""The `backend` fixture: every test that takes it runs once per solver backend."""

from __future__ import annotations

import pytest

from ._backends import BACKENDS, make_backend


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request):
    """The adapter of one backend (see _backends.py); module-scoped, so the meshes it
    reads are read once per module and backend."""
    return make_backend(request.param)
