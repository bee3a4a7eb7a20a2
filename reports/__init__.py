"""Renders a results file into a self-contained HTML report (the report issue builds it)."""
