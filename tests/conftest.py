"""Shared test set-up. Helpers the policy tests share live in tests/helpers.py."""
