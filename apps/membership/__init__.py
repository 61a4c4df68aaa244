"""Membership and loyalty (会员): members, levels, and the points ledger with its earning and redemption rules."""
from pathlib import Path

from crmkit.runtime.packages import AppHooks, AppPackage

from .demo import seed_demo
from .ledger import tables as ledger_tables

hooks = AppHooks()
hooks.demo_seeder(seed_demo)
hooks.tables(ledger_tables.metadata)

package = AppPackage(id="membership", path=Path(__file__).parent, hooks=hooks)
