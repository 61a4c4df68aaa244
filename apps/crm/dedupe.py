"""Duplicate detection on create and update: the same mobile, the same email, or a similar company name.

Company names are compared by a normalised key: legal-form suffixes (有限公司, 股份, 集团 …), brackets and
spaces are removed and Latin letters lower-cased, so 上海华信科技有限公司 and 上海 华信科技（股份）公司 collide.
"""
from __future__ import annotations

import re
import unicodedata

from sqlalchemy import func, select

from crmkit.runtime.i18n_text import text

# longest first, so 股份有限公司 goes before 有限公司
NOISE = sorted(["股份有限公司", "有限责任公司", "有限公司", "责任公司", "股份", "集团", "公司", "co., ltd.", "co.,ltd.", "co. ltd", "co ltd",
                "ltd.", "ltd", "inc.", "inc", "limited", "corporation", "corp.", "corp", "company"], key=len, reverse=True)
BRACKETS = re.compile(r"[()（）\[\]【】]")
SPACE_PUNCT = re.compile(r"[\s·・,，.。'\"“”‘’\-_/&]+")


def name_key(name: str | None) -> str:
    """The comparison key of a company name ('' for an empty name)."""
    s = unicodedata.normalize("NFKC", name or "").lower()
    s = BRACKETS.sub(" ", s)
    for word in NOISE:
        s = s.replace(word, " ")
    return SPACE_PUNCT.sub("", s)


def _taken(write, column: str, value, *, lower: bool = False) -> int | None:
    table = write.table(write.entity.key)
    col = table.c[column]
    q = select(table.c.id).where((func.lower(col) if lower else col) == value, table.c.deleted_at.is_(None))
    if not write.creating:
        q = q.where(table.c.id != write.current["id"])
    row = write.conn.execute(q.limit(1)).first()
    return row.id if row else None


def duplicate_errors(write, *, mobile: str | None = None, email: str | None = None) -> dict:
    """Per-field errors for values another live record of the same entity already has."""
    errors: dict[str, list] = {}
    if mobile and mobile in write.values and write.values[mobile]:
        other = _taken(write, mobile, write.values[mobile])
        if other:
            errors[mobile] = [text("Possible duplicate: {entity} #{id} has the same mobile number.", "疑似重复：{entity} #{id} 的手机号相同。",
                                   entity=write.entity.label, id=other)]
    if email and email in write.values and write.values[email]:
        other = _taken(write, email, str(write.values[email]).lower(), lower=True)
        if other:
            errors[email] = [text("Possible duplicate: {entity} #{id} has the same email.", "疑似重复：{entity} #{id} 的邮箱相同。",
                                  entity=write.entity.label, id=other)]
    return errors


def account_validator(write) -> dict:
    """Accounts: keep the name key current and refuse a name whose key another account has."""
    errors = duplicate_errors(write, email="email")
    if "name" in write.values:
        key = name_key(write.values["name"])
        write.values["name_key"] = key or None
        if key:
            other = _taken(write, "name_key", key)
            if other:
                errors["name"] = [text("Possible duplicate: account #{id} has a similar name.", "疑似重复：客户 #{id} 的名称相近。", id=other)]
    parent = write.get("parent")
    if parent and not write.creating and _is_descendant(write, parent, write.current["id"]):
        errors["parent"] = [text("An account cannot be under itself or one of its subsidiaries.", "上级客户不能是它自己或它的下级客户。")]
    return errors


def _is_descendant(write, candidate: int, root: int) -> bool:
    table = write.table("crm.account")
    seen, node = set(), candidate
    while node is not None and node not in seen:
        if node == root:
            return True
        seen.add(node)
        node = write.conn.execute(select(table.c.parent).where(table.c.id == node)).scalar()
    return False


def contact_validator(write) -> dict:
    return duplicate_errors(write, mobile="mobile", email="email")


def lead_duplicate_validator(write) -> dict:
    return duplicate_errors(write, mobile="mobile", email="email")
