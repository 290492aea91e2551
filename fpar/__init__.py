"""fpar: everything inside a training or evaluation process."""

__version__ = "0.1.0"
