"""Message templates: placeholders rendered in Jinja's sandbox, with no globals, escaped for HTML email.

Template text comes from users, so it runs in ``ImmutableSandboxedEnvironment`` (no attribute access to
internals such as ``__class__``, no mutation of the context) with every global (``cycler``, ``joiner``,
``namespace``, ``range``, ``lipsum``, ``dict``) removed. A template that tries to reach outside is refused
with ``TemplateRefused``; an unknown placeholder renders empty.
"""
from __future__ import annotations

from jinja2 import TemplateError, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from ..errors import ValidationFailed
from ..i18n_text import text

MAX_TEMPLATE_CHARS = 20_000
MAX_OUTPUT_CHARS = 100_000


class TemplateRefused(ValidationFailed):
    """The template is malformed or tries something the sandbox forbids; nothing is sent."""


def _env(html: bool) -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(autoescape=html, undefined=Undefined, auto_reload=False, cache_size=0)
    env.globals.clear()
    return env


_ENVS = {True: _env(True), False: _env(False)}


def check_template(source: str, *, field: str = "body") -> None:
    """Parse only: syntax errors come back as a field error."""
    if not isinstance(source, str) or len(source) > MAX_TEMPLATE_CHARS:
        raise TemplateRefused({field: [text("A template is text of at most {n} characters.", "模板最多 {n} 个字符。", n=MAX_TEMPLATE_CHARS)]})
    try:
        _ENVS[False].parse(source)
    except TemplateError as exc:
        raise TemplateRefused({field: [text("The template has an error: {error}", "模板有错误：{error}", error=str(exc))]}) from None


def render(source: str, context: dict, *, html: bool = False, field: str = "body") -> str:
    check_template(source, field=field)
    try:
        out = _ENVS[html].from_string(source).render(**_plain(context))
    except SecurityError:
        raise TemplateRefused({field: [text("The template tries to use something templates may not use.", "模板使用了不允许使用的内容。")]}) from None
    except TemplateError as exc:
        raise TemplateRefused({field: [text("The template could not be rendered: {error}", "模板无法渲染：{error}", error=str(exc))]}) from None
    if len(out) > MAX_OUTPUT_CHARS:
        raise TemplateRefused({field: [text("The rendered message is too long.", "渲染后的消息过长。")]})
    return out


def _plain(value):
    """Only plain data reaches a template: dicts, lists, strings, numbers, booleans, None (others as text)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items() if isinstance(k, str) and k.isidentifier()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)
