"""A Buck2 model on starlark-pyo3: loads real BUCK/.bzl files, analyses and builds targets."""
