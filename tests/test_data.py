"""Tests for course_lib.data: the procedural shapes, the Dataset wrapper, real-data loaders, photos."""
import hashlib
import pickle
import socket

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision.transforms import v2

from course_lib import data
from course_lib.data import (N_CLASSES, SHAPE_CLASSES, SHAPES_MEAN, SHAPES_STD, ShapesDataset,
                             denormalize, load_cifar10, load_dataset, load_stl10, make_shapes, normalize,
                             sample_photos, to_float)


@pytest.fixture(scope="module")
def shapes32():
    return make_shapes(1000, 32, seed=0)


def object_colour_is_flat(images, masks):
    """Every masked pixel of an image has the same RGB value: the object is one flat colour."""
    pix = images.permute(0, 2, 3, 1)  # (B, H, W, 3)
    for img, mask in zip(pix, masks):
        under = img[mask]  # (n_pixels, 3)
        if under.shape[0] == 0 or not (under == under[0]).all():
            return False
    return True


# --- make_shapes -----------------------------------------------------------------------------
def test_shapes_dtypes_and_class_list(shapes32):
    images, labels, masks = shapes32
    assert images.shape == (1000, 3, 32, 32) and images.dtype == torch.uint8
    assert labels.shape == (1000,) and labels.dtype == torch.int64
    assert masks.shape == (1000, 32, 32) and masks.dtype == torch.bool
    assert len(SHAPE_CLASSES) == N_CLASSES >= 8 and len(set(SHAPE_CLASSES)) == N_CLASSES
    assert labels.min() == 0 and labels.max() == N_CLASSES - 1


def test_labels_exactly_balanced_per_thousand(shapes32):
    assert torch.bincount(shapes32[1], minlength=N_CLASSES).tolist() == [100] * N_CLASSES


def test_deterministic_and_seed_dependent():
    a, b = make_shapes(50, 48, seed=3), make_shapes(50, 48, seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    c = make_shapes(50, 48, seed=4)
    assert not torch.equal(a[0], c[0]) and not torch.equal(a[2], c[2])
    test = make_shapes(50, 48, seed=3, split="test")
    assert not torch.equal(a[0], test[0])


def test_image_i_does_not_depend_on_n():
    # 10 images render in one chunk of 10; 2100 images span 3 parameter blocks and 2 render chunks
    small, large = make_shapes(10, 32, seed=7), make_shapes(2100, 32, seed=7)
    assert all(torch.equal(s, big[:10]) for s, big in zip(small, large))
    mid = make_shapes(1001, 32, seed=7)  # the first image of the second block
    assert all(torch.equal(m[1000], big[1000]) for m, big in zip(mid, large))


def test_masks_are_exactly_the_flat_object(shapes32):
    images, _, masks = shapes32
    assert object_colour_is_flat(images, masks)
    # outside the mask the object's colour is rare (it is chosen far from the background)
    pix = images.permute(0, 2, 3, 1).reshape(1000, -1, 3)  # (B, H*W, 3)
    first = masks.flatten(1).float().argmax(1)  # index of one masked pixel per image
    colour = pix[torch.arange(1000), first]  # (B, 3)
    same = (pix == colour[:, None]).all(2)  # (B, H*W)
    assert torch.equal(same & masks.flatten(1), masks.flatten(1))
    assert (same & ~masks.flatten(1)).float().mean() < 0.01


def test_clutter_zero_gives_the_same_objects_on_a_flat_background():
    images, labels, masks = make_shapes(30, 32, seed=5, clutter=0.0)
    cluttered = make_shapes(30, 32, seed=5)
    assert torch.equal(labels, cluttered[1]) and torch.equal(masks, cluttered[2])
    background = images.permute(0, 2, 3, 1)[~masks]  # (n_pixels, 3), all images together
    per_image = [images[i].flatten(1)[:, ~masks[i].flatten()].unique(dim=1).shape[1] for i in range(30)]
    assert per_image == [1] * 30 and background.shape[0] > 0


def test_object_area_fraction_bounds(shapes32):
    fraction = shapes32[2].float().mean((1, 2))
    assert fraction.min() > 0.09 and fraction.max() < 0.31
    # the size distribution is the same for every class (so pixel counts do not give the class)
    per_class = torch.stack([fraction[shapes32[1] == c].mean() for c in range(N_CLASSES)])
    assert per_class.max() - per_class.min() < 0.03


def test_grey_and_one_size_change_only_the_colour_and_the_size():
    images, labels, masks = make_shapes(200, 32, seed=3, clutter=0.0)
    grey, grey_labels, grey_masks = make_shapes(200, 32, seed=3, clutter=0.0, colour="grey")
    assert torch.equal(grey_labels, labels) and torch.equal(grey_masks, masks)   # same scenes
    assert torch.equal(grey, torch.where(masks.unsqueeze(1), torch.tensor(220, dtype=torch.uint8),
                                         torch.tensor(50, dtype=torch.uint8)).expand_as(grey))
    _, sized_labels, sized_masks = make_shapes(200, 32, seed=3, clutter=0.0, area=0.2)
    assert torch.equal(sized_labels, labels)
    fraction = sized_masks.float().mean((1, 2))
    # a few long shapes are shrunk to fit the frame, and pixels are counted on a 32 x 32 grid
    assert (fraction - 0.2).abs().median() < 0.005 and (fraction < 0.21).all(), fraction
    assert fraction.std() < 0.3 * masks.float().mean((1, 2)).std()
    per_class = torch.stack([fraction[labels == c].mean() for c in range(N_CLASSES)])
    assert per_class.max() - per_class.min() < 0.03


def test_same_scene_at_every_resolution():
    small, large = make_shapes(40, 32, seed=1), make_shapes(40, 128, seed=1)
    assert torch.equal(small[1], large[1])
    down = F.avg_pool2d(large[2].float().unsqueeze(1), 4).squeeze(1) > 0.5  # (B, 32, 32)
    inter = (down & small[2]).flatten(1).sum(1).float()
    union = (down | small[2]).flatten(1).sum(1).float()
    assert (inter / union).min() > 0.8


def test_disks_are_ellipses_and_squares_rectangles():
    """Independent geometry check from second moments: a filled ellipse with semi-axes a, b has
    area pi*a*b = 4*pi*sqrt(det Cov); a filled w x h rectangle has w*h = 12*sqrt(det Cov)."""
    images, labels, masks = make_shapes(120, 64, seed=2)
    for name, ratio in (("disk", 4 * np.pi), ("square", 12.0)):
        for mask in masks[labels == SHAPE_CLASSES.index(name)]:
            yx = mask.nonzero().double()  # (n_pixels, 2)
            det = torch.linalg.det(torch.cov(yx.T))
            assert float(ratio * det.sqrt() / yx.shape[0]) == pytest.approx(1.0, abs=0.04), name


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**40), size=st.integers(32, 128), n=st.integers(1, 3))
def test_any_seed_and_size_gives_valid_masks(seed, size, n):
    images, labels, masks = make_shapes(n, size, seed)
    assert images.shape == (n, 3, size, size) and masks.shape == (n, size, size)
    fraction = masks.float().mean((1, 2))
    assert (fraction > 0.09).all() and (fraction < 0.31).all()
    assert object_colour_is_flat(images, masks)
    assert ((labels >= 0) & (labels < N_CLASSES)).all()


