"""Connectors, one small module per system; found by name through ``registry``."""
