"""Safe expressions: the issue's bar is that code injection, attribute access,
comprehensions, lambdas, unknown names and `9**9**9` are rejected with a clear message
naming the field, that arithmetic is float64 only, and that valid expressions evaluate
vectorised. `test_float64_not_python_int` and `test_never_calls_eval` are the checks that
would fail for a naive `eval` with a restricted namespace.
"""

from __future__ import annotations

import builtins
import pickle
from typing import Annotated, Union

import numpy as np
import pytest
from pydantic import AfterValidator, BaseModel, ValidationError

from weldsim_hpc.errors import ExpressionError, WeldSimError
from weldsim_hpc.expressions import (
    FUNCTIONS,
    MAX_DEPTH,
    MAX_LENGTH,
    Expression,
    as_value,
    parse_expression,
    validate_scalar_or_expression,
)

FIELD = "boundary_conditions[2].value"


def rejection(text: str) -> str:
    with pytest.raises(ExpressionError) as info:
        parse_expression(text, FIELD)
    message = str(info.value)
    assert message.startswith(f"{FIELD}: "), message
    return message


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("__import__('os').system('id')", "attribute access ('.system') is not allowed"),
        ("__import__('os')", "function '__import__' is not allowed"),
        ("x.real", "attribute access ('.real') is not allowed"),
        ("().__class__.__bases__", "attribute access"),
        ("[i for i in (x, y)]", "a comprehension is not allowed"),
        ("(i for i in x)", "a comprehension is not allowed"),
        ("{i: 1 for i in x}", "a comprehension is not allowed"),
        ("(lambda: 1)()", "a lambda is not allowed"),
        ("lambda: x", "a lambda is not allowed"),
        ("os", "name 'os' is not allowed (allowed: x, y, z, t, pi, e, sin"),
        ("np.sin(x)", "attribute access ('.sin')"),
        ("inf", "name 'inf' is not allowed"),
        ("open('/etc/passwd')", "function 'open' is not allowed"),
        ("x[0]", "subscripting is not allowed"),
        ("f'{x}'", "an f-string is not allowed"),
        ("'abc'", "the literal 'abc' is not allowed"),
        ("True + x", "the literal True is not allowed"),
        ("2j * x", "the literal 2j is not allowed"),
        ("1e999 * x", "the number 1e999 is not finite"),
        ("sin(x=1)", "keyword arguments are not allowed"),
        ("max(*x)", "starred arguments are not allowed"),
        ("sin(x, y)", "sin() takes 1 argument, got 2"),
        ("where(x, y)", "where() takes 3 arguments, got 2"),
        ("x(1)", "'x' is a variable, not a function"),
        ("sin + x", "the function 'sin' must be called"),
        ("x // 2", "the operator '//' is not allowed"),
        ("x == 1", "the operator '==' is not allowed"),
        ("not x", "the operator 'not' is not allowed"),
        ("0 < x < 1", "chained comparisons are not allowed"),
        ("x if y else z", "use where(c, a, b)"),
        ("x and y", "'and'/'or'"),
        ("(y := 1)", "':=' is not allowed"),
        ("(x, y)", "a tuple is not allowed"),
        ("1 +", "invalid syntax"),
        ("   ", "the expression is empty"),
        ("9**9**9", "evaluates to a non-finite value (inf)"),
    ],
)
def test_rejected_with_clear_message(text, fragment):
    assert fragment in rejection(text)


def test_errors_are_weldsim_and_value_errors():
    """ValueError lets pydantic validators report the error at the field's path."""
    with pytest.raises(ExpressionError) as info:
        parse_expression("os")
    assert isinstance(info.value, WeldSimError) and isinstance(info.value, ValueError)
    assert str(info.value).startswith("name 'os'")  # no field, no dangling prefix


def test_non_string_rejected():
    with pytest.raises(ExpressionError, match="must be a string, got list"):
        parse_expression(["x"], FIELD)


def test_length_limit():
    longest = "1." + "0" * (MAX_LENGTH - 2)
    assert parse_expression(longest).evaluate(0, 0, 0) == 1.0
    assert "501 characters long; at most 500" in rejection(longest + "0")
    assert "characters long" in rejection(" " * MAX_LENGTH + "x")  # counted before stripping


