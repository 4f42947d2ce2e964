import pytest
import torch

from shortinfer import ArgumentError, gaussian_log_likelihood


@pytest.mark.parametrize(
    ("sigma", "match"),
    [
        (0.0, r"received 0\.0"),
        (-0.3, r"received -0\.3"),
        (float("nan"), r"received nan"),
        (torch.tensor(0.0), r"received \[0\.0\]"),
        (torch.tensor([0.3, -1.0, 0.3]), r"received \[0\.3.*-1\.0"),
    ],
)
def test_sigma_must_be_positive(sigma, match):
    x = torch.zeros(2, 3)
    with pytest.raises(ArgumentError, match="sigma must be positive and finite; " + match):
        gaussian_log_likelihood(x, x, sigma)


def test_sigma_of_the_wrong_type_is_refused():
    with pytest.raises(
        TypeError, match=r"sigma must be a positive float or a tensor; received '0.3'"
    ):
        gaussian_log_likelihood(torch.zeros(2, 3), torch.zeros(2, 3), "0.3")  # type: ignore[arg-type]


def test_positive_tensor_sigma_still_works_under_vmap():
    sigma = torch.tensor([0.5, 1.0, 2.0])
    x = torch.zeros(4, 2, 3)
    values = torch.func.vmap(lambda xb: gaussian_log_likelihood(xb, xb + 1, sigma))(x)
    assert values.shape == (4, 2)
