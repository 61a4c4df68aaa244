"""Org structure: the org-unit tree, posts (岗位) carrying roles, and who belongs where."""
