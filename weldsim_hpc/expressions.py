"""Safe expressions of x, y, z, t for boundary values and loads.

Case files are user input (the portal will take them from the web), so an expression is
never given to `eval`: it is parsed with `ast.parse`, every node is checked against a small
allow-list, and the checked tree is compiled into nested numpy closures. Literals become
float64 when compiled, so `2**64` and `9**9**9` are float64 arithmetic (the latter
overflows to inf and is rejected) rather than unbounded Python integer arithmetic, and
nothing is folded or evaluated before the caller asks -- except that an expression without
variables is evaluated once when parsed, so that a non-finite constant fails early.

Coordinates are in metres and time in seconds; the result is in the unit of the field
(m, N, Pa, K, ...). Any non-finite result (inf, nan) at any evaluation point is an error
naming the field and the first bad point. Comparisons give 1.0 or 0.0 (nan if an operand
is nan) and pair with `where(cond, a, b)`, which picks `a` where cond is non-zero.

Example::

    >>> expr = parse_expression("1e-3 * sin(2*pi*20e3*t) * (x > 0)", "loads[0].value")
    >>> expr.uses_time
    True
    >>> expr.evaluate([1.0, -1.0], 0.0, 0.0, t=1.25e-5).round(9).tolist()
    [0.001, 0.0]
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass, field as dataclass_field
from typing import Any, Callable

import numpy as np

from weldsim_hpc.errors import ExpressionError

MAX_LENGTH = 500
MAX_DEPTH = 32
VARIABLES = ("x", "y", "z", "t")
CONSTANTS = {"pi": np.float64(np.pi), "e": np.float64(np.e)}


def _where(cond, a, b):
    return np.where(np.isnan(cond), np.nan, np.where(cond != 0, a, b))


def _comparison(op):
    """A comparison giving 1.0/0.0, and nan when either side is nan (so it is not hidden)."""
    return lambda a, b: np.where(np.isnan(a) | np.isnan(b), np.nan, op(a, b).astype(np.float64))


FUNCTIONS: dict[str, tuple[Callable[..., Any], int]] = {
    "sin": (np.sin, 1), "cos": (np.cos, 1), "tan": (np.tan, 1),
    "asin": (np.arcsin, 1), "acos": (np.arccos, 1), "atan": (np.arctan, 1),
    "arcsin": (np.arcsin, 1), "arccos": (np.arccos, 1), "arctan": (np.arctan, 1),
    "atan2": (np.arctan2, 2), "arctan2": (np.arctan2, 2),
    "sinh": (np.sinh, 1), "cosh": (np.cosh, 1), "tanh": (np.tanh, 1),
    "exp": (np.exp, 1), "log": (np.log, 1), "log10": (np.log10, 1), "sqrt": (np.sqrt, 1),
    "abs": (np.abs, 1), "floor": (np.floor, 1), "ceil": (np.ceil, 1),
    "min": (np.minimum, 2), "max": (np.maximum, 2), "where": (_where, 3),
}
ALLOWED_NAMES = (*VARIABLES, *CONSTANTS, *FUNCTIONS)
_BINARY = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply,
           ast.Div: np.true_divide, ast.Pow: np.power, ast.Mod: np.mod}
_UNARY = {ast.UAdd: np.positive, ast.USub: np.negative}
_COMPARE = {ast.Lt: _comparison(np.less), ast.LtE: _comparison(np.less_equal),
            ast.Gt: _comparison(np.greater), ast.GtE: _comparison(np.greater_equal)}
_FORBIDDEN = {  # how an error message names a construct off the allow-list
    ast.Attribute: "attribute access", ast.Subscript: "subscripting", ast.Lambda: "a lambda",
    ast.ListComp: "a comprehension", ast.SetComp: "a comprehension",
    ast.DictComp: "a comprehension", ast.GeneratorExp: "a comprehension",
    ast.JoinedStr: "an f-string", ast.IfExp: "'a if c else b' (use where(c, a, b))",
    ast.BoolOp: "'and'/'or' (use where(...), min or max)", ast.NamedExpr: "':='",
    ast.List: "a list", ast.Tuple: "a tuple", ast.Set: "a set", ast.Dict: "a dict",
    ast.Starred: "a starred argument", ast.Await: "await", ast.Yield: "yield",
}
_OPERATORS = {ast.FloorDiv: "//", ast.MatMult: "@", ast.LShift: "<<", ast.RShift: ">>",
              ast.BitOr: "|", ast.BitXor: "^", ast.BitAnd: "&", ast.Not: "not",
              ast.Invert: "~", ast.Eq: "==", ast.NotEq: "!=", ast.In: "in",
              ast.NotIn: "not in", ast.Is: "is", ast.IsNot: "is not"}


def _describe(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return f"attribute access ('.{node.attr}')"
    return _FORBIDDEN.get(type(node), type(node).__name__)


class _InvalidExpression(ExpressionError, ValueError):
    """ExpressionError that is also a ValueError, so a pydantic validator that lets it
    escape reports it with the field's path instead of aborting validation."""


