"""Product definitions (declarative TOML files) and scheduled workflows."""

from .job import Job, JobError, load_job
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
    "Job", "JobError", "load_job",
    "GridSpec", "InputSpec", "ModelSpec", "OutputClass", "OutputSpec", "Product", "ProductError",
    "StepSpec", "StitchSpec", "WindowSpec", "load_product", "parse_product", "product_names",
]
