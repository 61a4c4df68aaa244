"""The tokenizer: source text → tokens, each with its character position."""
from __future__ import annotations

from dataclasses import dataclass

from ..i18n_text import text
from .errors import ExpressionError
from .limits import MAX_LITERAL_DIGITS, MAX_SOURCE_LENGTH, MAX_STRING_LENGTH

# Token kinds: NUMBER STRING NAME OP LPAREN RPAREN COMMA DOT END
OPERATORS = ("<=", ">=", "<>", "!=", "==", "=", "<", ">", "+", "-", "*", "/", "%", "&")
ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'"}


@dataclass(frozen=True)
class Token:
    kind: str
    value: str
    pos: int


def tokenize(source: str) -> list[Token]:
    if not isinstance(source, str):
        raise ExpressionError(text("An expression must be text.", "表达式必须是文本。"), 0)
    if len(source) > MAX_SOURCE_LENGTH:
        raise ExpressionError(text("The expression is too long ({n} characters; at most {max}).",
                                   "表达式过长（{n} 个字符，最多 {max} 个）。", n=len(source), max=MAX_SOURCE_LENGTH), MAX_SOURCE_LENGTH)
    out: list[Token] = []
    i, n = 0, len(source)
    while i < n:
        c = source[i]
        if c in " \t\r\n":
            i += 1
            continue
        if c.isdigit() or (c == "." and i + 1 < n and source[i + 1].isdigit()):
            j = i
            while j < n and source[j].isdigit():
                j += 1
            if j < n and source[j] == "." and j + 1 < n and source[j + 1].isdigit():
                j += 1
                while j < n and source[j].isdigit():
                    j += 1
            if j < n and (source[j].isalpha() or source[j] == "_"):
                raise ExpressionError(text("A number cannot run into letters here.", "数字后面不能紧跟字母。"), j)
            literal = source[i:j]
            if sum(ch.isdigit() for ch in literal) > MAX_LITERAL_DIGITS:
                raise ExpressionError(text("The number {v} is too long (at most {max} digits).", "数字 {v} 过长（最多 {max} 位）。",
                                           v=literal[:20] + "…", max=MAX_LITERAL_DIGITS), i)
            out.append(Token("NUMBER", literal, i))
            i = j
            continue
        if c in "\"'":
            tok, i = _string(source, i)
            out.append(tok)
            continue
        if c.isalpha() or c == "_":
            j = i
            while j < n and (source[j].isalnum() or source[j] == "_") and source[j].isascii():
                j += 1
            if j == i:
                raise ExpressionError(text("Unexpected character '{c}'.", "无法识别的字符“{c}”。", c=c), i)
            out.append(Token("NAME", source[i:j], i))
            i = j
            continue
        if c == "(":
            out.append(Token("LPAREN", c, i))
        elif c == ")":
            out.append(Token("RPAREN", c, i))
        elif c == ",":
            out.append(Token("COMMA", c, i))
        elif c == ".":
            out.append(Token("DOT", c, i))
        else:
            for op in OPERATORS:
                if source.startswith(op, i):
                    out.append(Token("OP", op, i))
                    i += len(op)
                    break
            else:
                raise ExpressionError(text("Unexpected character '{c}'.", "无法识别的字符“{c}”。", c=c), i)
            continue
        i += 1
    out.append(Token("END", "", n))
    return out


def _string(source: str, start: int) -> tuple[Token, int]:
    quote = source[start]
    i, n = start + 1, len(source)
    buf: list[str] = []
    while i < n:
        c = source[i]
        if c == quote:
            return Token("STRING", "".join(buf), start), i + 1
        if c == "\\":
            if i + 1 >= n:
                break
            e = source[i + 1]
            if e not in ESCAPES:
                raise ExpressionError(text("Unknown escape '\\{e}' in a string; use \\\\, \\\", \\', \\n or \\t.",
                                           "字符串中的转义“\\{e}”无效；可用 \\\\、\\\"、\\'、\\n、\\t。", e=e), i)
            buf.append(ESCAPES[e])
            i += 2
            continue
        buf.append(c)
        i += 1
        if len(buf) > MAX_STRING_LENGTH:
            raise ExpressionError(text("A string is too long (at most {max} characters).", "字符串过长（最多 {max} 个字符）。",
                                       max=MAX_STRING_LENGTH), start)
    raise ExpressionError(text("This string is never closed; add the closing {q}.", "字符串没有结束，缺少结尾的 {q}。", q=quote), start)