def _error(field: str, message: str) -> ExpressionError:
    return _InvalidExpression(f"{field}: {message}" if field else message)


@dataclass(frozen=True)
class Expression:
    """A checked expression; build it with `parse_expression`, never directly."""

    text: str
    field: str
    variables: frozenset[str]
    _fn: Callable[[tuple], Any] = dataclass_field(repr=False, compare=False)

    @property
    def uses_time(self) -> bool:
        """True if the value depends on t (the solver must re-evaluate it each step)."""
        return "t" in self.variables

    @property
    def is_constant(self) -> bool:
        return not self.variables

    def __reduce__(self):  # closures do not pickle; the text does (MPI bcast, executors)
        return parse_expression, (self.text, self.field)

    def evaluate(self, x, y, z, t=0.0) -> np.ndarray:
        """Values at the broadcast of x, y, z, t (m, m, m, s) as a new float64 array of
        the broadcast shape (a constant expression too). Raises ExpressionError naming the
        field and the first point where the value is inf or nan."""
        args = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in (x, y, z, t)))
        with np.errstate(all="ignore"):
            out = np.array(np.broadcast_to(self._fn(tuple(args)), args[0].shape), np.float64)
        bad = ~np.isfinite(out)
        if bad.any():
            i = np.unravel_index(np.argmax(bad), out.shape)
            where = ", ".join(f"{n}={a[i]:g}" for n, a in zip(VARIABLES, args))
            raise _error(self.field, f"expression {self.text!r} evaluates to a non-finite "
                         f"value ({out[i]}) at {where} ({int(bad.sum())} of {out.size} "
                         "points); check for division by zero, log/sqrt of non-positive "
                         "values and overflow")
        return out

    def evaluate_points(self, points, t=0.0) -> np.ndarray:
        """Values at an (n, 3) array of points (m) at time t (s): shape (n,)."""
        p = np.asarray(points, dtype=np.float64)
        if p.ndim != 2 or p.shape[1] != 3:
            raise ValueError(f"points must have shape (n, 3), got {p.shape}")
        x, y, z = np.ascontiguousarray(p.T)  # contiguous columns take numpy's SIMD paths
        return self.evaluate(x, y, z, t)


def parse_expression(text: str, field: str = "") -> Expression:
    """Check `text` against the allow-list and compile it; `field` (a case path such as
    'boundary_conditions[2].value') prefixes every error message."""
    if not isinstance(text, str):
        raise _error(field, f"an expression must be a string, got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise _error(field, f"the expression is {len(text)} characters long; "
                     f"at most {MAX_LENGTH} are allowed")
    text = text.strip()
    if not text:
        raise _error(field, "the expression is empty")
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError) as exc:  # ValueError: null bytes
        where = f" at column {exc.offset}" if getattr(exc, "offset", None) else ""
        detail = getattr(exc, "msg", exc)
        raise _error(field, f"invalid syntax in {text!r}{where}: {detail}") from None
    depth = _depth(tree.body)
    if depth > MAX_DEPTH:
        raise _error(field, f"the expression is nested {depth} levels deep; "
                     f"at most {MAX_DEPTH} are allowed")
    used: set[str] = set()
    fn = _Compiler(text, field, used).compile(tree.body)
    expr = Expression(text, field, frozenset(used), fn)
    if expr.is_constant:
        expr.evaluate(0.0, 0.0, 0.0)  # reject non-finite constants such as 9**9**9 now
    return expr


def _depth(root: ast.AST) -> int:
    """Nesting depth counting expression nodes only; iterative, so it cannot recurse out."""
    deepest, stack = 0, [(root, 1)]
    while stack:
        node, d = stack.pop()
        deepest = max(deepest, d)
        stack.extend((c, d + isinstance(c, ast.expr)) for c in ast.iter_child_nodes(node))
    return deepest


