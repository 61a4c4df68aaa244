"""Reports and dashboards: running a report definition through the query service's aggregation,
shaping the result (table, pivot, chart, KPI), drill-down to records, and exports."""
from .runner import Cell, ReportResult, ResultRow, can_view, check_view, drill_json, parse_drill, run_report

__all__ = ["Cell", "ReportResult", "ResultRow", "can_view", "check_view", "drill_json", "parse_drill", "run_report"]
