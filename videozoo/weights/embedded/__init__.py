"""Weights shipped inside the package (read with importlib.resources, never downloaded)."""
