"""Data loaders against the offline copies in ``shared/data`` (see its README for the counts and reference values).

Ground truth here is independent of the loaders: the class counts and pixel values published in the data README,
and a direct ``np.frombuffer`` decoding of the IDX files (the README's own recipe). Downloads are exercised with a
fake ``fetch`` that copies the local files; no test touches the network.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from robustlens import ConfigError, RobustLensWarning, UnsafeLoadError
from robustlens.data import CIFAR10_CLASSES, MNIST_CLASSES, Resource, download_file, load_dataset
from robustlens.data import load as load_module
from robustlens.errors import CorruptFileError

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
CIFAR_BATCH1_COUNTS = [1005, 974, 1032, 1016, 999, 937, 1030, 1001, 1025, 981]
CIFAR_BATCH2_COUNTS = [984, 1007, 1010, 995, 1010, 988, 1008, 1026, 987, 985]
# First red-channel values of CIFAR-10 test images, and labels, published independently of the copy (data README).
CIFAR_TEST_PIXELS = {0: [158, 159, 165, 166, 160, 156, 162, 159, 158], 9999: [73, 98, 99, 77, 59, 146, 214, 176, 125]}
CIFAR_TEST_LABELS = {0: 3, 9995: 8, 9996: 3, 9997: 5, 9998: 1, 9999: 7}
MNIST_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def _idx_reference(path: Path, offset: int) -> np.ndarray:
    return np.frombuffer(gzip.open(path).read(), np.uint8, offset=offset)


@pytest.fixture(scope="module")
def mnist_test(shared_data: Path):
    return load_dataset("mnist", "test", root=shared_data / "mnist")


@pytest.fixture(scope="module")
def embedded():
    return load_dataset("mnist-embedded", "train"), load_dataset("mnist-embedded", "test")


def _copy_mnist_test(shared_data: Path, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in MNIST_FILES:
        shutil.copy(shared_data / "mnist" / name, dest / name)
    return dest


# ------------------------------------------------------------------------------------------ MNIST family
def test_mnist_test_split_matches_the_files_and_the_published_counts(mnist_test, shared_data):
    d = mnist_test
    assert d.x.shape == (10000, 1, 28, 28) and d.x.dtype == torch.float32 and d.y.dtype == torch.long
    assert d.bounds == (0.0, 1.0) and d.classes == MNIST_CLASSES and d.name == "mnist/test"
    assert d.class_counts() == MNIST_TEST_COUNTS
    ref_x = _idx_reference(shared_data / "mnist" / MNIST_FILES[0], 16).reshape(-1, 1, 28, 28)
    ref_y = _idx_reference(shared_data / "mnist" / MNIST_FILES[1], 8)
    assert torch.equal((d.x * 255).round().to(torch.uint8), torch.from_numpy(ref_x.copy()))
    assert d.y[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9] == ref_y[:10].tolist()


def test_mnist_train_split_class_counts(shared_data):
    d = load_dataset("mnist", "train", root=shared_data / "mnist")
    assert len(d) == 60000 and d.input_shape == (1, 28, 28)
    assert d.class_counts() == MNIST_TRAIN_COUNTS


def test_fashion_mnist_test_counts_and_missing_train_split(shared_data):
    d = load_dataset("fashion-mnist", "test", root=shared_data / "fashion-mnist")
    assert d.class_counts() == [1000] * 10
    assert d.classes[0] == "T-shirt/top" and d.classes[9] == "Ankle boot"
    assert d.y[:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]
    with pytest.raises(ConfigError, match=r"train-images-idx3-ubyte\[.gz\].*not found.*download=True"):
        load_dataset("fashion-mnist", "train", root=shared_data / "fashion-mnist")


def test_mnist_is_found_in_torchvision_layout_and_as_raw_idx(shared_data, tmp_path, mnist_test):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in MNIST_FILES:  # uncompressed copies: verified against the md5 of the raw IDX bytes
        (raw / name.removesuffix(".gz")).write_bytes(gzip.open(shared_data / "mnist" / name).read())
    d = load_dataset("mnist", "test", root=tmp_path)
    assert torch.equal(d.x, mnist_test.x) and torch.equal(d.y, mnist_test.y)


# ------------------------------------------------------------------------------------------ corrupt files
def test_a_corrupted_file_fails_its_checksum_with_a_clear_message(shared_data, tmp_path):
    root = _copy_mnist_test(shared_data, tmp_path / "mnist")
    labels = root / MNIST_FILES[1]
    data = bytearray(labels.read_bytes())
    data[-3] ^= 0xFF
    labels.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match=r"t10k-labels-idx1-ubyte.gz failed its md5 check: expected "
                       r"ec29112dd5afa0611ce80d1b7f02629c.*corrupt or truncated.*delete it and download it again"):
        load_dataset("mnist", "test", root=tmp_path)


def test_a_truncated_file_fails_with_or_without_verification(shared_data, tmp_path):
    root = _copy_mnist_test(shared_data, tmp_path / "mnist")
    images = root / MNIST_FILES[0]
    images.write_bytes(images.read_bytes()[: images.stat().st_size // 2])
    with pytest.raises(CorruptFileError, match=r"t10k-images-idx3-ubyte.gz failed its md5 check.*\(824438 bytes\)"):
        load_dataset("mnist", "test", root=tmp_path)
    with pytest.raises(CorruptFileError, match="not a complete gzip file.*delete it and download it again"):
        load_dataset("mnist", "test", root=tmp_path, verify=False)


def test_a_truncated_raw_idx_file_contradicts_its_header(shared_data, tmp_path):
    raw = gzip.open(shared_data / "mnist" / MNIST_FILES[1]).read()
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(raw[:-100])
    shutil.copy(shared_data / "mnist" / MNIST_FILES[0], tmp_path / MNIST_FILES[0])
    with pytest.raises(CorruptFileError, match=r"holds 9908 bytes but its header \(10000,\) needs 10008"):
        load_dataset("mnist", "test", root=tmp_path, verify=False)


# ------------------------------------------------------------------------------------------ CIFAR-10
def test_cifar10_test_split_counts_pixels_and_labels(shared_data):
    d = load_dataset("cifar10", "test", root=shared_data / "cifar10")
    assert d.x.shape == (10000, 3, 32, 32) and d.class_counts() == [1000] * 10
    assert d.classes[3] == "cat" and d.classes[7] == "horse"
    for i, values in CIFAR_TEST_PIXELS.items():
        assert (d.x[i, 0, 0, : len(values)] * 255).round().int().tolist() == values  # red plane, first row
    for i, label in CIFAR_TEST_LABELS.items():
        assert int(d.y[i]) == label
    assert d.mean is not None and d.std is not None and len(d.mean) == 3


def test_cifar10_train_split_uses_the_batches_present_and_warns(shared_data):
    with pytest.warns(RobustLensWarning, match="only 2 of the 5 training batches.*20000 images instead of 50000"):
        d = load_dataset("cifar10", "train", root=shared_data / "cifar10")
    assert len(d) == 20000
    assert d.class_counts() == [a + b for a, b in zip(CIFAR_BATCH1_COUNTS, CIFAR_BATCH2_COUNTS, strict=True)]
    assert d.y[:5].tolist() == [6, 9, 9, 4, 1]


def test_cifar10_truncated_batch_and_a_malicious_pickle_are_refused(shared_data, tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    src = shared_data / "cifar10" / "cifar-10-batches-py" / "test_batch"
    (folder / "test_batch").write_bytes(src.read_bytes()[:100_000])
    with pytest.raises(CorruptFileError, match="test_batch is not a readable CIFAR batch.*truncated or corrupt"):
        load_dataset("cifar10", "test", root=tmp_path)

    class Evil:
        def __reduce__(self):
            return (print, ("this would run arbitrary code",))

    (folder / "test_batch").write_bytes(pickle.dumps({b"data": Evil(), b"labels": [0]}, protocol=2))
    with pytest.raises(UnsafeLoadError, match=r"refusing to unpickle (__builtin__|builtins).print.*not a genuine"):
        load_dataset("cifar10", "test", root=tmp_path)


# ------------------------------------------------------------------------------------------ downloads
class FakeFetch:
    """``fetch(url, dest)`` serving the local copies by file name; optionally corrupts the first ``bad`` URLs."""

    def __init__(self, folder: Path, bad: int = 0) -> None:
        self.folder = folder
        self.bad = bad
        self.urls: list[str] = []

    def __call__(self, url: str, dest: Path) -> None:
        self.urls.append(url)
        data = (self.folder / url.rsplit("/", 1)[1]).read_bytes()
        if len(self.urls) <= self.bad:
            data = data[: len(data) // 3]
        dest.write_bytes(data)


def test_download_fetches_the_official_files_and_verifies_them(shared_data, tmp_path, mnist_test):
    fetch = FakeFetch(shared_data / "mnist")
    d = load_dataset("mnist", "test", root=tmp_path, download=True, fetch=fetch)
    assert torch.equal(d.x, mnist_test.x) and torch.equal(d.y, mnist_test.y)
    assert fetch.urls == [m + name for name in MNIST_FILES for m in load_module._MNIST_MIRRORS[:1]]
    assert sorted(p.name for p in (tmp_path / "mnist").iterdir()) == sorted(MNIST_FILES)  # no .part left
    load_dataset("mnist", "test", root=tmp_path, download=True, fetch=fetch)
    assert len(fetch.urls) == 2  # present and verified: nothing fetched again


def test_download_discards_a_bad_mirror_and_reports_when_all_fail(shared_data, tmp_path):
    res = load_module.idx_resources("mnist", "test")[1]
    fetch = FakeFetch(shared_data / "mnist", bad=1)
    path = download_file(res, tmp_path / "a", fetch)
    assert fetch.urls == list(res.urls) and path.read_bytes() == (shared_data / "mnist" / res.filename).read_bytes()

    fetch = FakeFetch(shared_data / "mnist", bad=10)
    with pytest.raises(CorruptFileError, match=r"could not download t10k-labels-idx1-ubyte.gz(.|\n)*failed its md5 "
                       r"check(.|\n)*Check the network connection"):
        download_file(res, tmp_path / "b", fetch)
    assert list((tmp_path / "b").iterdir()) == []


def test_download_does_not_overwrite_a_corrupt_file_on_disk(shared_data, tmp_path):
    res = load_module.idx_resources("mnist", "test")[1]
    (tmp_path / res.filename).write_bytes(b"not the labels")
    fetch = FakeFetch(shared_data / "mnist")
    with pytest.raises(CorruptFileError, match="failed its md5 check.*delete it and download it again from https"):
        download_file(res, tmp_path, fetch)
    assert fetch.urls == [] and (tmp_path / res.filename).read_bytes() == b"not the labels"


def _fake_cifar_tarball(path: Path) -> str:
    """A tarball in the layout of the official one, with tiny batches of the original pickle format."""
    rng = np.random.default_rng(0)
    with tarfile.open(path, "w:gz") as tar:
        names = ["test_batch", *(f"data_batch_{i}" for i in range(1, 6))]
        for k, name in enumerate(names):
            batch = {b"batch_label": name.encode(), b"labels": [(k + j) % 10 for j in range(4)],
                     b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8),
                     b"filenames": [f"{j}.png".encode() for j in range(4)]}
            payload = pickle.dumps(batch, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
        meta = pickle.dumps({b"label_names": [n.encode() for n in CIFAR10_CLASSES], b"num_vis": 3072}, protocol=2)
        info = tarfile.TarInfo("cifar-10-batches-py/batches.meta")
        info.size = len(meta)
        tar.addfile(info, io.BytesIO(meta))
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_cifar10_download_extracts_the_tarball(tmp_path, monkeypatch):
    src = tmp_path / "served"
    src.mkdir()
    md5 = _fake_cifar_tarball(src / "cifar-10-python.tar.gz")
    monkeypatch.setattr(load_module, "cifar10_resource",
                        lambda: Resource("cifar-10-python.tar.gz", ("https://example.invalid/cifar-10-python.tar.gz",),
                                         md5=md5))
    fetch = FakeFetch(src)
    root = tmp_path / "root"
    d = load_dataset("cifar10", "test", root=root, download=True, fetch=fetch)
    assert fetch.urls == ["https://example.invalid/cifar-10-python.tar.gz"]
    assert d.x.shape == (4, 3, 32, 32) and d.y.tolist() == [0, 1, 2, 3]
    train = load_dataset("cifar10", "train", root=root)
    assert len(train) == 20 and (root / "cifar10" / "cifar-10-batches-py" / "data_batch_5").is_file()


# ------------------------------------------------------------------------------------------ embedded sets
# sha256 of the sorted original indices of the canonical (seed 0) held-out split, recorded when the split was
# introduced: a change here means every published mnist-embedded figure moved, so it must never change silently.
CANONICAL_TEST_SHA256 = "f65dbfe4eef69819a51f9d64c3c04eb6db3b4466257b09a01eff820c30bc6ad7"


def test_mnist_embedded_split_is_fixed_stratified_and_disjoint(embedded):
    train, test = embedded
    assert (len(train), len(test)) == (4000, 1000)
    assert train.class_counts() == [400] * 10 and test.class_counts() == [100] * 10
    both = torch.cat([train.indices, test.indices])
    assert torch.equal(both.sort().values, torch.arange(5000))
    assert train.x.shape[1:] == (1, 28, 28) and float(train.x.min()) == 0.0 and float(train.x.max()) == 1.0
    # the canonical split (seed 0) is part of the contract: the same on every machine and version
    digest = hashlib.sha256(test.indices.sort().values.numpy().astype("<i8").tobytes()).hexdigest()
    assert digest == CANONICAL_TEST_SHA256


def test_mnist_embedded_split_follows_its_seed_not_the_sample_order(embedded):
    _, test = embedded
    again = load_dataset("mnist-embedded", "test", seed=0)
    assert torch.equal(again.indices, test.indices) and torch.equal(again.x, test.x)
    other = load_dataset("mnist-embedded", "test", seed=1)
    assert other.class_counts() == [100] * 10
    assert not torch.equal(other.indices.sort().values, test.indices.sort().values)
    full = load_dataset("mnist-embedded", "all")
    perm = torch.randperm(len(full), generator=torch.Generator().manual_seed(3))
    _, shuffled_test = full.subset(perm).split(0.2, seed=0)
    assert torch.equal(shuffled_test.indices.sort().values, test.indices.sort().values)


def test_sklearn_digits():
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    assert len(train) + len(test) == 1797 and train.input_shape == (1, 8, 8)
    assert abs(len(test) - 0.2 * 1797) <= 1 and float(train.x.max()) == 1.0
    full = load_dataset("digits", "all")
    assert [a + b for a, b in zip(train.class_counts(), test.class_counts(), strict=True)] == full.class_counts()


# ------------------------------------------------------------------------------------------ folders and names
def test_image_folder_loader(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(1)
    expected: dict[str, list[np.ndarray]] = {}
    for split in ("train", "test"):
        for cls in ("zebra", "ant"):
            folder = tmp_path / split / cls
            folder.mkdir(parents=True)
            for j in range(2):
                arr = rng.integers(0, 256, (5, 6), dtype=np.uint8)
                Image.fromarray(arr, mode="L").save(folder / f"{j}.png")
                expected.setdefault(f"{split}/{cls}", []).append(arr)
    d = load_dataset("folder", "test", root=tmp_path)
    assert d.classes == ["ant", "zebra"] and d.y.tolist() == [0, 0, 1, 1] and d.input_shape == (1, 5, 6)
    assert torch.equal((d.x[0, 0] * 255).round().to(torch.uint8), torch.from_numpy(expected["test/ant"][0]))
    (tmp_path / "train" / "ant" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(CorruptFileError, match="cannot decode .*broken.png.*remove or replace the file"):
        load_dataset("folder", "train", root=tmp_path)


def test_unknown_names_and_splits_are_rejected():
    with pytest.raises(ConfigError, match="unknown data set 'imagenet'; choose one of mnist-embedded"):
        load_dataset("imagenet")
    with pytest.raises(ConfigError, match="mnist: split must be one of train, test, got 'all'"):
        load_dataset("mnist", "all")


def test_batch_loader_order_is_seeded(embedded):
    train, _ = embedded
    a = [y for _, y in train.loader(batch_size=500, shuffle=True, seed=4)]
    b = [y for _, y in train.loader(batch_size=500, shuffle=True, seed=4)]
    c = [y for _, y in train.loader(batch_size=500, shuffle=True, seed=5)]
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    assert not all(torch.equal(u, v) for u, v in zip(a, c, strict=True))
    assert torch.equal(torch.cat(a).sort().values, train.y.sort().values)


# ------------------------------------------------------------------------------------------ subsets
def test_the_sorted_split_is_why_subsets_are_stratified(embedded):
    _, test = embedded
    assert test.y[:100].unique().tolist() == [0]  # stored sorted by class: the first 100 are all zeros
    first = test.subset(100)
    assert first.selection == {"method": "first", "n": 100, "seed": None, "of": "mnist-embedded/test",
                               "of_size": 1000}


def test_a_stratified_subset_of_a_sorted_split_covers_every_class(embedded):
    _, test = embedded
    sub = test.subset(100, seed=0, stratified=True)
    assert sub.class_counts() == [10] * 10
    where = {int(i): k for k, i in enumerate(test.indices)}
    positions = [where[int(i)] for i in sub.indices]
    assert positions == sorted(positions)  # the stored order is kept
    assert sub.selection == {"method": "stratified", "n": 100, "seed": 0, "of": "mnist-embedded/test",
                             "of_size": 1000}
    for n in (10, 37, 500):  # any size: class shares within one sample of proportional
        counts = test.subset(n, seed=3, stratified=True).class_counts()
        assert sum(counts) == n and max(counts) - min(counts) <= 1
    # the same seed picks the same samples whatever the stored order; another seed picks others
    again = test.subset(100, seed=0, stratified=True)
    assert torch.equal(again.indices, sub.indices) and torch.equal(again.x, sub.x)
    perm = torch.randperm(len(test), generator=torch.Generator().manual_seed(5))
    shuffled = test.subset(perm).subset(100, seed=0, stratified=True)
    assert torch.equal(shuffled.indices.sort().values, sub.indices.sort().values)
    assert shuffled.selection is not None and shuffled.selection["after"]["method"] == "positions"
    other = test.subset(100, seed=1, stratified=True)
    assert other.class_counts() == [10] * 10 and not torch.equal(other.indices, sub.indices)


def test_stratified_subsets_follow_the_class_shares_of_an_imbalanced_set():
    from robustlens.data import ImageData

    y = torch.tensor([0] * 70 + [1] * 20 + [2] * 9 + [3] * 1)
    d = ImageData(torch.rand(100, 1, 2, 2), y, ["a", "b", "c", "d"])
    assert d.subset(10, seed=0, stratified=True).class_counts() == [7, 2, 1, 0]
    assert d.subset(50, seed=0, stratified=True).class_counts() == [35, 10, 5, 0]  # 4.5 and 0.5 tie: the lower
    assert d.subset(100, seed=0, stratified=True).class_counts() == [70, 20, 9, 1]
    with pytest.raises(ConfigError, match="subset size must be in 0..100"):
        d.subset(101, stratified=True)


def test_seeded_random_subsets_are_unchanged_and_recorded(embedded):
    train, _ = embedded
    sub = train.subset(64, seed=3)
    from robustlens.seeding import generator

    expected = torch.randperm(len(train), generator=generator(3, "subset", train.name))[:64]
    assert torch.equal(sub.indices, train.indices[expected])  # what training runs were recorded with
    assert sub.selection is not None and sub.selection["method"] == "random" and sub.selection["seed"] == 3


def test_the_attack_command_limit_takes_a_stratified_subset(tmp_path):
    """``--limit 100`` on the class-sorted mnist-embedded test split evaluates every digit, and says so."""
    from typer.testing import CliRunner

    from robustlens.attacks.base import AttackResult
    from robustlens.cli import app
    from robustlens.zoo import create_model, save_model

    model = save_model(create_model("mlp", hidden=(16,)), tmp_path / "m.safetensors")
    r = CliRunner().invoke(app, ["attack", "-a", "fgsm", "--eps", "0.1", "--model", str(model), "--limit", "100",
                                 "--no-progress", "--device", "cpu", "--out", str(tmp_path / "a.json")])
    assert r.exit_code == 0, r.output
    res = AttackResult.load(tmp_path / "a.json")
    assert torch.bincount(res.labels, minlength=10).tolist() == [10] * 10
    assert res.settings["subset"] == {"method": "stratified", "n": 100, "seed": 0, "of": "mnist-embedded/test",
                                      "of_size": 1000}
    assert f"wrote {tmp_path / 'a.json'} " in r.output
    r = CliRunner().invoke(app, ["attack", "-a", "fgsm", "--eps", "0.1", "--model", str(model), "--out",
                                 str(tmp_path / "b.txt")])
    assert r.exit_code == 2 and "must end in .json" in r.output and not (tmp_path / "b.state").exists()