def test_depth_limit():
    assert parse_expression("-" * (MAX_DEPTH - 1) + "x").evaluate(2.0, 0, 0) == -2.0
    assert "nested 33 levels deep; at most 32" in rejection("-" * MAX_DEPTH + "x")
    nested = "sin(" * MAX_DEPTH + "x" + ")" * MAX_DEPTH
    assert "nested 33 levels deep" in rejection(nested)


def test_non_finite_names_field_and_point():
    x = np.array([1.0, 2.0, 0.0, 0.0])
    with pytest.raises(ExpressionError) as info:
        parse_expression("log(x)", "loads[0].value").evaluate(x, 5.0, 6.0, t=0.25)
    message = str(info.value)
    assert message.startswith("loads[0].value: expression 'log(x)'")
    assert "non-finite value (-inf) at x=0, y=5, z=6, t=0.25 (2 of 4 points)" in message

    with pytest.raises(ExpressionError, match=r"^f: .*non-finite value \(inf\) at x=3"):
        parse_expression("1/(x-x)", "f").evaluate([3.0, 4.0], 0, 0)
    with pytest.raises(ExpressionError, match=r"non-finite value \(nan\) at x=3"):
        parse_expression("0/(x-x)", "f").evaluate([3.0, 4.0], 0, 0)
    with pytest.raises(ExpressionError, match=r"non-finite value \(nan\) at x=-1"):
        parse_expression("sqrt(x)").evaluate([4.0, -1.0], 0, 0)
    with pytest.raises(ExpressionError, match=r"non-finite value \(inf\)"):
        parse_expression("exp(t)").evaluate(0, 0, 0, t=1000.0)


def test_constant_non_finite_rejected_at_parse():
    assert "non-finite value (inf)" in rejection("1/0")
    assert "non-finite value (nan)" in rejection("0*(9**9**9)")
    assert "not finite" in rejection("1" + "0" * 400)  # a 401-digit literal


def test_guarded_singularity_and_nan_comparisons():
    """where() may discard a bad branch, but a comparison with nan does not hide it."""
    guarded = parse_expression("where(x > 0, log(x), 0)")
    np.testing.assert_allclose(guarded.evaluate([0.0, np.e], 0, 0), [0.0, 1.0], rtol=1e-15)
    with pytest.raises(ExpressionError, match="non-finite"):
        parse_expression("(0/(x-x)) > 0").evaluate([1.0], 0, 0)
    with pytest.raises(ExpressionError, match="non-finite"):
        parse_expression("where(0/(x-x), 1, 2)").evaluate([1.0], 0, 0)


def test_float64_not_python_int():
    big = parse_expression("2**64").evaluate(0, 0, 0)
    assert big.dtype == np.float64 and float(big) == 1.8446744073709552e19
    # exact integer arithmetic would give 1 and 0.5; float64 absorbs the +1
    assert float(parse_expression("2**64 + 1 - 2**64").evaluate(0, 0, 0)) == 0.0
    assert float(parse_expression("(2**53 + 1) % 2").evaluate(0, 0, 0)) == 0.0
    assert float(parse_expression("7 / 2").evaluate(0, 0, 0)) == 3.5
    assert "non-finite value (inf)" in rejection("10**400")


REFERENCES = {
    "sin(2*pi*x) * exp(-y**2) + sqrt(abs(z)) - 3.5e-3*t":
        lambda x, y, z, t: np.sin(2 * np.pi * x) * np.exp(-y**2) + np.sqrt(np.abs(z)) - 3.5e-3 * t,
    "atan2(y, x) + min(x, y) * max(z, 0.5) + floor(10*x)/10 + ceil(y) % 3":
        lambda x, y, z, t: (np.arctan2(y, x) + np.minimum(x, y) * np.maximum(z, 0.5)
                            + np.floor(10 * x) / 10 + np.ceil(y) % 3),
    "where(x > 0.5, cosh(y), tanh(z)) + log10(1 + x**2) + arcsin(x/2) - acos(y/2) + arccos(z/3)":
        lambda x, y, z, t: (np.where(x > 0.5, np.cosh(y), np.tanh(z)) + np.log10(1 + x**2)
                            + np.arcsin(x / 2) - np.arccos(y / 2) + np.arccos(z / 3)),
    "+x - -y + tan(z)*sinh(t)/(1 + e) + atan(x) + asin(z/2) + arctan2(x, 1) + (y <= z)"
    " + arctan(log(2 + y))":
        lambda x, y, z, t: (x + y + np.tan(z) * np.sinh(t) / (1 + np.e) + np.arctan(x)
                            + np.arcsin(z / 2) + np.arctan2(x, 1) + (y <= z)
                            + np.arctan(np.log(2 + y))),
}


