"""The one expression language: formulas, validation rules, visibility and required-ness conditions.

``compile_expression(source, entity, catalog)`` parses (a hand-written Pratt parser, no eval/exec),
type-checks against the entity and returns a ``CompiledExpression`` that evaluates over a record dict
in Python and, where both databases agree, compiles to SQL. See docs/template-authoring.md.
"""
from .compiled import CompiledExpression, compile_expression
from .errors import ExpressionError, NotSqlCompilable
from .functions import FUNCTIONS
from .limits import MAX_DEPTH, MAX_NODES, MAX_SOURCE_LENGTH, MAX_STEPS, MAX_STRING_LENGTH
from .types import RESULT_TYPES, XType

__all__ = [
    "FUNCTIONS", "MAX_DEPTH", "MAX_NODES", "MAX_SOURCE_LENGTH", "MAX_STEPS", "MAX_STRING_LENGTH", "RESULT_TYPES",
    "CompiledExpression", "ExpressionError", "NotSqlCompilable", "XType", "compile_expression",
]
