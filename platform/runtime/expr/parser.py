"""A precedence-climbing (Pratt) parser over the tokens. No eval, no exec: the tree is all there is.

Precedence, loosest first: OR, AND, NOT, comparisons (= != <> < <= > >=, not chained), & (text
concatenation), + -, * / %, unary minus. Keywords and function names are case-insensitive.
"""
from __future__ import annotations

from decimal import Decimal

from ..i18n_text import text
from .errors import ExpressionError
from .limits import MAX_DEPTH, MAX_NODES
from .nodes import Binary, Call, FieldRef, Literal, Node, Unary
from .tokens import Token, tokenize

KEYWORDS = {"TRUE", "FALSE", "NULL", "AND", "OR", "NOT"}
COMPARISONS = {"=", "==", "!=", "<>", "<", "<=", ">", ">="}
BINDING = {"OR": 1, "AND": 2, "CMP": 4, "&": 5, "+": 6, "-": 6, "*": 7, "/": 7, "%": 7}
NOT_BINDING = 3
UNARY_MINUS_BINDING = 8


def parse(source: str) -> Node:
    return _Parser(tokenize(source)).parse_all()


class _Parser:
    def __init__(self, tokens: list[Token]):
        self.tokens = tokens
        self.i = 0
        self.depth = 0
        self.nodes = 0

    # --- helpers -------------------------------------------------------------------
    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def advance(self) -> Token:
        t = self.tokens[self.i]
        self.i += 1
        return t

    def node(self, n: Node) -> Node:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise ExpressionError(text("The expression is too large (more than {max} parts).", "表达式过于复杂（超过 {max} 个组成部分）。",
                                       max=MAX_NODES), n.pos)
        return n

    def expect(self, kind: str, what_en: str, what_zh: str) -> Token:
        if self.tok.kind != kind:
            raise self.unexpected(what_en, what_zh)
        return self.advance()

    def unexpected(self, want_en: str, want_zh: str) -> ExpressionError:
        t = self.tok
        if t.kind == "END":
            return ExpressionError(text("The expression ends too early; expected {want}.", "表达式不完整，此处应为{want}。",
                                        want=text(want_en, want_zh)), t.pos)
        shown = t.value if t.kind != "STRING" else repr(t.value)
        return ExpressionError(text("Unexpected '{tok}'; expected {want}.", "此处不应出现“{tok}”，应为{want}。",
                                    tok=shown, want=text(want_en, want_zh)), t.pos)

    def infix_op(self) -> str | None:
        t = self.tok
        if t.kind == "OP":
            return t.value
        if t.kind == "NAME" and t.value.upper() in ("AND", "OR"):
            return t.value.upper()
        return None

    # --- grammar -------------------------------------------------------------------
    def parse_all(self) -> Node:
        if self.tok.kind == "END":
            raise ExpressionError(text("The expression is empty.", "表达式为空。"), 0)
        n = self.expression(0)
        if self.tok.kind != "END":
            raise self.unexpected("an operator or the end of the expression", "运算符或表达式结尾")
        return n

    def expression(self, min_bp: int) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExpressionError(text("The expression is nested too deeply (at most {max} levels).", "表达式嵌套过深（最多 {max} 层）。",
                                       max=MAX_DEPTH), self.tok.pos)
        left = self.prefix()
        while True:
            op = self.infix_op()
            if op is None:
                break
            bp = BINDING["CMP"] if op in COMPARISONS else BINDING[op]
            if bp <= min_bp:
                break
            t = self.advance()
            right = self.expression(bp)
            if op in COMPARISONS:
                op = {"==": "=", "<>": "!="}.get(op, op)
                if self.infix_op() in COMPARISONS:
                    raise ExpressionError(text("Comparisons cannot be chained; join them with AND.", "比较不能连写，请用 AND 连接。"),
                                          self.tok.pos)
            left = self.node(Binary(t.pos, op, left, right))
        self.depth -= 1
        return left

    def prefix(self) -> Node:
        t = self.tok
        if t.kind == "NUMBER":
            self.advance()
            return self.node(Literal(t.pos, Decimal(t.value)))
        if t.kind == "STRING":
            self.advance()
            return self.node(Literal(t.pos, t.value))
        if t.kind == "LPAREN":
            self.advance()
            inner = self.expression(0)
            self.expect("RPAREN", "')'", "“)”")
            return inner
        if t.kind == "OP" and t.value in ("-", "+"):
            self.advance()
            operand = self.expression(UNARY_MINUS_BINDING)
            return operand if t.value == "+" else self.node(Unary(t.pos, "-", operand))
        if t.kind == "NAME":
            upper = t.value.upper()
            nxt = self.tokens[self.i + 1]
            if nxt.kind == "LPAREN":
                return self.call()
            if upper == "NOT":
                self.advance()
                return self.node(Unary(t.pos, "NOT", self.expression(NOT_BINDING)))
            if upper in ("TRUE", "FALSE"):
                self.advance()
                return self.node(Literal(t.pos, upper == "TRUE"))
            if upper == "NULL":
                self.advance()
                return self.node(Literal(t.pos, None))
            if upper in ("AND", "OR"):
                raise self.unexpected("a value", "一个值")
            return self.field_ref()
        raise self.unexpected("a value (a number, text in quotes, a field name or a function call)",
                              "一个值（数字、带引号的文本、字段名或函数调用）")

    def field_ref(self) -> Node:
        first = self.advance()
        path = [first.value]
        while self.tok.kind == "DOT":
            self.advance()
            name = self.expect("NAME", "a field name after '.'", "“.”后面的字段名")
            path.append(name.value)
        return self.node(FieldRef(first.pos, tuple(path)))

    def call(self) -> Node:
        name = self.advance()
        self.advance()  # (
        args: list[Node] = []
        if self.tok.kind != "RPAREN":
            while True:
                args.append(self.expression(0))
                if self.tok.kind == "COMMA":
                    self.advance()
                    continue
                break
        self.expect("RPAREN", "',' or ')' to close the call", "“,”或表示调用结束的“)”")
        return self.node(Call(name.pos, name.value.upper(), tuple(args)))