@pytest.mark.parametrize("text", REFERENCES)
def test_vectorised_matches_numpy(text):
    rng = np.random.default_rng(7)
    x, y, z = rng.uniform(-1.0, 1.0, (3, 1000))
    got = parse_expression(text).evaluate(x, y, z, t=0.3)
    assert got.shape == (1000,) and got.dtype == np.float64
    np.testing.assert_allclose(got, REFERENCES[text](x, y, z, 0.3), rtol=1e-14, atol=1e-15)

    points = np.column_stack([x, y, z])
    # not bit-equal: numpy's SIMD kernels may round differently on differently laid-out arrays
    np.testing.assert_allclose(parse_expression(text).evaluate_points(points, 0.3), got,
                               rtol=1e-14, atol=1e-15)


def test_every_function_is_exercised():
    used = " ".join(REFERENCES)
    assert [f for f in FUNCTIONS if f + "(" not in used] == [], "add them to REFERENCES"


def test_evaluate_points_shape_checked():
    with pytest.raises(ValueError, match=r"shape \(n, 3\), got \(4, 2\)"):
        parse_expression("x").evaluate_points(np.zeros((4, 2)))


def test_time_dependence_and_variables():
    assert parse_expression("1e-3*sin(2*pi*20e3*t)").uses_time
    steady = parse_expression("x + 2*y")
    assert not steady.uses_time and steady.variables == {"x", "y"}
    constant = parse_expression("pi * e")
    assert constant.variables == frozenset() and constant.is_constant


def test_constant_broadcasts_to_input_shape():
    out = parse_expression("2.5").evaluate(np.zeros((4, 5)), 0.0, 0.0)
    assert out.shape == (4, 5) and np.all(out == 2.5)
    out[0, 0] = 0.0  # a fresh, writeable array
    grid = parse_expression("3").evaluate(np.zeros((3, 1)), np.zeros((1, 4)), 0.0, t=1.0)
    assert grid.shape == (3, 4) and grid.dtype == np.float64
    assert parse_expression("x").evaluate(1.5, 0, 0).shape == ()


def test_never_calls_eval(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("eval/exec called")

    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    expr = parse_expression("x**2 + sin(t)")
    assert float(expr.evaluate(3.0, 0, 0)) == 9.0


def test_pickles_by_text():
    expr = parse_expression("x * t", "loads[1].value")
    copy = pickle.loads(pickle.dumps(expr))
    assert copy == expr and float(copy.evaluate(2.0, 0, 0, t=3.0)) == 6.0


def test_as_value_and_validator():
    assert as_value(3, "f") == 3.0 and isinstance(as_value(3, "f"), float)
    assert isinstance(as_value(np.float32(1.5)), float)
    expr = as_value(" 2*x ", "f")
    assert isinstance(expr, Expression) and expr.text == "2*x" and expr.field == "f"
    assert validate_scalar_or_expression(" 2*x ", "f") == "2*x"
    assert validate_scalar_or_expression(4, "f") == 4.0
    assert validate_scalar_or_expression(1.5e308, "f") == 1.5e308
    for bad, fragment in [(True, "got bool"), (float("nan"), "finite"), (float("inf"), "finite"),
                          (10**400, "finite"), ([1.0], "got list"), (None, "got NoneType")]:
        with pytest.raises(ExpressionError, match=f"^f: .*{fragment}"):
            validate_scalar_or_expression(bad, "f")


def test_pydantic_reports_field_path():
    Value = Annotated[Union[float, str], AfterValidator(validate_scalar_or_expression)]

    class Load(BaseModel):
        value: Value

    assert Load(value="sin(t)").value == "sin(t)" and Load(value=2).value == 2.0
    with pytest.raises(ValidationError) as info:
        Load(value="__import__('os').system('id')")
    (error,) = info.value.errors()
    assert error["loc"] == ("value",) and "attribute access" in error["msg"]
