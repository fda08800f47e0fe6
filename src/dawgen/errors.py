"""Errors that light modules (the CLI) catch without importing torch or transformers."""


class ModelLoadError(RuntimeError):
    """A model spec that cannot be loaded; the message says why and what to do."""
