"""The config fuzzer's CI budget: 5,000 seeded cases (reproducible by number), zero
exceptions other than kubeloop's error and zero hangs (2 s per case). Longer runs by
hand: python -m tests.fuzz.config --cases 100000 --seed N."""

from tests.fuzz.config import fuzz


def test_the_config_loader_survives_5000_fuzzed_files() -> None:
    report = fuzz(cases=5000, seed=20261125, limit=2.0)
    assert not report.crashes and not report.hangs, report.summary()
    assert report.outcomes["loaded"] > 0 and report.outcomes["refused"] > 0
