"""Test-session settings shared by every test module."""
import pytest


def pytest_collection_modifyitems(config, items):
    """Every test on a graded batch (tests/test_autograder.py's module-scoped ``batch`` fixture,
    about two minutes to build per assignment) runs on one xdist worker (``--dist loadgroup`` in
    the Makefile): with plain load balancing both workers built the same batch."""
    for item in items:
        if "batch" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("grading-batches"))
