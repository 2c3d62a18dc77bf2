"""Bounded, seeded fuzzers: a pytest budget in CI, longer runs by hand."""
