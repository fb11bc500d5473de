"""Courtyard: run a fleet of small, independent apps as one system."""

__all__ = ["__version__"]

__version__ = "0.1.0"
