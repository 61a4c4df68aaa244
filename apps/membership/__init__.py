"""Membership and loyalty (会员): members and levels. The membership issue grows it into the full template."""
from pathlib import Path

from crmkit.runtime.packages import AppHooks, AppPackage

from .demo import seed_demo
from .workflow_actions import create_member

hooks = AppHooks()
hooks.demo_seeder(seed_demo)
hooks.action("create_member")(create_member)

package = AppPackage(id="membership", path=Path(__file__).parent, hooks=hooks)