@pytest.mark.parametrize("kwargs, name", [
    (dict(n=0), "n"), (dict(n=-3), "n"), (dict(n=2.5), "n"), (dict(n=True), "n"),
    (dict(n=4, image_size=31), "image_size"), (dict(n=4, image_size=129), "image_size"),
    (dict(n=4, seed=-1), "seed"), (dict(n=4, split="val"), "split"), (dict(n=4, clutter=1.5), "clutter"),
    (dict(n=4, colour="blue"), "colour"), (dict(n=4, colour="grey"), "clutter"),
    (dict(n=4, clutter=0, area=0.5), "area"), (dict(n=4, clutter=0, area=0.01), "area"),
    (dict(n=4, clutter=0, area=True), "area"), (dict(n=4, clutter=0, area="0.2"), "area")])
def test_bad_arguments_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=f"^{name} must"):
        make_shapes(**kwargs)


def test_colour_histogram_baseline_is_near_chance():
    """Colour alone must not give the class: a nearest-centroid classifier on 64-bin joint RGB
    histograms stays below twice chance (it measures ~0.11 with 10 classes)."""
    def histogram(images, bins=4):
        q = images.long() * bins // 256  # (B, 3, H, W) in [0, bins)
        index = ((q[:, 0] * bins + q[:, 1]) * bins + q[:, 2]).flatten(1)  # (B, H*W)
        index = index + bins**3 * torch.arange(len(images)).unsqueeze(1)  # one bin range per image
        counts = torch.bincount(index.flatten(), minlength=len(images) * bins**3)
        return counts.view(len(images), bins**3).float() / index.shape[1]  # (B, bins^3)

    train_x, train_y, _ = make_shapes(2000, 32, seed=0)
    test_x, test_y, _ = make_shapes(1000, 32, seed=0, split="test")
    h_train, h_test = histogram(train_x), histogram(test_x)
    centroids = torch.stack([h_train[train_y == c].mean(0) for c in range(N_CLASSES)])
    accuracy = (torch.cdist(h_test, centroids).argmin(1) == test_y).float().mean().item()
    assert accuracy < 2.0 / N_CLASSES, accuracy


