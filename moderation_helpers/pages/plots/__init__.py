"""Figures for each step: ``distribution`` (prepare), ``loss`` (monitor), ``evaluation`` (infer)."""
