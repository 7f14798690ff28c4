"""Cohorta: customer segmentation engine for loyalty programs and commerce."""

__version__ = "0.1.0"
