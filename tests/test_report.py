"""Tests for shortinfer.train._report: grids, masks, masked inference, plots and summary."""

import sys

import pytest
import torch
from PIL import Image

from shortinfer.models import MultiLayerGenerator
from shortinfer.train._report import (
    INPAINTING_MASKS,
    image_grid,
    inpainting_mask,
    plot_objective_curves,
    plot_step_size_history,
    read_metrics,
    reconstruct,
    save_image_grid,
    write_report,
    write_summary,
)

torch.set_num_threads(1)


def _model():
    torch.manual_seed(0)
    return MultiLayerGenerator(image_size=28, channels=1, latent_sizes=(2, 3), num_filters=4)


def test_image_grid_places_and_scales_pixels():
    images = torch.stack(
        [torch.full((1, 2, 3), -1.0), torch.full((1, 2, 3), 1.0), torch.full((1, 2, 3), 0.0)]
    )
    grid = image_grid(images, num_columns=2, padding=1)
    assert grid.shape == (2 * 3 + 1, 2 * 4 + 1, 1) and grid.dtype == torch.uint8
    assert grid[1:3, 1:4].unique().tolist() == [0]  # image 0: -1 -> 0
    assert grid[1:3, 5:8].unique().tolist() == [255]  # image 1: 1 -> 255
    assert grid[4:6, 1:4].unique().tolist() == [128]  # image 2, second row: 0 -> 127.5 -> 128
    assert grid[0].unique().tolist() == [255] and grid[:, 4].unique().tolist() == [255]
    assert grid[4:6, 5:8].unique().tolist() == [255]  # the empty cell is padding


def test_image_grid_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"\(N, C, H, W\).*received \(2, 28, 28\)"):
        image_grid(torch.zeros(2, 28, 28))
    with pytest.raises(ValueError, match="C in"):
        image_grid(torch.zeros(2, 2, 4, 4))


def test_save_image_grid_writes_an_upscaled_png(tmp_path):
    path = save_image_grid(
        torch.zeros(4, 3, 8, 8), tmp_path / "sub" / "g.png", num_columns=2, padding=2, scale=3
    )
    with Image.open(path) as picture:
        assert picture.format == "PNG" and picture.mode == "RGB"
        assert picture.size == (3 * (2 * 10 + 2), 3 * (2 * 10 + 2))


@pytest.mark.parametrize(
    ("pattern", "missing"), [("centre", 0.25), ("left", 0.5), ("bottom", 0.5), ("random", 0.5)]
)
def test_mask_patterns_hide_the_documented_fraction(pattern, missing):
    mask = inpainting_mask(pattern, (4, 3, 28, 28), generator=torch.Generator().manual_seed(0))
    assert mask.shape == (4, 1, 28, 28)
    assert set(mask.unique().tolist()) == {0.0, 1.0}
    assert float(1 - mask.mean()) == pytest.approx(missing, abs=0.03)


def test_mask_regions():
    centre = inpainting_mask("centre", (1, 1, 8, 8))[0, 0]
    assert centre[2:6, 2:6].sum() == 0 and centre.sum() == 48
    assert inpainting_mask("bottom", (1, 1, 8, 8))[0, 0, 4:].sum() == 0
    assert inpainting_mask("bottom", (1, 1, 8, 8))[0, 0, :4].sum() == 32
    assert set(INPAINTING_MASKS) == {"centre", "left", "bottom", "random"}
    with pytest.raises(ValueError, match="pattern must be one of"):
        inpainting_mask("top", (1, 1, 8, 8))  # type: ignore[arg-type]


def test_masked_reconstruction_ignores_missing_pixels():
    model = _model()
    x = torch.tanh(torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(1)))
    mask = inpainting_mask("left", tuple(x.shape))
    scribbled = torch.where(mask.bool(), x, torch.ones_like(x))  # change only missing pixels

    def run(images, use_mask=True):
        return reconstruct(
            model,
            images,
            num_steps=4,
            step_size=0.01,
            mask=mask if use_mask else None,
            generator=torch.Generator().manual_seed(2),
        )

    torch.testing.assert_close(run(x), run(scribbled))
    assert not torch.allclose(run(x, use_mask=False), run(scribbled, use_mask=False))
    assert all(p.requires_grad for p in model.parameters())


