"""The reference code's numeric reading of a MATH / SVAMP answer: `\\frac`, `\\dfrac`, else sympy.

The reference turns an answer into a float when it can: the first `\\frac{a}{b}` (or, failing a `\\frac`,
`\\dfrac{a}{b}`) anywhere in it whose a and b are plain numbers gives a / b, sign and everything else around
it ignored ("-\\frac{1}{2}" reads as 0.5); otherwise `sympify(answer).evalf()` read as a float ("2^3" is 8,
"pi" is 3.14159…, "E" is 2.71828…). Where sympy reads the answer but the result is no float ("i", "x+1",
"(C)") the reference keeps sympy's expression, neither text nor number (`Symbolic`); where sympy fails, the
answer stays text. sympify evaluates its input as Python, so a
model's answer is never handed to it as is: it is turned into code by sympy's own tokenizer and
transformations (exactly as sympify does), and that code runs only when it calls nothing but sympy's
mathematical objects, with no attribute access and no exponent tower. An answer refused there stays text,
flagged (`NotEvaluated`), where the reference may have read a number.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

_FRAC_RE = re.compile(r"\\frac\{([^\}]+)\}\{([^\}]+)\}")
_DFRAC_RE = re.compile(r"\\dfrac\{([^\}]+)\}\{([^\}]+)\}")
_MAX_EXPONENT = 10_000  # a literal exponent above this (or any power in an exponent) is not evaluated
_PLAIN_FUNCTIONS = frozenset({"sqrt", "cbrt", "root", "real_root", "N"})  # sympy functions, not classes
_NODES = (
    ast.Expression, ast.BinOp, ast.UnaryOp, ast.operator, ast.unaryop, ast.Constant, ast.Name, ast.Load,
    ast.Call, ast.Tuple, ast.List, ast.Set, ast.Dict, ast.Compare, ast.cmpop, ast.BoolOp, ast.boolop,
    ast.IfExp,
)  # fmt: skip


@dataclass(frozen=True)
class Symbolic:
    """An answer sympy read as an expression that is not a number (the reference then compares it with
    neither text nor number rules); `text` is sympy's printing of it, for display."""

    text: str


class NotEvaluated(Exception):
    """An answer sympify would have evaluated that taia does not run (it calls more than sympy math)."""


def normalize(answer: str) -> float | str | Symbolic:
    """The answer as a float where the reference reads one, `Symbolic` where sympy reads it as something
    else, else the answer unchanged.

    `NotEvaluated` when the answer needed sympy and is not safe to evaluate (see the module docstring).
    """
    for marker, pattern in (("\\frac", _FRAC_RE), ("\\dfrac", _DFRAC_RE)):
        if marker in answer:
            m = pattern.search(answer)
            if m is not None:
                return _ratio(m.group(1), m.group(2), answer)
    value = sympy_value(answer)
    return answer if value is None else value


def _ratio(a: str, b: str, answer: str) -> float | str:
    try:
        return float(a) / float(b)
    except (ValueError, ZeroDivisionError, OverflowError):
        return answer


def sympy_value(answer: str) -> float | Symbolic | None:
    """`float(sympify(answer).evalf())`; `Symbolic` when that float fails but the rest did not; None where
    sympify or evalf fails; `NotEvaluated` where the answer's code calls more than sympy math (not run)."""
    sympy, parser = _sympy()
    namespace = _namespace()
    transformations = (*parser.standard_transformations, parser.convert_xor)
    try:
        code = parser.stringify_expr(answer.replace("\n", ""), {}, namespace, transformations)
        tree = ast.parse(code, mode="eval")
    except Exception:  # noqa: BLE001 — the tokenizer and parser raise assorted errors: sympify fails
        return None
    problem = _unsafe(tree, namespace, sympy)
    if problem is not None:
        raise NotEvaluated(f"sympy not run on {answer!r:.60} ({problem})")
    try:
        value = eval(compile(tree, "<answer>", "eval"), namespace, {}).evalf()
    except Exception:  # noqa: BLE001 — as the reference's bare except: the answer stays text
        return None
    try:
        return float(value)
    except Exception:  # noqa: BLE001 — evaluated, but no number
        return Symbolic(str(value))


def _unsafe(tree: ast.Expression, namespace: dict[str, Any], sympy: Any) -> str | None:
    """Why the code may not run (a call to anything but sympy math, attribute access, a tower), or None."""
    for node in ast.walk(tree):
        if not isinstance(node, _NODES):
            return f"{type(node).__name__} not allowed"
        if isinstance(node, ast.Call) and (node.keywords or not _mathematical(node.func, namespace, sympy)):
            return "calls a non-mathematical function"
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow) and _costly(node.right):
            return "exponent too large"
    return None


def _mathematical(func: ast.expr, namespace: dict[str, Any], sympy: Any) -> bool:
    """A sympy class (`Integer`, `Symbol`, `sin`, `factorial`, …), a plain sympy function (`sqrt`), or an
    undefined function made by `Function('f')`."""
    if isinstance(func, ast.Call):  # `Function('f')(x)`: auto_symbol's reading of "f(x)"
        return isinstance(func.func, ast.Name) and func.func.id == "Function"
    if not isinstance(func, ast.Name):
        return False
    obj = namespace.get(func.id)
    if func.id in _PLAIN_FUNCTIONS:
        return obj is getattr(sympy, func.id, None)
    return isinstance(obj, type) and issubclass(obj, sympy.Basic)


def _costly(exponent: ast.expr) -> bool:
    """A power in the exponent, or a literal exponent beyond `_MAX_EXPONENT` (`Integer (99999 )`)."""
    for node in ast.walk(exponent):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            return True
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str)):
            try:
                if abs(float(node.value)) > _MAX_EXPONENT:  # `Float ('1e9' )` holds a string
                    return True
            except (ValueError, OverflowError):
                continue  # a symbol's name
    return False


@lru_cache(maxsize=1)
def _sympy() -> tuple[Any, Any]:
    """(sympy, sympy.parsing.sympy_parser), imported on first use (torch installs sympy with it)."""
    import sympy
    from sympy.parsing import sympy_parser

    return sympy, sympy_parser


@lru_cache(maxsize=1)
def _namespace() -> dict[str, Any]:
    """The names sympify's parser sees: everything `from sympy import *` gives, the builtin functions,
    and `max`/`min` as sympy's Max/Min (how `parse_expr` builds its globals when given none)."""
    import builtins
    import types

    sympy, _ = _sympy()
    namespace: dict[str, Any] = {name: getattr(sympy, name) for name in sympy.__all__}
    for name, obj in vars(builtins).items():
        if isinstance(obj, types.BuiltinFunctionType):
            namespace[name] = obj
    namespace["max"], namespace["min"] = sympy.Max, sympy.Min
    return namespace
