"""The syntax tree. Plain frozen dataclasses; ``pos`` is the 0-based character position in the source."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Node:
    pos: int


@dataclass(frozen=True)
class Literal(Node):
    value: Any  # Decimal, str, bool or None


@dataclass(frozen=True)
class FieldRef(Node):
    path: tuple[str, ...]  # ("amount",) or ("level", "value") through a link


@dataclass(frozen=True)
class Unary(Node):
    op: str  # "-" or "NOT"
    operand: Node


@dataclass(frozen=True)
class Binary(Node):
    op: str  # + - * / % & = != < <= > >= AND OR
    left: Node
    right: Node


@dataclass(frozen=True)
class Call(Node):
    name: str  # upper case
    args: tuple[Node, ...]


def children(node: Node) -> tuple[Node, ...]:
    if isinstance(node, Unary):
        return (node.operand,)
    if isinstance(node, Binary):
        return (node.left, node.right)
    if isinstance(node, Call):
        return node.args
    return ()


def walk(node: Node):
    yield node
    for c in children(node):
        yield from walk(c)
