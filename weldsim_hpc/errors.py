"""Domain errors shared by the library, the CLI and (later) the portal.

Every error names what is wrong in words a simulation engineer can act on; the CLI
prints them without a traceback.
"""


class WeldSimError(Exception):
    """Base class of every error the user is meant to read."""


class CaseValidationError(WeldSimError):
    """A case specification is invalid; `errors` holds one (path, message) per problem."""

    def __init__(self, errors: list[tuple[str, str]]):
        self.errors = list(errors)
        super().__init__("\n".join(f"{p}: {m}" if p else m for p, m in self.errors))


class GeometryError(WeldSimError):
    """Geometry parameters or geometry generation failed."""


class MeshError(WeldSimError):
    """A mesh file is unreadable, inconsistent or too large."""


class MaterialError(WeldSimError):
    """An unknown or invalid material."""


class ExpressionError(WeldSimError):
    """An unsafe, malformed or non-finite expression."""


class SolverError(WeldSimError):
    """The solver failed: no convergence, NaN or divergence (exit code 3 of a run)."""


class RunInterrupted(Exception):
    """The ranks agreed to stop after a signal; a checkpoint was written at `step`.

    Not a WeldSimError: it is the orderly end of an attempt (exit code 4), not a failure.
    """

    def __init__(self, step: int, t: float):
        super().__init__(f"interrupted at step {step} (t = {t:g} s); resume with --resume")
        self.step, self.t = step, t
