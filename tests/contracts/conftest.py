"""Fixtures the contract tests share with the module tests of what they drive."""

from tests.search.conftest import mlp, mlp_dir, reference_ms, search_store  # noqa: F401 (fixtures)
