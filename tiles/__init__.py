"""mapgen tiles."""
