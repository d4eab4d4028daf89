"""mapgen models."""
