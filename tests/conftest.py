"""Shared fixtures: every test gets its own data directory and nothing leaks between tests."""
