import numpy as np
import pytest

from training.baselines import improvement, mean_baseline, regression_errors


def test_regression_errors_by_hand():
    errors = regression_errors([1.0, 2.0, 3.0], [2.0, 2.0, 5.0])  # errors 1, 0, 2
    assert errors["mae"] == pytest.approx(1.0)
    assert errors["rmse"] == pytest.approx(np.sqrt(5 / 3))


def test_mean_baseline_uses_the_training_mean_per_column():
    train = np.array([[0.0, 10.0], [2.0, 30.0]])  # means 1 and 20
    errors = mean_baseline(train, np.array([[1.0, 24.0]]))  # errors 0 and 4
    assert errors["mae"] == pytest.approx(2.0) and errors["rmse"] == pytest.approx(np.sqrt(8))
    assert improvement(0.7, 1.0) == pytest.approx(0.3)
