"""Marks lua/ as a package, so importlib.resources finds the scripts."""
