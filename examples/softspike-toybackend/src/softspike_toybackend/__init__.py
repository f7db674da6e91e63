"""A toy softspike backend (see docs/backends.md)."""
