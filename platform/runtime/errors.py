"""The runtime's error types. Each carries what a user needs to fix the problem.

Messages are ``Text`` (English as the str value, Chinese alongside) wherever a user sees them;
a type without a message passed in uses its ``default_message``.
"""
from __future__ import annotations

from typing import Any

from .i18n_text import localize, text


class CrmkitError(Exception):
    """Base class; ``code`` is stable and used in API error bodies."""

    code = "error"
    status = 400
    default_message = text("The request cannot be carried out.", "无法执行此请求。")

    def __init__(self, message: str | None = None, *, details: dict | None = None):
        message = self.default_message if message is None else message
        super().__init__(message)
        self.message = message
        self.details = details or {}

    def to_dict(self, locale: str | None = None) -> dict:
        """The API error body; with ``locale``, messages in that language (English otherwise)."""
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return localize(body, locale) if locale else body


class DefinitionError(CrmkitError):
    """A metadata definition is invalid. ``problems`` lists (file, pointer, message)."""

    code = "invalid_definition"

    def __init__(self, problems: list[tuple[str, str, str]]):
        self.problems = problems
        lines = [f"{f}: {p or '/'}: {m}" for f, p, m in problems]
        super().__init__(
            "Invalid definition:\n  " + "\n  ".join(lines),
            details={"problems": [{"file": f, "pointer": p, "message": m} for f, p, m in problems]},
        )


class ValidationFailed(CrmkitError):
    """Record input failed validation; ``field_errors`` maps field name → messages."""

    code = "validation_failed"
    status = 422
    default_message = text("Some fields are not valid; fix them and submit again.", "有字段未通过校验，请修改后重新提交。")

    def __init__(self, field_errors: dict, message: str | None = None):
        self.field_errors = field_errors
        super().__init__(message, details={"fields": field_errors})


class StaleRecord(CrmkitError):
    code = "stale_record"
    status = 409
    default_message = text("Someone else changed this record. Reload it and apply your change again.",
                           "其他人已修改了这条记录。请重新加载，再应用你的修改。")


class RecordNotFound(CrmkitError):
    code = "not_found"
    status = 404
    default_message = text("The record does not exist or was deleted.", "记录不存在或已被删除。")


class PermissionDenied(CrmkitError):
    code = "forbidden"
    status = 403
    default_message = text("You may not do this. Ask an administrator to grant your role the permission.",
                           "你没有执行此操作的权限。请联系管理员为你的角色开通。")


class ServiceUnavailable(CrmkitError):
    """A part the request needs (the database, file storage) is not reachable or not writable right now."""

    code = "service_unavailable"
    status = 503
    default_message = text("The server cannot reach its database right now, so nothing was read or saved. "
                           "Try again in a minute; if it keeps happening, tell your administrator.",
                           "服务器暂时无法连接数据库，本次操作没有读取或保存任何内容。请一分钟后重试；如果持续出现，请联系管理员。")


class StorageUnavailable(ServiceUnavailable):
    code = "storage_unavailable"
    default_message = text("The file could not be stored: the server's file storage is full or not writable. Nothing was saved. "
                           "Ask an administrator to free space or fix the storage, then upload again.",
                           "文件无法保存：服务器的文件存储空间已满或不可写，本次没有保存任何内容。请联系管理员清理空间或修复存储后重新上传。")


class BadQuery(CrmkitError):
    """A filter, sort, search or cursor the query service cannot accept."""

    code = "bad_query"
    default_message = text("The filter, sort or search cannot be used.", "筛选、排序或搜索条件有误。")


class PlanRefused(CrmkitError):
    """A schema plan has destructive or lossy steps that were not confirmed."""

    code = "plan_refused"
    status = 409
