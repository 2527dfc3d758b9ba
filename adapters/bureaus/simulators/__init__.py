"""Loopback simulators of the credit bureaus (tests, the bench and the demo run against them)."""
