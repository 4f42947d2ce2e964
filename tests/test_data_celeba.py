"""Tests for shortinfer.data._celeba: layouts, partitions, crop/resize, subset, cache, fixture."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch

from shortinfer.data import _celeba as celeba_module
from shortinfer.data import load_celeba

from ._data_helpers import assert_second_load_reads_the_cache
from .fixtures import make_synthetic_celeba

Image = pytest.importorskip("PIL.Image")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHORTINFER_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def celeba_root(tmp_path: Path) -> Path:
    return make_synthetic_celeba(tmp_path / "data", num_images=10, seed=0)


def test_synthetic_fixture_layout_and_determinism(tmp_path: Path) -> None:
    root = make_synthetic_celeba(tmp_path / "a", num_images=10, seed=7)
    image_dir = root / "celeba" / "img_align_celeba"
    names = sorted(p.name for p in image_dir.iterdir())
    assert names == [f"{i:06d}.jpg" for i in range(1, 11)]
    with Image.open(image_dir / "000001.jpg") as image:
        assert image.format == "JPEG" and image.size == (178, 218) and image.mode == "RGB"
    lines = (root / "celeba" / "list_eval_partition.txt").read_text().splitlines()
    # 10 * 162770 // 202599 = 8 train, 10 * 182637 // 202599 = 9 -> 1 valid, 1 test.
    assert [line.split()[1] for line in lines] == ["0"] * 8 + ["1", "2"]
    same = make_synthetic_celeba(tmp_path / "b", num_images=10, seed=7)
    other = make_synthetic_celeba(tmp_path / "c", num_images=10, seed=8)
    first = (image_dir / "000003.jpg").read_bytes()
    assert (same / "celeba" / "img_align_celeba" / "000003.jpg").read_bytes() == first
    assert (other / "celeba" / "img_align_celeba" / "000003.jpg").read_bytes() != first
    with pytest.raises(FileExistsError, match="never overwrites images"):
        make_synthetic_celeba(root, num_images=2)
    with pytest.raises(ValueError, match="num_images must be >= 1, got 0"):
        make_synthetic_celeba(tmp_path / "d", num_images=0)


def test_splits_shapes_and_range(celeba_root: Path) -> None:
    train = load_celeba(celeba_root, split="train", image_size=32)
    assert train.images.shape == (8, 3, 32, 32)
    assert train.labels is None
    assert train.images.dtype == torch.float32
    assert -1.0 <= train.images.min() and train.images.max() <= 1.0
    assert load_celeba(celeba_root, split="valid", image_size=32).images.shape[0] == 1
    assert load_celeba(celeba_root, split="test", image_size=32).images.shape[0] == 1
    everything = load_celeba(celeba_root, split="all")
    assert everything.images.shape == (10, 3, 64, 64)
    torch.testing.assert_close(
        everything.images[:8], load_celeba(celeba_root, image_size=64).images, atol=0, rtol=0
    )


def test_crop_then_resize_matches_a_direct_pillow_pipeline(celeba_root: Path) -> None:
    data = load_celeba(celeba_root, split="test", image_size=32, crop="148")
    with Image.open(celeba_root / "celeba" / "img_align_celeba" / "000010.jpg") as handle:
        image = handle.convert("RGB")
    # torchvision CenterCrop(148) on 178x218: left round(15) = 15, top round(35) = 35.
    expected = image.crop((15, 35, 163, 183)).resize((32, 32), resample=Image.BILINEAR)
    array = torch.from_numpy(np.array(expected)).permute(2, 0, 1).float() / 127.5 - 1.0
    torch.testing.assert_close(data.images[0], array, atol=0, rtol=0)


def test_crop_selects_the_center_exactly(tmp_path: Path) -> None:
    root = tmp_path / "bare"
    root.mkdir()
    array = np.zeros((218, 178, 3), dtype=np.uint8)
    array[39 : 39 + 140, 19 : 19 + 140] = 255  # exactly the torchvision 140x140 center crop
    array[0, 0] = (10, 20, 30)
    Image.fromarray(array).save(root / "000001.png")
    cropped = load_celeba(root, split="all", image_size=140, crop="140")
    assert torch.all(cropped.images == 1.0)
    assert load_celeba(root, split="all", image_size=140, crop=148).images.min() == -1.0
    whole = load_celeba(root, split="all", image_size=(218, 178), crop="none")
    expected = torch.from_numpy(array).permute(2, 0, 1).float() / 127.5 - 1.0
    torch.testing.assert_close(whole.images[0], expected, atol=0, rtol=0)


def test_bare_folder_uses_the_file_name_rule(tmp_path: Path, celeba_root: Path) -> None:
    image_dir = celeba_root / "celeba" / "img_align_celeba"
    (celeba_root / "celeba" / "list_eval_partition.txt").unlink()
    # Without a partition file the same fractions apply: 8 train, 1 valid, 1 test.
    for layout in (celeba_root, celeba_root / "celeba", image_dir):
        assert load_celeba(layout, split="train", image_size=8).images.shape[0] == 8
    test = load_celeba(image_dir, split="test", image_size=8)
    with_file = make_synthetic_celeba(tmp_path / "again", num_images=10, seed=0)
    torch.testing.assert_close(
        test.images, load_celeba(with_file, split="test", image_size=8).images, atol=0, rtol=0
    )


def test_rule_reproduces_the_official_partition() -> None:
    names = [f"{i:06d}.jpg" for i in range(1, 202_600)]
    codes = [code for _, code in celeba_module._split_by_rule(names)]
    assert (codes.count(0), codes.count(1), codes.count(2)) == (162_770, 19_867, 19_962)
    assert codes[162_769] == 0 and codes[162_770] == 1
    assert codes[182_636] == 1 and codes[182_637] == 2


def test_partition_file_is_followed(celeba_root: Path) -> None:
    partition = celeba_root / "celeba" / "list_eval_partition.txt"
    partition.write_text("".join(f"{i:06d}.jpg {2 if i <= 3 else 0}\n" for i in range(1, 11)))
    test = load_celeba(celeba_root, split="test", image_size=8)
    everything = load_celeba(celeba_root, split="all", image_size=8)
    assert test.images.shape[0] == 3
    torch.testing.assert_close(test.images, everything.images[:3], atol=0, rtol=0)


def test_subset_takes_the_first_images_by_name(celeba_root: Path) -> None:
    train = load_celeba(celeba_root, split="train", image_size=16)
    subset = load_celeba(celeba_root, split="train", image_size=16, subset=5)
    assert subset.images.shape == (5, 3, 16, 16)
    torch.testing.assert_close(subset.images, train.images[:5], atol=0, rtol=0)
    with pytest.raises(ValueError, match="subset=9 but split 'train' has only 8 images"):
        load_celeba(celeba_root, split="train", subset=9)
    with pytest.raises(ValueError, match="subset must be positive"):
        load_celeba(celeba_root, subset=0)


def test_second_load_hits_the_cache(celeba_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    load = functools.partial(load_celeba, celeba_root, image_size=16, num_workers=0)
    assert_second_load_reads_the_cache(load, monkeypatch)
    with pytest.raises(AssertionError, match="cache was not used"):
        load_celeba(celeba_root, image_size=16, crop="none", num_workers=0)


def test_worker_processes_give_the_same_result(celeba_root: Path) -> None:
    serial = load_celeba(celeba_root, split="all", image_size=16, num_workers=0, use_cache=False)
    parallel = load_celeba(celeba_root, split="all", image_size=16, num_workers=2, use_cache=False)
    torch.testing.assert_close(serial.images, parallel.images, atol=0, rtol=0)


def test_layout_and_partition_errors(tmp_path: Path, celeba_root: Path) -> None:
    with pytest.raises(FileNotFoundError, match="CelebA root .* does not exist"):
        load_celeba(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no CelebA images under"):
        load_celeba(tmp_path / "empty")
    partition = celeba_root / "celeba" / "list_eval_partition.txt"
    partition.write_text("000001.jpg 0\n000002.jpg train\n")
    with pytest.raises(ValueError, match=r"line 2: expected '<file name> <0\|1\|2>'"):
        load_celeba(celeba_root)
    partition.write_text("000001.jpg 0\n999999.jpg 0\n")
    with pytest.raises(FileNotFoundError, match="1 image.* missing .*first: 999999.jpg"):
        load_celeba(celeba_root)


def test_corrupt_or_small_images_are_errors(tmp_path: Path, celeba_root: Path) -> None:
    image_dir = celeba_root / "celeba" / "img_align_celeba"
    (image_dir / "000002.jpg").write_bytes(b"\xff\xd8\xff broken")
    with pytest.raises(ValueError, match=r"could not decode image .*000002\.jpg"):
        load_celeba(celeba_root, image_size=8)
    small = tmp_path / "small"
    small.mkdir()
    Image.new("RGB", (100, 120)).save(small / "a.png")
    with pytest.raises(ValueError, match="100×120 .*smaller than the 140×140 center crop"):
        load_celeba(small, split="all")


def test_option_errors(celeba_root: Path) -> None:
    with pytest.raises(ValueError, match="crop must be one of 'none', '140', '148', got '128'"):
        load_celeba(celeba_root, crop="128")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="split must be one of 'train', 'valid', 'test', 'all'"):
        load_celeba(celeba_root, split="val")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="image_size must be given for CelebA"):
        load_celeba(celeba_root, image_size=None)  # type: ignore[arg-type]
