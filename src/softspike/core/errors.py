"""The library's own error types: every bad input a user can give ends in one of these."""

from __future__ import annotations


class SoftspikeError(Exception):
    """Base of every error softspike raises on purpose."""


class ParameterError(SoftspikeError, ValueError):
    """A plugin was given parameters its schema rejects."""


class RegistryError(SoftspikeError):
    """A registration is invalid (bad name, taken name, missing params model)."""


class UnknownPluginError(SoftspikeError, LookupError):
    """A name that no registered plugin has."""


class StateError(SoftspikeError, ValueError):
    """Single-step state that does not fit the input (forgotten `reset()`)."""


class KernelInputError(SoftspikeError, ValueError):
    """Arguments a compiled kernel (a `torch.ops.softspike` operator) cannot take: wrong device,
    dtype, shape or value."""
