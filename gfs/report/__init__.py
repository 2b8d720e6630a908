"""REPORT.md: each figure's claims (claims_fig*.py), the statistics Figs. 3-9 share (toy_rules.py) and
the verdict machinery and tables (verdict_rules.py)."""
