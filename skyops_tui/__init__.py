"""Skyops: operator console for a self-hosted GPU grid."""

__version__ = "0.1.0"
