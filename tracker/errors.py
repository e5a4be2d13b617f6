"""Errors shared by modules that must not import each other's dependencies."""


class ConfigError(Exception):
    """A feeds.yaml problem, already phrased as ``file:line: field: message``."""
