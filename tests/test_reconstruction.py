"""Tests for shortinfer.metrics._reconstruction."""

from __future__ import annotations

import pytest
import torch

from shortinfer.metrics import reconstruction_mse


def _pair(seed: int, shape: tuple[int, ...] = (3, 2, 4, 4)) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=generator) * 2 - 1
    return x, torch.rand(shape, generator=generator) * 2 - 1


def test_closed_form_without_mask() -> None:
    x = torch.zeros(2, 1, 1, 4)
    x_hat = torch.tensor([[[[1.0, -1.0, 0.0, 0.0]]], [[[0.5, 0.5, 0.5, 0.5]]]])
    result = reconstruction_mse(x, x_hat)
    assert result.shape == (2,)
    torch.testing.assert_close(result, torch.tensor([0.5, 0.25]))


def test_identical_images_give_zero() -> None:
    x, _ = _pair(0)
    assert torch.equal(reconstruction_mse(x, x.clone()), torch.zeros(3))


def test_batch_mean_is_mean_over_all_pixels_without_mask() -> None:
    x, x_hat = _pair(1)
    torch.testing.assert_close(reconstruction_mse(x, x_hat).mean(), (x - x_hat).square().mean())


def test_unit_scale_is_a_quarter_of_the_signed_scale() -> None:
    x, x_hat = _pair(2)
    torch.testing.assert_close(
        reconstruction_mse((x + 1) / 2, (x_hat + 1) / 2), reconstruction_mse(x, x_hat) / 4
    )


def test_mask_averages_over_selected_pixels_per_example() -> None:
    x, x_hat = _pair(3)
    mask = torch.zeros(3, 1, 4, 4)
    mask[0, :, :2] = 1  # top half of example 0, shared across channels
    mask[1] = 1
    mask[2, :, 0, 0] = 1
    result = reconstruction_mse(x, x_hat, mask=mask)
    squared = (x - x_hat).square()
    expected = torch.stack(
        [squared[0, :, :2].mean(), squared[1].mean(), squared[2, :, 0, 0].mean()]
    )
    torch.testing.assert_close(result, expected)


def test_sample_dimension_gives_one_value_per_sample_and_example() -> None:
    x, _ = _pair(4)
    x_hat = torch.stack([x, x + 1.0])
    torch.testing.assert_close(reconstruction_mse(x, x_hat), torch.tensor([[0.0] * 3, [1.0] * 3]))


def test_errors_name_what_was_received() -> None:
    x, x_hat = _pair(5)
    with pytest.raises(ValueError, match=r"shape of x, \(3, 2, 4, 4\).*received \(3, 2, 4\)"):
        reconstruction_mse(x, x_hat[..., 0])
    with pytest.raises(ValueError, match=r"mask with shape \(2, 3\) does not broadcast"):
        reconstruction_mse(x, x_hat, mask=torch.ones(2, 3))
    mask = torch.ones(3, 1, 4, 4)
    mask[1] = 0
    with pytest.raises(ValueError, match=r"no pixels for examples \[1\]"):
        reconstruction_mse(x, x_hat, mask=mask)
    with pytest.raises(TypeError, match="x must be floating point.*torch.uint8"):
        reconstruction_mse(torch.zeros(2, 3, dtype=torch.uint8), torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"at least one event dimension; received shape \(3,\)"):
        reconstruction_mse(torch.zeros(3), torch.zeros(3))
