"""Exceptions of the platform. Messages name the setting or input at fault and how to fix it."""

from __future__ import annotations


class LiveShopError(Exception):
    """Base class of the platform's own errors."""


class ConfigError(LiveShopError):
    """A setting read from the environment is missing or invalid."""

    def __init__(self, variable: str, problem: str) -> None:
        self.variable = variable
        self.problem = problem
        super().__init__(f"{variable}: {problem}")


class BusError(LiveShopError):
    """The message bus refused an operation (transient errors are retried by the caller)."""


class ReplayError(LiveShopError):
    """A file given to replay cannot be read as the format it claims to be."""
