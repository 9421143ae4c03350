"""The anatomy the census names: the thesis label schema (C2 ... S1 with L6 / L4-only variants),
regions and transitional statuses.
"""