# --- tensors to model inputs -----------------------------------------------------------------
def test_mean_std_constants_match_the_data():
    x = to_float(make_shapes(2000, 32, seed=11)[0])  # (B, 3, H, W)
    assert torch.allclose(x.mean((0, 2, 3)), torch.tensor(SHAPES_MEAN), atol=0.01)
    assert torch.allclose(x.std((0, 2, 3)), torch.tensor(SHAPES_STD), atol=0.01)


def test_to_float_and_normalize():
    images = torch.randint(0, 256, (2, 3, 5, 5), dtype=torch.uint8)
    assert torch.equal(to_float(images), images.float() / 255)
    expected = (images.float() / 255 - torch.tensor(SHAPES_MEAN).view(3, 1, 1)) / torch.tensor(SHAPES_STD).view(3, 1, 1)
    assert torch.allclose(normalize(images), expected)
    assert normalize(to_float(images, dtype=torch.bfloat16)).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="images"):
        to_float(images.float())
    with pytest.raises(ValueError, match="images"):
        normalize(torch.zeros(2, 4, 5, 5))


def test_denormalize_undoes_normalize_and_clamps_to_the_unit_range():
    images = torch.randint(0, 256, (2, 3, 5, 5), dtype=torch.uint8)
    assert torch.allclose(denormalize(normalize(images)), images.float() / 255, atol=1e-6)
    by_hand = (torch.full((1, 3, 1, 1), 9.0) * torch.tensor(SHAPES_STD).view(1, 3, 1, 1)
               + torch.tensor(SHAPES_MEAN).view(1, 3, 1, 1))
    assert by_hand.min() > 1 and torch.equal(denormalize(torch.full((1, 3, 1, 1), 9.0)),
                                             torch.ones(1, 3, 1, 1))
    with pytest.raises(ValueError, match="x must be a floating-point tensor"):
        denormalize(images)
    with pytest.raises(ValueError, match="x must be"):
        denormalize(torch.zeros(2, 4, 5, 5))


# --- ShapesDataset ---------------------------------------------------------------------------
def test_dataset_with_v2_transform_moves_mask_with_image():
    ds = ShapesDataset.generate(8, 32, seed=0, transform=v2.RandomHorizontalFlip(p=1.0), return_mask=True)
    images, labels, masks = make_shapes(8, 32, seed=0)
    image, label, mask = ds[3]
    assert type(image) is torch.Tensor and type(mask) is torch.Tensor
    assert torch.equal(image, images[3].flip(-1)) and torch.equal(mask, masks[3].flip(-1))
    assert label == int(labels[3]) and len(ds) == 8


def test_dataset_without_mask_and_batching():
    crop = v2.Compose([v2.RandomResizedCrop(16, antialias=True), v2.ToDtype(torch.float32, scale=True)])
    ds = ShapesDataset(*make_shapes(8, 32, seed=0), transform=crop)
    image, label = ds[0]
    assert image.shape == (3, 16, 16) and image.dtype == torch.float32 and isinstance(label, int)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch[0].shape == (4, 3, 16, 16) and batch[1].dtype == torch.int64


def test_dataset_constructor_errors():
    images, labels, masks = make_shapes(4, 32)
    with pytest.raises(ValueError, match="images"):
        ShapesDataset(images.float(), labels)
    with pytest.raises(ValueError, match="labels"):
        ShapesDataset(images, labels[:3])
    with pytest.raises(ValueError, match="masks"):
        ShapesDataset(images, labels, masks[:, :16])
    with pytest.raises(ValueError, match="return_mask"):
        ShapesDataset(images, labels, return_mask=True)


# --- CIFAR-10 / STL-10 on small archives in their real on-disk formats --------------------------
def md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def fake_cifar10(tmp_path, monkeypatch):
    """cifar-10-batches-py with 4 images per batch. torchvision's CIFAR10 checks each file's md5
    against the class attributes train_list / test_list / meta on EVERY load (not only on
    download), so we patch only those md5 constants, to our files' real md5: the integrity check
    still runs on exactly the bytes we wrote."""
    from torchvision.datasets import CIFAR10
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        images = rng.integers(0, 256, (4, 3, 32, 32), dtype=np.uint8)
        labels = rng.integers(0, 10, 4).tolist()
        with open(folder / name, "wb") as f:  # rows are R plane, G plane, B plane, row-major
            pickle.dump({"data": images.reshape(4, 3072), "labels": labels}, f)
        written[name] = (images, labels)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, f)
    monkeypatch.setattr(CIFAR10, "train_list", [[f"data_batch_{i}", md5(folder / f"data_batch_{i}")] for i in range(1, 6)])
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5(folder / "test_batch")]])
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": md5(folder / "batches.meta")})
    return tmp_path, written


