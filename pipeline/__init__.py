"""mapgen pipeline."""
