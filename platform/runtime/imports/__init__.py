"""Spreadsheet imports: streaming readers, column mapping, the batched and resumable engine, error reports, the job."""
from .engine import ImportEngine, Summary
from .mapping import auto_map, saved_mappings, save_mapping
from .reader import open_table

__all__ = ["ImportEngine", "Summary", "auto_map", "open_table", "save_mapping", "saved_mappings"]
