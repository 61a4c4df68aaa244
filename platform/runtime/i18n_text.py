"""User-facing messages in English and Simplified Chinese.

A ``Text`` is a ``str`` whose value is the English text and which also carries the Chinese
text. Because it is a ``str``, API bodies, logs and code that compare English keep working;
the web UI shows ``localize(message, locale)``. marshmallow keeps the objects it is given
(``ValidationError`` messages, ``error_messages`` and validator ``error=`` templates, which it
``.format()``s: ``Text.format`` formats both languages), so they reach ``ValidationFailed``
intact.

Build messages with ``text(en, zh, **params)``. A parameter that is itself a ``Text`` or a
metadata ``Label`` (anything with ``.en`` and ``.zh``) is filled in per language, so an
entity's label or a nested message reads right in both.
"""
from __future__ import annotations

from typing import Any, Iterable


class Text(str):
    """English as the str value, Chinese in ``.zh``."""

    zh: str

    def __new__(cls, en: str, zh: str | None = None) -> "Text":
        obj = super().__new__(cls, en)
        obj.zh = str(en) if zh is None else str(zh)
        return obj

    @property
    def en(self) -> str:
        return str.__str__(self)

    def get(self, locale: str | None) -> str:
        return self.zh if (locale or "").startswith("zh") else self.en

    def format(self, *args: Any, **kwargs: Any) -> "Text":
        """Format both languages (marshmallow formats its message templates with this)."""
        return Text(_fill(self.en, "en", args, kwargs), _fill(self.zh, "zh", args, kwargs))

    # Immutable value: copies are the object itself; pickling keeps both languages.
    def __copy__(self) -> "Text":
        return self

    def __deepcopy__(self, memo: dict) -> "Text":
        return self

    def __reduce__(self):
        return (Text, (self.en, self.zh))


def text(en: str, zh: str, /, **params: Any) -> Text:
    """A message in both languages, with ``{name}`` placeholders filled in each language."""
    return Text(en, zh).format(**params) if params else Text(en, zh)


def localize(message: Any, locale: str | None) -> Any:
    """The message in ``locale``: a ``Text`` in that language; a plain str as it is; dicts and lists item by item."""
    if isinstance(message, Text):
        return message.get(locale)
    if isinstance(message, dict):
        return {k: localize(v, locale) for k, v in message.items()}
    if isinstance(message, (list, tuple)):
        return [localize(v, locale) for v in message]
    return message


def join(parts: Iterable[Any], en: str = "; ", zh: str = "；") -> Text:
    """Messages joined into one, with each language's separator; plain strs join as they are."""
    parts = list(parts)
    return Text(en.join(_in(p, "en") for p in parts), zh.join(_in(p, "zh") for p in parts))


def _in(value: Any, lang: str) -> Any:
    """``value`` in one language when it has both (a Text or a Label); otherwise unchanged."""
    if isinstance(value, Text):
        return value.get(lang)
    if isinstance(getattr(value, "zh", None), str) and isinstance(getattr(value, "en", None), str):
        return value.zh if lang == "zh" else value.en
    return value


def _fill(template: str, lang: str, args: tuple, kwargs: dict) -> str:
    return str.format(template, *(_in(a, lang) for a in args), **{k: _in(v, lang) for k, v in kwargs.items()})
