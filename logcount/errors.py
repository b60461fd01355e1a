"""Domain errors. The CLI turns each into one line on stderr and a non-zero exit."""

from __future__ import annotations


class LogcountError(Exception):
    """Base of every error logcount reports to a user."""

    exit_code = 1


class ConfigError(LogcountError):
    """The configuration cannot be used (bad file, bad value, bad route)."""

    exit_code = 78  # EX_CONFIG: retrying will not help


class RedisUnavailable(LogcountError):
    """Redis could not be reached or answered with an error."""

    exit_code = 69  # EX_UNAVAILABLE


class StoreError(LogcountError):
    """The durable SQL store could not be used."""

    exit_code = 69
