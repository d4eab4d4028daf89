"""Product definitions (declarative TOML files) and scheduled workflows."""

from .dates import DateError, parse_dates, series_dates
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
    TaskSpec,
    WindowSpec,
    load_product,
    parse_product,
    product_names,
)

__all__ = [
    "DateError", "Job", "JobError", "load_job", "parse_dates", "series_dates",
    "GridSpec", "InputSpec", "ModelSpec", "OutputClass", "OutputSpec", "Product", "ProductError",
    "StepSpec", "StitchSpec", "TaskSpec", "WindowSpec", "load_product", "parse_product", "product_names",
]
