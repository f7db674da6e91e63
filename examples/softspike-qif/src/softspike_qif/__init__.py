"""Example third-party softspike plugin."""
