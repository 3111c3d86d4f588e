"""The portal's tables (flask-sqlalchemy models), one module per group.

    users      User, ApiToken
    projects   Project, GeometryVersion, SimulationCase
    runs       Run (primary key = the 12-character run id), Artifact, Metric
    studies    Comparison, ComparisonResult, OptimizationStudy
    materials  Material (custom materials of a user)
    workflows  Workflow

Deletes cascade in the database (ON DELETE CASCADE; relationships use
``passive_deletes=True``): removing a user removes their projects, tokens and materials,
and a project takes its geometry, cases, runs (with metrics and artifacts), comparisons,
studies and workflows along. Timestamps are aware UTC datetimes (`utcnow`).
"""

from .materials import Material
from .projects import GeometryVersion, Project, SimulationCase
from .runs import Artifact, Metric, Run
from .studies import Comparison, ComparisonResult, OptimizationStudy
from .types import ApplicationType, BatchState, GeometryKind, RunState, StudyKind, UTCDateTime, utcnow
from .users import ApiToken, User
from .workflows import Workflow

__all__ = [
    "ApiToken", "ApplicationType", "Artifact", "BatchState", "Comparison", "ComparisonResult",
    "GeometryKind", "GeometryVersion", "Material", "Metric", "OptimizationStudy", "Project", "Run",
    "RunState", "SimulationCase", "StudyKind", "UTCDateTime", "User", "Workflow", "utcnow",
]
