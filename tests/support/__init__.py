"""Helpers shared by the test suite: fakes and fixtures that stand in for real services."""
