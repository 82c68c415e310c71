"""Connectors to external systems: each an interface, an embedded default and the real client."""