def test_load_cifar10_reads_the_real_format(fake_cifar10):
    root, written = fake_cifar10
    images, labels = load_cifar10(root, train=True)
    expected = np.concatenate([written[f"data_batch_{i}"][0] for i in range(1, 6)])
    assert images.dtype == torch.uint8 and images.shape == (20, 3, 32, 32)
    assert np.array_equal(images.numpy(), expected)
    assert labels.dtype == torch.int64 and labels.tolist() == sum((written[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    test_images, test_labels = load_dataset("cifar10", split="test", root=root, n=3, image_size=16)
    assert test_images.shape == (3, 3, 16, 16) and test_labels.tolist() == written["test_batch"][1][:3]


@pytest.fixture
def fake_stl10(tmp_path, monkeypatch):
    """stl10_binary: images stored column-major, i.e. each (3, 96, 96) image transposed to
    (3, W, H) before writing; labels are bytes 1..10. STL10 checks md5 on every load, as CIFAR10."""
    from torchvision.datasets import STL10
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    rng = np.random.default_rng(1)
    written = {}
    for prefix, n in (("train", 3), ("test", 2), ("unlabeled", 2)):
        images = rng.integers(0, 256, (n, 3, 96, 96), dtype=np.uint8)  # (n, C, H, W)
        (folder / f"{prefix}_X.bin").write_bytes(images.transpose(0, 1, 3, 2).tobytes())
        labels = rng.integers(1, 11, n).astype(np.uint8)
        if prefix != "unlabeled":
            (folder / f"{prefix}_y.bin").write_bytes(labels.tobytes())
        written[prefix] = (images, labels.astype(np.int64) - 1)
    (folder / "class_names.txt").write_text("\n".join(f"class{i}" for i in range(10)))
    monkeypatch.setattr(STL10, "train_list", [[name, md5(folder / name)] for name in ("train_X.bin", "train_y.bin", "unlabeled_X.bin")])
    monkeypatch.setattr(STL10, "test_list", [[name, md5(folder / name)] for name in ("test_X.bin", "test_y.bin")])
    return tmp_path, written


def test_load_stl10_reads_the_real_format(fake_stl10):
    root, written = fake_stl10
    for split in ("train", "test"):
        images, labels = load_stl10(root, split=split)
        assert images.dtype == torch.uint8 and images.shape[1:] == (3, 96, 96)
        assert np.array_equal(images.numpy(), written[split][0])
        assert labels.dtype == torch.int64 and labels.tolist() == written[split][1].tolist()
    images, labels = load_stl10(root, split="unlabeled")
    assert np.array_equal(images.numpy(), written["unlabeled"][0]) and (labels == -1).all()
    images, _ = load_dataset("stl10", root=root, image_size=32)
    assert images.shape == (3, 3, 32, 32)


def test_missing_real_data_says_download(tmp_path):
    with pytest.raises(FileNotFoundError, match="download=True"):
        load_cifar10(tmp_path)
    with pytest.raises(FileNotFoundError, match="download=True"):
        load_stl10(tmp_path, split="test")
    with pytest.raises(ValueError, match="split"):
        load_stl10(tmp_path, split="val")


def test_load_dataset_choices():
    images, labels = load_dataset("shapes", n=20, image_size=40)
    assert images.shape == (20, 3, 40, 40) and torch.equal(labels, make_shapes(20, 40)[1])
    test_images, _ = load_dataset(n=20, split="test", image_size=40)
    assert not torch.equal(images, test_images)
    with pytest.raises(ValueError, match="shapes.*cifar10.*stl10"):
        load_dataset("imagenet")


# --- photos that ship inside installed packages ------------------------------------------------
def test_sample_photos_offline(monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("network disabled in this test")
    monkeypatch.setattr(socket.socket, "connect", no_network)
    photos = sample_photos(64)
    assert {"chelsea", "coffee", "astronaut", "rocket", "grace_hopper"} <= set(photos)
    for photo in photos.values():
        assert photo.shape == (3, 64, 64) and photo.dtype == torch.uint8
        assert photo.float().std() > 10  # a real picture, not a blank
    with pytest.raises(ValueError, match="size"):
        sample_photos(0)
    assert data.DATASETS == ("shapes", "cifar10", "stl10")
