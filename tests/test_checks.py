import ast
from pathlib import Path

import pytest
import torch

import shortinfer._checks
from shortinfer._checks import (
    MAX_ABS_LATENT,
    ChainMonitor,
    check_choice,
    check_int,
    check_mode,
    find_divergence,
)


@pytest.mark.parametrize(
    ("value", "match"),
    [(0, r"received 0 \(int\)"), (2.5, r"received 2\.5 \(float\)"), (True, r"received True")],
)
def test_check_int_is_both_type_and_value_error(value, match):
    for error in (TypeError, ValueError):
        with pytest.raises(error, match=r"count must be an int >= 1; " + match + r".*Pass 4"):
            check_int("count", value, hint="Pass 4.")


def test_check_mode_and_choice_list_the_choices():
    with pytest.raises(
        ValueError, match=r"mode must be 'reverse' or 'forward'; received 'sideways'"
    ):
        check_mode("sideways")
    with pytest.raises(ValueError, match=r"method must be 'a' or 'b'; received 3"):
        check_choice("method", 3, ("a", "b"))


def test_checks_imports_no_other_shortinfer_module():
    # The former cycle _checks -> bounds -> entropy -> _checks: _checks must stand alone.
    tree = ast.parse(Path(shortinfer._checks.__file__).read_text(encoding="utf-8"))
    imported = [
        node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
    ] + [
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    ]
    assert imported and not [name for name in imported if name.startswith("shortinfer")]


def test_monitor_flags_a_non_finite_density_without_reading_it_per_step():
    monitor = ChainMonitor(lambda z: torch.log(1 - z).sum(-1))
    monitor(torch.zeros(2, 1))
    monitor(torch.full((2, 1), 2.0))  # log(-1): NaN, folded into the flag, not read yet
    assert isinstance(monitor.flag, torch.Tensor)
    assert not monitor.healthy(torch.zeros(2, 1))


def test_replay_names_each_kind_of_divergence():
    assert find_divergence(lambda k, z: z * 0 + float("nan"), torch.ones(2, 1), 3)[::2] == (
        1,
        "z became NaN or infinite",
    )
    first, count, what = find_divergence(lambda k, z: 10 * z, torch.ones(3, 1), 20)
    assert (first, count) == (11, 3) and f"{MAX_ABS_LATENT:.0e}" in what
    first, _, what = find_divergence(
        lambda k, z: z + 1, torch.zeros(1, 1), 5, lambda z: torch.log(2.5 - z).sum(-1)
    )
    assert first == 3 and "became nan while z stayed finite" in what
