"""Membership and loyalty (会员): members, levels, and the points ledger with its earning and redemption rules."""
from pathlib import Path

from crmkit.runtime.packages import AppHooks, AppPackage

from .hooks import register

hooks = register(AppHooks())

package = AppPackage(id="membership", path=Path(__file__).parent, hooks=hooks)
