"""Alliance merchants (联盟商家): partner merchants, their offers, counter redemption and purchases posted to the
membership points ledger, settlement statements and reputation. Depends on the membership app."""
from pathlib import Path

from crmkit.runtime.packages import AppHooks, AppPackage

from .hooks import register

hooks = register(AppHooks())

package = AppPackage(id="alliance", path=Path(__file__).parent, hooks=hooks)
