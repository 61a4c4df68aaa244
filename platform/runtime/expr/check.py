"""The type checker: a syntax tree plus an entity → a typed, resolved tree (``Bound``).

Field names resolve against the entity (``amount``) or through one link (``level.value``). A formula
field used in another expression is inlined (its own expression, checked the same way, up to
``MAX_FORMULA_NESTING`` deep and never in a cycle); a lookup field becomes its link path. Everything
an expression may touch is decided here, so the back ends never look anything up by name.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Mapping

from ..i18n_text import Text, text
from ..meta.model import EntityDef, FieldDef, Label
from .errors import ExpressionError
from .functions import FUNCTIONS
from .limits import MAX_FORMULA_NESTING, MAX_MAGNITUDE, MAX_NODES
from .nodes import Binary, Call, FieldRef, Literal, Node, Unary
from .parser import parse
from .types import BOOLEAN, FIELD_TYPES, INTEGER, NULL, NUMBER, RESULT_TYPES, TEXT, XType, unify

ARITHMETIC = {"+", "-", "*", "/", "%"}
# System columns an expression may read besides the entity's fields (empty until the record is stored).
SYSTEM_FIELDS = {
    "id": FieldDef(id="sys_id", name="id", type="integer", label=Label("编号", "ID")),
    "created_at": FieldDef(id="sys_created_at", name="created_at", type="datetime", label=Label("创建时间", "Created")),
    "updated_at": FieldDef(id="sys_updated_at", name="updated_at", type="datetime", label=Label("更新时间", "Updated")),
}
ORDERING = {"<", "<=", ">", ">="}


@dataclass(frozen=True)
class Bound:
    """A checked node. ``kind``: lit | field | op | call. For fields, ``path`` is the names walked and
    ``fields``/``entities`` the definitions along it (one entry, or link then target field)."""

    kind: str
    type: XType
    pos: int
    name: str = ""
    args: tuple["Bound", ...] = ()
    value: Any = None
    path: tuple[str, ...] = ()
    fields: tuple[FieldDef, ...] = ()
    entities: tuple[EntityDef, ...] = ()


def entities_of(catalog: Any) -> Mapping[str, EntityDef]:
    """Accept a ``Catalog`` or a plain ``{key: EntityDef}`` mapping (definition checks have no catalog yet)."""
    if catalog is None:
        return {}
    return getattr(catalog, "entities", catalog)


class Checker:
    def __init__(self, entity: EntityDef, entities: Mapping[str, EntityDef], *, stack: tuple[str, ...] = ()):
        self.entity = entity
        self.entities = entities
        self.stack = stack
        self.count = 0

    def check(self, node: Node) -> Bound:
        self.count += 1
        if self.count > MAX_NODES:
            raise ExpressionError(text("The expression is too large once other formulas are included (more than {max} parts).",
                                       "展开引用的公式后表达式过于复杂（超过 {max} 个组成部分）。", max=MAX_NODES), node.pos)
        if isinstance(node, Literal):
            return self.literal(node)
        if isinstance(node, FieldRef):
            return self.field(node)
        if isinstance(node, Unary):
            return self.unary(node)
        if isinstance(node, Binary):
            return self.binary(node)
        if isinstance(node, Call):
            return self.call(node)
        raise AssertionError(node)

    # --- leaves ---------------------------------------------------------------------
    def literal(self, n: Literal) -> Bound:
        v = n.value
        if v is None:
            return Bound("lit", NULL, n.pos)
        if isinstance(v, bool):
            return Bound("lit", BOOLEAN, n.pos, value=v)
        if isinstance(v, Decimal):
            if abs(v) >= MAX_MAGNITUDE:
                raise ExpressionError(text("The number {v} is too large.", "数字 {v} 过大。", v=str(v)), n.pos)
            return Bound("lit", INTEGER if v == v.to_integral_value() and "." not in str(v) else NUMBER, n.pos, value=v)
        return Bound("lit", TEXT, n.pos, value=v)

    def field(self, n: FieldRef) -> Bound:
        if len(n.path) > 2:
            raise ExpressionError(text("'{path}' goes through more than one link; an expression may follow one link (link.field).",
                                       "“{path}”经过了多个关联；表达式只能跨一个关联（关联字段.字段）。", path=".".join(n.path)), n.pos)
        f = self.own_field(self.entity, n.path[0], n.pos)
        if len(n.path) == 1:
            return self.resolve(f, n.pos)
        if f.type != "link":
            raise ExpressionError(text("'{name}' is not a link, so '{path}' cannot look through it.",
                                       "“{name}”不是关联字段，不能通过它取“{path}”。", name=f.name, path=".".join(n.path)), n.pos)
        target = self.entities.get(f.opt("target"))
        if target is None:
            raise ExpressionError(text("'{name}' links to an unknown entity.", "“{name}”关联的实体不存在。", name=f.name), n.pos)
        tf = self.own_field(target, n.path[1], n.pos + len(n.path[0]) + 1)
        return self.path_field(f, target, tf, n.pos)

    def own_field(self, entity: EntityDef, name: str, pos: int) -> FieldDef:
        for f in entity.fields:
            if f.name == name:
                return f
        if name in SYSTEM_FIELDS:
            return SYSTEM_FIELDS[name]
        known = ", ".join(f.name for f in entity.fields)
        raise ExpressionError(text("There is no field '{name}' on {entity}. Fields: {known}.",
                                   "{entity}没有字段“{name}”。可用字段：{known}。", name=name, entity=entity.label, known=known), pos)

    def resolve(self, f: FieldDef, pos: int) -> Bound:
        if f.type == "formula":
            return self.inline(f, pos)
        if f.type == "lookup":
            link = self.own_field(self.entity, f.opt("link", ""), pos)
            target = self.entities.get(link.opt("target"))
            if link.type != "link" or target is None:
                raise ExpressionError(text("Lookup field '{name}' does not name a link field.", "引用字段“{name}”没有指定有效的关联字段。",
                                           name=f.name), pos)
            return self.path_field(link, target, self.own_field(target, f.opt("field", ""), pos), pos)
        return Bound("field", self.field_type(f, pos), pos, path=(f.name,), fields=(f,), entities=(self.entity,))

    def path_field(self, link: FieldDef, target: EntityDef, tf: FieldDef, pos: int) -> Bound:
        if tf.type in ("formula", "lookup"):
            raise ExpressionError(text("'{link}.{name}' is a computed field; follow a link only to stored fields.",
                                       "“{link}.{name}”是计算字段；跨关联只能取存储的字段。", link=link.name, name=tf.name), pos)
        return Bound("field", self.field_type(tf, pos), pos, path=(link.name, tf.name), fields=(link, tf), entities=(self.entity, target))

    def field_type(self, f: FieldDef, pos: int) -> XType:
        if f.type == "rollup":
            return INTEGER if f.opt("function") == "count" else NUMBER
        t = FIELD_TYPES.get(f.type)
        if t is None:
            raise ExpressionError(text("Field '{name}' ({type}) holds several values and cannot be used in an expression.",
                                       "字段“{name}”（{type}）包含多个值，不能用在表达式中。", name=f.name, type=f.type), pos)
        return t

    def inline(self, f: FieldDef, pos: int) -> Bound:
        if f.name in self.stack:
            raise ExpressionError(text("Formula '{name}' refers to itself (through {chain}).", "公式“{name}”引用了自身（{chain}）。",
                                       name=f.name, chain=" → ".join(self.stack + (f.name,))), pos)
        if len(self.stack) >= MAX_FORMULA_NESTING:
            raise ExpressionError(text("Formulas refer to formulas too deeply (at most {max}).", "公式之间的引用层级过深（最多 {max} 层）。",
                                       max=MAX_FORMULA_NESTING), pos)
        try:
            tree = parse(f.opt("expression", ""))
            sub = Checker(self.entity, self.entities, stack=self.stack + (f.name,))
            sub.count = self.count
            bound = sub.check(tree)
            self.count = sub.count
        except ExpressionError as exc:
            raise ExpressionError(text("Formula '{name}' used here is not valid: {problem}", "此处引用的公式“{name}”无效：{problem}",
                                       name=f.name, problem=exc.message), pos) from None
        declared = RESULT_TYPES.get(f.opt("result", ""), bound.type)
        if bound.type.kind not in (declared.kind, "null"):
            raise ExpressionError(text("Formula '{name}' gives {got}, not the {want} it declares.", "公式“{name}”的结果是{got}，而不是声明的{want}。",
                                       name=f.name, got=bound.type.label, want=declared.label), pos)
        return bound

    # --- operators ------------------------------------------------------------------
    def unary(self, n: Unary) -> Bound:
        a = self.check(n.operand)
        if n.op == "-":
            self.want(a, ("number",), n.operand.pos, "-")
            return Bound("op", a.type if a.type.kind == "number" else NUMBER, n.pos, name="NEG", args=(a,))
        self.want(a, ("boolean",), n.operand.pos, "NOT")
        return Bound("op", BOOLEAN, n.pos, name="NOT", args=(a,))

    def binary(self, n: Binary) -> Bound:
        a, b = self.check(n.left), self.check(n.right)
        op = n.op
        if op in ARITHMETIC:
            for x, node in ((a, n.left), (b, n.right)):
                if x.type.kind in ("date", "datetime"):
                    raise ExpressionError(text("Dates cannot be used with '{op}'; use ADD_DAYS, ADD_MONTHS or DAYS_BETWEEN.",
                                               "日期不能直接用“{op}”运算，请用 ADD_DAYS、ADD_MONTHS 或 DAYS_BETWEEN。", op=op), node.pos)
                if x.type.kind == "text" and op == "+":
                    raise ExpressionError(text("Text cannot be added with '+'; join text with '&'.", "文本不能用“+”相加，连接文本请用“&”。"), node.pos)
                self.want(x, ("number",), node.pos, op)
            integral = a.type.integral and b.type.integral and op != "/"
            return Bound("op", XType("number", integral), n.pos, name=op, args=(a, b))
        if op == "&":
            return Bound("call", TEXT, n.pos, name="CONCAT", args=(a, b))
        if op in ("AND", "OR"):
            self.want(a, ("boolean",), n.left.pos, op)
            self.want(b, ("boolean",), n.right.pos, op)
            return Bound("op", BOOLEAN, n.pos, name=op, args=(a, b))
        # comparisons
        for x, node in ((a, n.left), (b, n.right)):
            if x.type.kind == "null":
                raise ExpressionError(text("Comparing with NULL is never true; use ISBLANK(value) instead.",
                                           "与 NULL 比较的结果永远不成立，请改用 ISBLANK(值)。"), node.pos)
        if a.type.kind != b.type.kind:
            raise ExpressionError(text("Cannot compare {a} with {b}.", "{a}和{b}不能比较。", a=a.type.label, b=b.type.label), n.pos)
        if op in ORDERING and a.type.kind == "boolean":
            raise ExpressionError(text("Yes/no values can only be compared with = or !=.", "是/否值只能用 = 或 != 比较。"), n.pos)
        self.check_option(a, b)
        self.check_option(b, a)
        return Bound("op", BOOLEAN, n.pos, name=op, args=(a, b))

    def check_option(self, field: Bound, lit: Bound) -> None:
        """``status = "actve"`` against a single select is a typo the checker can see."""
        if field.kind != "field" or lit.kind != "lit" or field.fields[-1].type != "single_select":
            return
        options = [o["value"] for o in field.fields[-1].opt("options", ())]
        if lit.value not in options:
            raise ExpressionError(text("'{v}' is not an option of '{name}' (options: {options}).", "“{v}”不是“{name}”的选项（可选：{options}）。",
                                       v=lit.value, name=field.fields[-1].name, options=", ".join(options)), lit.pos)

    def want(self, b: Bound, kinds: tuple[str, ...], pos: int, where: str) -> None:
        if b.type.kind in kinds or b.type.kind == "null":
            return
        names = Text(" or ".join(kinds), "或".join(XType(k).label.zh for k in kinds))
        raise ExpressionError(text("'{where}' needs {want} here, but this is {got}.", "“{where}”此处需要{want}，但这里是{got}。",
                                   where=where, want=names, got=b.type.label), pos)

    # --- calls ----------------------------------------------------------------------
    def call(self, n: Call) -> Bound:
        sig = FUNCTIONS.get(n.name)
        if sig is None:
            raise ExpressionError(text("Unknown function '{name}'. Functions: {known}.", "未知函数“{name}”。可用函数：{known}。",
                                       name=n.name, known=", ".join(sorted(FUNCTIONS))), n.pos)
        if not sig.minimum <= len(n.args) <= sig.maximum:
            raise ExpressionError(text("{name} takes {want}; it was given {got} argument(s). Usage: {usage}",
                                       "{name} 需要 {want} 个参数，实际给了 {got} 个。用法：{usage}", name=n.name,
                                       want=_count(sig.minimum, sig.maximum), got=len(n.args), usage=sig.describe()), n.pos)
        args = tuple(self.check(a) for a in n.args)
        if n.name in ("IF", "CASE"):
            return self.conditional(n, args)
        kinds = list(sig.params) + [sig.rest or "any"] * (len(args) - len(sig.params))
        for a, node, kind in zip(args, n.args, kinds):
            if kind == "any":
                continue
            allowed = {"temporal": ("date", "datetime"), "comparable": ("number", "date", "datetime", "text")}.get(kind, (kind,))
            self.want(a, allowed, node.pos, n.name)
        if sig.result == "unify":
            t = NULL
            for a, node in zip(args, n.args):
                u = unify(t, a.type)
                if u is None:
                    raise ExpressionError(text("{name} cannot mix {a} and {b}.", "{name} 不能混用{a}和{b}。", name=n.name, a=t.label, b=a.type.label),
                                          node.pos)
                t = u
            return Bound("call", t, n.pos, name=n.name, args=args)
        if sig.result == "same":
            first = args[0].type
            t = first if first.kind != "null" else (NUMBER if n.name == "ABS" else XType("date"))
            return Bound("call", t, n.pos, name=n.name, args=args)
        t = RESULT_TYPES[sig.result]
        if n.name == "ROUND" and len(args) == 1:
            t = INTEGER
        return Bound("call", t, n.pos, name=n.name, args=args)

    def conditional(self, n: Call, args: tuple[Bound, ...]) -> Bound:
        if n.name == "IF":
            conds, values = [args[0]], list(args[1:])
            cond_nodes = [n.args[0]]
            value_nodes = list(n.args[1:])
        else:
            pairs = len(args) // 2
            conds = [args[2 * i] for i in range(pairs)]
            cond_nodes = [n.args[2 * i] for i in range(pairs)]
            values = [args[2 * i + 1] for i in range(pairs)] + ([args[-1]] if len(args) % 2 else [])
            value_nodes = [n.args[2 * i + 1] for i in range(pairs)] + ([n.args[-1]] if len(args) % 2 else [])
        for c, node in zip(conds, cond_nodes):
            self.want(c, ("boolean",), node.pos, n.name)
        t = NULL
        for v, node in zip(values, value_nodes):
            u = unify(t, v.type)
            if u is None:
                raise ExpressionError(text("{name} gives {a} in one branch and {b} in another; every branch must give the same type.",
                                           "{name} 的各分支类型不一致：一处是{a}，另一处是{b}。", name=n.name, a=t.label, b=v.type.label), node.pos)
            t = u
        return Bound("call", t, n.pos, name=n.name, args=args)


def _count(lo: int, hi: int) -> str:
    if lo == hi:
        return str(lo)
    if hi >= 1000:
        return f"{lo}+"
    return f"{lo}-{hi}"