def test_reconstruct_in_chunks_matches_shape():
    out = reconstruct(
        _model(), torch.zeros(5, 1, 28, 28), num_steps=2, step_size=0.01, batch_size=2
    )
    assert out.shape == (5, 1, 28, 28) and float(out.abs().max()) <= 1.0


def test_plots_write_pngs(tmp_path):
    history = [(0, 0.02, 10.0), (5, 0.05, 8.0), (10, {"z2": 0.04, "z1": 0.06}, 7.0)]
    traces = [
        {
            "iteration": 0,
            "method": "grid",
            "step_sizes": torch.tensor([0.01, 0.02, 0.04]),
            "objectives": torch.tensor([5.0, 4.0, float("inf")]),
        },
        {
            "iteration": 5,
            "method": "gradient",
            "step_sizes": torch.tensor([0.02, 0.03, 0.035]),
            "objectives": torch.tensor([4.0, 3.5]),
        },
    ]
    for path in (
        plot_step_size_history(history, tmp_path / "s.png"),
        plot_objective_curves(traces, tmp_path / "j.png"),
    ):
        with Image.open(path) as picture:
            assert picture.format == "PNG" and picture.size[0] > 100
    with pytest.raises(ValueError, match="traces is empty"):
        plot_objective_curves([], tmp_path / "none.png")


def test_missing_matplotlib_gives_install_hint(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"shortinfer\[demo\]"):
        plot_step_size_history([(0, 0.1, 1.0)], tmp_path / "s.png")


def test_missing_pillow_gives_install_hint(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(ImportError, match="Pillow"):
        save_image_grid(torch.zeros(1, 1, 4, 4), tmp_path / "g.png")


def test_summary_and_metrics_reader(tmp_path):
    path = write_summary(
        tmp_path / "summary.md",
        title="T",
        figures={"MSE": 0.012345},
        settings={"K": 25, "grid": "a|b"},
        images={"Samples": "samples.png"},
    )
    text = path.read_text()
    assert "| MSE | 0.01235 |" in text and "| grid | a\\|b |" in text
    assert "![Samples](samples.png)" in text
    (tmp_path / "m.jsonl").write_text('{"iteration": 1, "loss": 2.0}\n{"iteration": 2, "lo')
    assert read_metrics(tmp_path / "m.jsonl") == [{"iteration": 1, "loss": 2.0}]


def test_write_report_files_and_mse(tmp_path):
    model = _model()
    test_images = torch.tanh(torch.randn(6, 1, 28, 28, generator=torch.Generator().manual_seed(3)))
    (tmp_path / "metrics.jsonl").write_text('{"iteration": 1, "loss": 3.0, "mse": 0.5}\n')
    traces = [
        {
            "iteration": 0,
            "method": "grid",
            "step_sizes": torch.tensor([0.01, 0.02]),
            "objectives": torch.tensor([2.0, 1.0]),
        }
    ]
    out = write_report(
        model,
        tmp_path,
        test_images=test_images,
        num_steps=2,
        step_size=0.01,
        history=[(0, 0.02, 1.0)],
        traces=traces,
        num_images=4,
        figures={"wall time (s)": 1.5},
        settings={"K": 2},
    )
    names = {p.name for p in out["files"]}
    inpainting = {f"inpainting-{p}.png" for p in INPAINTING_MASKS}
    assert (
        names
        == {
            "samples.png",
            "reconstructions.png",
            "step_size.png",
            "objective.png",
            "training.png",
            "summary.md",
        }
        | inpainting
    )
    assert all((tmp_path / name).is_file() for name in names)
    # The reported MSE is the per-pixel error of the reconstructions on the [-1, 1] scale.
    recon = reconstruct(
        model, test_images, num_steps=2, step_size=0.01, generator=torch.Generator().manual_seed(1)
    )
    assert out["mse"] == pytest.approx(float((recon - test_images).square().mean()), rel=1e-5)
    summary = (tmp_path / "summary.md").read_text()
    assert "held-out reconstruction MSE (per pixel, [-1, 1] scale)" in summary
    assert "| wall time (s) | 1.5 |" in summary
