"""mapgen workflows/products."""
