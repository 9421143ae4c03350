"""Seeded synthetic whole-spine MRI with exact ground truth: anatomy model, renderer, cohort
writer.
"""
