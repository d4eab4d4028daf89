"""mapgen workflows."""
