"""Product definitions (declarative TOML files) and scheduled workflows."""

from .product import (
    GridSpec,
    InputSpec,
    ModelSpec,
    OutputClass,
    OutputSpec,
    Product,
    ProductError,
    StepSpec,
    StitchSpec,
    WindowSpec,
    load_product,
    parse_product,
    product_names,
)

__all__ = [
    "GridSpec", "InputSpec", "ModelSpec", "OutputClass", "OutputSpec", "Product", "ProductError",
    "StepSpec", "StitchSpec", "WindowSpec", "load_product", "parse_product", "product_names",
]
