"""CRM templates: ``crm`` (the shared customer model), ``crm_sales`` and ``crm_service`` (both depend on ``crm``).

Definitions live in the ``customer/``, ``sales/`` and ``service/`` folders; the rules metadata cannot express
are the typed hooks registered here (validators, jobs, app actions for the automations, demo seeders, the public
forms blueprint).
"""
from pathlib import Path

from huey import crontab

from crmkit.runtime.packages import AppHooks, AppPackage

from .dedupe import account_validator, contact_validator, lead_duplicate_validator
from .demo import seed_customers, seed_sales, seed_service
from .escalation import escalate_action, warn_managers_action
from .flow import contract_to_order, quote_to_contract
from .forecast import target_validator
from .leads import lead_validator, pool_job
from .mail_in import poll_job
from .mail_out import SEND_REPLY, message_validator, on_message_created, send_reply_job
from .public import public_blueprint
from .roles import setup_for
from .sales import document_validator, opportunity_validator
from .sales_web import may_see_targets, sales_blueprint
from .service_pages import can_read_tickets, service_blueprint
from .survey_send import send_survey_action
from .tickets import refresh_job, ticket_validator

HERE = Path(__file__).parent

customer_hooks = AppHooks()
customer_hooks.validator("crm.account")(account_validator)
customer_hooks.validator("crm.contact")(contact_validator)
customer_hooks.demo_seeder(seed_customers)
customer_hooks.roles(setup_for("crm"))

sales_hooks = AppHooks()
sales_hooks.validator("crm_sales.lead")(lead_duplicate_validator)
sales_hooks.validator("crm_sales.lead")(lead_validator)
sales_hooks.validator("crm_sales.opportunity")(opportunity_validator)
for _doc in ("crm_sales.quote", "crm_sales.contract", "crm_sales.order"):
    sales_hooks.validator(_doc)(document_validator)
sales_hooks.validator("crm_sales.sales_target")(target_validator)
sales_hooks.transition_action("quote_to_contract")(quote_to_contract)
sales_hooks.transition_action("contract_to_order")(contract_to_order)
sales_hooks.blueprint(sales_blueprint)
sales_hooks.nav_link("crm_sales_pages.targets", en="Target attainment", zh="目标达成", icon="target", visible=may_see_targets)
sales_hooks.detail_panel("crm_sales.sales_target", "crm_sales_pages.target_panel", en="Attainment", zh="达成情况")
sales_hooks.job("crm_sales.lead_pool", pool_job, schedule=crontab(minute="15", hour="2"))
sales_hooks.demo_seeder(seed_sales)
sales_hooks.roles(setup_for("crm_sales"))

service_hooks = AppHooks()
service_hooks.validator("crm_service.ticket")(ticket_validator)
service_hooks.job("crm_service.sla_refresh", refresh_job, schedule=crontab(minute="*/5"))
service_hooks.validator("crm_service.ticket_message")(message_validator)
service_hooks.job("crm_service.mail_poll", poll_job, schedule=crontab(minute="*"))  # a no-op until CRMKIT_IMAP_HOST is set
service_hooks.job(SEND_REPLY, send_reply_job)
service_hooks.event_handler("crm_service.ticket_message:record.created", on_message_created)
# app actions for the service automations (service/automations/*.json): what the built-in actions cannot say
service_hooks.action("sla.warn_managers")(warn_managers_action)
service_hooks.action("sla.escalate")(escalate_action)
service_hooks.action("survey.send")(send_survey_action)
service_hooks.demo_seeder(seed_service)
service_hooks.roles(setup_for("crm_service"))
service_hooks.blueprint(service_blueprint)
service_hooks.nav_link("crm_service_pages.times", en="Service times", zh="服务用时", icon="activity", visible=can_read_tickets)
service_hooks.blueprint(public_blueprint)  # the lead form is public too; one blueprint for the CRM's public pages

customer = AppPackage(id="crm", path=HERE / "customer", hooks=customer_hooks)
sales = AppPackage(id="crm_sales", path=HERE / "sales", hooks=sales_hooks)
service = AppPackage(id="crm_service", path=HERE / "service", hooks=service_hooks)