class _Compiler:
    """Walks a parsed tree, rejecting anything off the allow-list, and returns a closure
    from the (x, y, z, t) arrays to the value."""

    def __init__(self, text: str, field: str, used: set[str]):
        self.text, self.field, self.used = text, field, used

    def fail(self, node: ast.AST, what: str) -> ExpressionError:
        col = getattr(node, "col_offset", None)
        at = f" (at column {col + 1} of {self.text!r})" if col is not None else ""
        return _error(self.field, what + at)

    def compile(self, node: ast.AST) -> Callable[[tuple], Any]:
        if isinstance(node, ast.Constant):
            v = node.value
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise self.fail(node, f"the literal {v!r} is not allowed; only real numbers are")
            try:
                value = np.float64(float(v))
            except OverflowError:
                value = np.float64(np.inf)
            if not math.isfinite(value):
                raise self.fail(node, f"the number {ast.get_source_segment(self.text, node)} "
                                "is not finite in float64")
            return lambda args: value
        if isinstance(node, ast.Name):
            if node.id in VARIABLES:
                self.used.add(node.id)
                i = VARIABLES.index(node.id)
                return lambda args: args[i]
            if node.id in CONSTANTS:
                value = CONSTANTS[node.id]
                return lambda args: value
            if node.id in FUNCTIONS:
                raise self.fail(node, f"the function '{node.id}' must be called: "
                                f"{node.id}(...)")
            raise self.fail(node, f"name {node.id!r} is not allowed "
                            f"(allowed: {', '.join(ALLOWED_NAMES)})")
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            op, a = _UNARY[type(node.op)], self.compile(node.operand)
            return lambda args: op(a(args))
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            op, a, b = _BINARY[type(node.op)], self.compile(node.left), self.compile(node.right)
            return lambda args: op(a(args), b(args))
        if isinstance(node, ast.Compare) and all(type(o) in _COMPARE for o in node.ops):
            if len(node.ops) != 1:
                raise self.fail(node, "chained comparisons are not allowed; write one at a time")
            op = _COMPARE[type(node.ops[0])]
            a, b = self.compile(node.left), self.compile(node.comparators[0])
            return lambda args: op(a(args), b(args))
        if isinstance(node, ast.Call):
            return self.call(node)
        if isinstance(node, (ast.UnaryOp, ast.BinOp, ast.Compare)):
            ops = node.ops if isinstance(node, ast.Compare) else [node.op]
            bad = next(o for o in ops if type(o) not in {**_UNARY, **_BINARY, **_COMPARE})
            raise self.fail(node, f"the operator '{_OPERATORS.get(type(bad), type(bad).__name__)}'"
                            " is not allowed (allowed: + - * / ** % < <= > >=)")
        raise self.fail(node, f"{_describe(node)} is not allowed")

    def call(self, node: ast.Call) -> Callable[[tuple], Any]:
        if not isinstance(node.func, ast.Name):
            raise self.fail(node.func, f"{_describe(node.func)} is not allowed; "
                            "call functions by name")
        name = node.func.id
        if name not in FUNCTIONS:
            why = "is a variable, not a function" if name in VARIABLES + tuple(CONSTANTS) \
                else "is not allowed"
            raise self.fail(node.func, f"function {name!r} {why} "
                            f"(functions: {', '.join(FUNCTIONS)})")
        if node.keywords:
            raise self.fail(node, f"keyword arguments are not allowed in {name}(...)")
        if any(isinstance(a, ast.Starred) for a in node.args):
            raise self.fail(node, f"starred arguments are not allowed in {name}(...)")
        fn, arity = FUNCTIONS[name]
        if len(node.args) != arity:
            raise self.fail(node, f"{name}() takes {arity} argument{'s' * (arity > 1)}, "
                            f"got {len(node.args)}")
        parts = [self.compile(a) for a in node.args]
        return lambda args: fn(*(p(args) for p in parts))


def as_value(value: float | str, field: str = "") -> float | Expression:
    """A finite float for a number, a compiled Expression for a string; solvers call this
    on a CaseSpec value (`field` is its path, used in errors)."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an int beyond float64
            number = math.inf
        if not math.isfinite(number):
            raise _error(field, f"the value must be a finite number, got {value!r}")
        return number
    if isinstance(value, str):
        return parse_expression(value, field)
    raise _error(field, f"expected a number or an expression string, got {type(value).__name__}")


def validate_scalar_or_expression(value: float | str, field_path: str = "") -> float | str:
    """For case validators: the finite float, or the stripped source text once it parses
    (the case keeps the text so it round-trips to TOML/JSON as written)."""
    checked = as_value(value, field_path)
    return checked.text if isinstance(checked, Expression) else checked
