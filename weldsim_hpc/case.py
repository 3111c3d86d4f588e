"""CaseSpec: the one validated description of a simulation case.

SI units throughout: metres, kilograms, seconds, kelvin, pascals, hertz. Temperatures are
in kelvin and vibration amplitudes are 0-peak (the trade quotes peak-to-peak: convert at
the edges). Horns lie along +z: `input_face` at z = 0, `output_face` at z = L.

Every model forbids unknown keys, so a misspelt option is an error, not a silent default.
Cross-field rules (boundary names against the geometry, materials for every volume,
analysis-specific requirements, the cell-count guard) live in `case_checks`; loading
from TOML/JSON with readable error paths lives in `case_io`.

Example::

    from weldsim_hpc.case_io import load_case
    case = load_case("examples/horn_20khz_stepped_modal.toml", preset="ci")
    case.analysis            # 'modal'
    case.effective_element_order  # 2
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    field_validator,
    model_validator,
)

from .expressions import validate_scalar_or_expression
from .geometry import HornParams, TabStackParams
from .geometry.mesh_file import MeshFileGeometry
from .geometry.sizing import MeshSettings
from .petsc_options import key_problem, value_problem

AnalysisType = Literal[
    "thermal_steady",
    "thermal_transient",
    "static_structural",
    "coupled_thermo_structural",
    "modal",
    "harmonic",
]
THERMAL_ANALYSES = ("thermal_steady", "thermal_transient")
STRUCTURAL_ANALYSES = ("static_structural", "coupled_thermo_structural", "modal", "harmonic")
DYNAMIC_ANALYSES = ("modal", "harmonic")
ROOM_TEMPERATURE_K = 293.15


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _not_boolean(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("expected a number or an expression of x, y, z, t, not true/false")
    return value


def _scalar_or_expression(value: float | str) -> float | str:
    """A finite number, or the text of a safe expression of x, y, z, t."""
    return validate_scalar_or_expression(value, "")


ScalarOrExpression = Annotated[
    Union[float, str], BeforeValidator(_not_boolean), AfterValidator(_scalar_or_expression)
]
Vector3 = tuple[ScalarOrExpression, ScalarOrExpression, ScalarOrExpression]
OptionalVector3 = tuple[
    Union[ScalarOrExpression, None], Union[ScalarOrExpression, None], Union[ScalarOrExpression, None]
]
Identifier = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$")]


# --- boundary conditions -------------------------------------------------------------
class _Boundary(_Strict):
    boundary: str = Field(description="name of a group of the geometry: a surface; fixed and displacement conditions may also name an edge or point group")


class FixedBC(_Boundary):
    """All displacement components zero on the boundary."""

    type: Literal["fixed"]


class DisplacementBC(_Boundary):
    """Prescribed displacement components in m; null leaves a component free."""

    type: Literal["displacement"]
    value: OptionalVector3


class TemperatureBC(_Boundary):
    """Prescribed temperature in K."""

    type: Literal["temperature"]
    value: ScalarOrExpression


class HeatFluxBC(_Boundary):
    """Heat flux into the body in W/m² (positive heats)."""

    type: Literal["heat_flux"]
    value: ScalarOrExpression


class ConvectionBC(_Boundary):
    """q = h·(T_inf − T): film coefficient in W/(m²·K), ambient temperature in K."""

    type: Literal["convection"]
    h_W_m2K: PositiveFloat
    T_inf_K: PositiveFloat = ROOM_TEMPERATURE_K


class PressureBC(_Boundary):
    """Normal pressure in Pa (positive pushes into the body)."""

    type: Literal["pressure"]
    value: ScalarOrExpression


class TractionBC(_Boundary):
    """Surface traction vector in Pa."""

    type: Literal["traction"]
    value: Vector3


class WeldInterfaceHeatingBC(_Boundary):
    """Frictional or power-based heat flux at the weld interface, from `weld`."""

    type: Literal["weld_interface_heating"]


BoundaryCondition = Annotated[
    Union[
        FixedBC,
        DisplacementBC,
        TemperatureBC,
        HeatFluxBC,
        ConvectionBC,
        PressureBC,
        TractionBC,
        WeldInterfaceHeatingBC,
    ],
    Field(discriminator="type"),
]
THERMAL_BC_TYPES = ("temperature", "heat_flux", "convection", "weld_interface_heating")
STRUCTURAL_BC_TYPES = ("fixed", "displacement", "pressure", "traction")


# --- loads -----------------------------------------------------------------------------
class _VolumeLoad(_Strict):
    volume: str | None = Field(None, description="volume group; null = every volume")


class BodyForceLoad(_VolumeLoad):
    """Body force density in N/m³."""

    type: Literal["body_force"]
    value: Vector3


class HeatSourceLoad(_VolumeLoad):
    """Volumetric heat source in W/m³."""

    type: Literal["heat_source"]
    value: ScalarOrExpression


class TemperatureFieldLoad(_VolumeLoad):
    """Prescribed temperature field in K, for thermal strain in a structural analysis."""

    type: Literal["temperature_field"]
    value: ScalarOrExpression


Load = Annotated[Union[BodyForceLoad, HeatSourceLoad, TemperatureFieldLoad], Field(discriminator="type")]


# --- settings sections -----------------------------------------------------------------
def _petsc_key(key: str) -> str:
    problem = key_problem(key)
    if problem:
        raise ValueError(problem)
    return key


def _petsc_value(value: Any) -> Any:
    problem = value_problem(value)
    if problem:
        raise ValueError(problem)
    return value


# per key and per value, so an error's path names the option: solver.petsc_options.ksp_view
PetscKey = Annotated[str, AfterValidator(_petsc_key)]
PetscOptionValue = Annotated[Union[bool, int, float, str], BeforeValidator(_petsc_value)]  # one error per bad value


class SolverSettings(_Strict):
    backend: Literal["auto", "fenicsx", "scipy", "preview"] = "auto"
    ranks: PositiveInt = 1
    rtol: PositiveFloat = 1e-8
    atol: PositiveFloat = 1e-12
    max_iterations: PositiveInt = 1000
    modes_wanted: PositiveInt = Field(10, le=200)
    target_frequency_Hz: PositiveFloat | None = None
    petsc_options: dict[PetscKey, PetscOptionValue] = Field(
        default_factory=dict,
        description="extra PETSc options without the dash (ksp_type, pc_type, tolerances …); "
                    "options that write files, views or monitors are refused (see petsc_options.py)")


class TimeSettings(_Strict):
    """Transient stepping: theta = 1 backward Euler, 0.5 Crank–Nicolson."""

    end_s: PositiveFloat
    dt_s: PositiveFloat
    theta: float = Field(1.0, ge=0.5, le=1.0)
    checkpoint_every: PositiveInt = 10

    @model_validator(mode="after")
    def _dt_within_end(self) -> "TimeSettings":
        if self.dt_s > self.end_s:
            raise ValueError(f"dt_s ({self.dt_s:g} s) is larger than end_s ({self.end_s:g} s)")
        if self.end_s / self.dt_s > 1_000_000:
            raise ValueError("more than a million time steps: raise dt_s or lower end_s")
        return self


class ThermalSettings(_Strict):
    T_initial_K: PositiveFloat = ROOM_TEMPERATURE_K
    T_ref_K: PositiveFloat = Field(ROOM_TEMPERATURE_K, description="stress-free temperature")


class HarmonicSettings(_Strict):
    """Base excitation: input_face moves axially; report at the working frequency."""

    horn_axis: Literal["+z"] = "+z"
    loss_factor: PositiveFloat | None = Field(None, le=0.1, description="null = from the material")
    frequency_range_Hz: tuple[PositiveFloat, PositiveFloat] | None = None
    frequency_points: int = Field(201, ge=3, le=5001)
    output_amplitude_0pk_m: PositiveFloat = Field(15e-6, le=200e-6)

    @field_validator("frequency_range_Hz")
    @classmethod
    def _ordered(cls, value):
        if value is not None and value[0] >= value[1]:
            raise ValueError(f"the range must rise: got {value[0]:g} to {value[1]:g} Hz")
        return value


class WeldParameters(_Strict):
    """Weld settings. Heat input: friction (μ·p·4·f·A) or welder power (η·P/A_weld)."""

    frequency_Hz: PositiveFloat = Field(20_000.0, ge=1_000.0, le=100_000.0)
    weld_time_s: PositiveFloat = Field(0.3, le=10.0)
    pressure_Pa: PositiveFloat | None = None
    slip_amplitude_0pk_m: PositiveFloat | None = Field(None, le=200e-6)
    friction_coefficient: PositiveFloat | None = Field(None, le=2.0)
    power_W: PositiveFloat | None = Field(None, le=50_000.0)
    heat_fraction: float | None = Field(None, gt=0.0, le=1.0)

    @model_validator(mode="after")
    def _one_heat_model(self) -> "WeldParameters":
        friction = (self.pressure_Pa, self.slip_amplitude_0pk_m, self.friction_coefficient)
        power = (self.power_W, self.heat_fraction)
        has_friction = all(v is not None for v in friction)
        has_power = all(v is not None for v in power)
        if has_friction == has_power:
            raise ValueError(
                "give either friction heating (pressure_Pa, slip_amplitude_0pk_m, "
                "friction_coefficient) or power heating (power_W, heat_fraction), not "
                + ("both" if has_friction else "neither")
            )
        return self


class Probe(_Strict):
    name: Identifier
    point: tuple[float, float, float]
    fields: list[Literal["temperature", "displacement", "stress", "von_mises"]] = Field(
        default_factory=lambda: ["temperature", "displacement", "von_mises"]
    )


class OutputSettings(_Strict):
    fields: bool = True
    paraview: bool = True


Geometry = Annotated[Union[HornParams, TabStackParams, MeshFileGeometry], Field(discriminator="kind")]


class CaseSpec(_Strict):
    """A complete simulation case. See the module docstring for units and conventions."""

    schema_version: Literal[1] = 1
    name: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=5000)
    analysis: AnalysisType
    geometry: Geometry
    mesh: MeshSettings = Field(default_factory=MeshSettings)
    element_order: Literal[1, 2] | None = Field(
        None, description="null = 2 for structural, modal and harmonic; 1 for thermal"
    )
    materials: dict[str, Union[str, dict[str, Any]]] = Field(
        description="volume group -> material id (built-in or custom) or inline properties"
    )
    custom_materials: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="material id -> properties, usable by id in `materials`"
    )
    boundary_conditions: list[BoundaryCondition] = Field(default_factory=list)
    loads: list[Load] = Field(default_factory=list)
    time: TimeSettings | None = None
    thermal: ThermalSettings = Field(default_factory=ThermalSettings)
    harmonic: HarmonicSettings = Field(default_factory=HarmonicSettings)
    weld: WeldParameters | None = None
    solver: SolverSettings = Field(default_factory=SolverSettings)
    probes: list[Probe] = Field(default_factory=list)
    outputs: OutputSettings = Field(default_factory=OutputSettings)

    @property
    def effective_element_order(self) -> int:
        if self.element_order is not None:
            return self.element_order
        return 1 if self.analysis in THERMAL_ANALYSES else 2

    @property
    def target_frequency_Hz(self) -> float | None:
        """The frequency the mesh must resolve: the solver target, else the weld's."""
        if self.solver.target_frequency_Hz is not None:
            return self.solver.target_frequency_Hz
        return self.weld.frequency_Hz if self.weld is not None else None

    def to_json_dict(self) -> dict[str, Any]:
        """The case as plain JSON data (what case.json holds)."""
        return self.model_dump(mode="json")
