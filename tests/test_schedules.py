"""Tests for shortinfer.train._schedules: the paper's learning-rate decay and sigma annealing."""

import pytest

from shortinfer.train._schedules import (
    LearningRateSchedule,
    SigmaSchedule,
    annealed_sigma,
    step_decay_learning_rate,
)


def test_paper_learning_rates_at_paper_length():
    # Appendix 7.1: 1e-4, 5e-5, 1e-5 for each 1e5 of T = 3e5 iterations.
    total = 300_000
    assert step_decay_learning_rate(0, total) == pytest.approx(1e-4)
    assert step_decay_learning_rate(99_999, total) == pytest.approx(1e-4)
    assert step_decay_learning_rate(100_000, total) == pytest.approx(5e-5)
    assert step_decay_learning_rate(199_999, total) == pytest.approx(5e-5)
    assert step_decay_learning_rate(200_000, total) == pytest.approx(1e-5)
    assert step_decay_learning_rate(299_999, total) == pytest.approx(1e-5)


@pytest.mark.parametrize("total", [3, 10, 100, 301])
def test_boundaries_scale_with_run_length(total):
    rates = [step_decay_learning_rate(t, total, base=1.0) for t in range(total)]
    assert rates[0] == 1.0 and rates[-1] == pytest.approx(0.1)
    # The first drop is at ceil(T/3), the second at ceil(2T/3).
    first = rates.index(0.5)
    second = next(i for i, r in enumerate(rates) if r == pytest.approx(0.1))
    assert first == -(-total // 3)
    assert second == -(-2 * total // 3)
    assert sorted(rates, reverse=True) == rates  # never increases


def test_iterations_past_the_end_keep_the_last_rate():
    assert step_decay_learning_rate(1000, 10, base=2.0) == pytest.approx(0.2)


def test_custom_factors_and_base():
    schedule = LearningRateSchedule(base=1e-3, factors=(1.0, 0.1))
    assert schedule(0, 10) == pytest.approx(1e-3)
    assert schedule(5, 10) == pytest.approx(1e-4)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"base": 0.0}, "base must be a positive"),
        ({"base": -1e-4}, "base must be a positive"),
        ({"factors": ()}, "factors is empty"),
        ({"factors": (1.0, -0.5)}, r"factors\[1\]"),
    ],
)
def test_learning_rate_rejects_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        step_decay_learning_rate(0, 10, **kwargs)


def test_learning_rate_rejects_bad_iteration_and_length():
    with pytest.raises(ValueError, match="num_iterations must be an int >= 1"):
        step_decay_learning_rate(0, 0)
    with pytest.raises(ValueError, match="iteration must be an int >= 0"):
        step_decay_learning_rate(-1, 10)
    with pytest.raises(TypeError, match="num_iterations must be an int"):
        step_decay_learning_rate(0, 10.0)  # type: ignore[arg-type]


def test_sigma_anneals_linearly_over_first_half_then_holds():
    total = 200
    values = [annealed_sigma(t, total) for t in range(total)]
    assert values[0] == pytest.approx(0.3)
    assert values[50] == pytest.approx(0.225)
    assert values[100] == pytest.approx(0.15)
    assert all(v == pytest.approx(0.15) for v in values[100:])
    differences = [a - b for a, b in zip(values[:100], values[1:101], strict=True)]
    assert all(d == pytest.approx(0.15 / 100) for d in differences)


def test_sigma_zero_fraction_starts_at_end_value():
    assert annealed_sigma(0, 10, anneal_fraction=0.0) == pytest.approx(0.15)


def test_sigma_schedule_object_matches_function():
    schedule = SigmaSchedule(start=0.5, end=0.1, anneal_fraction=1.0)
    for t in (0, 3, 7, 9):
        assert schedule(t, 10) == annealed_sigma(t, 10, start=0.5, end=0.1, anneal_fraction=1.0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"start": 0.0}, "start must be a positive"),
        ({"end": -0.1}, "end must be a positive"),
        ({"anneal_fraction": 1.5}, r"anneal_fraction must be a float in \[0, 1\]"),
    ],
)
def test_sigma_rejects_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        annealed_sigma(0, 10, **kwargs)
