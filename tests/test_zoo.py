"""Model zoo: architectures against their published sizes, seeded construction, safe saving and loading."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from robustlens import ConfigError, UnsafeLoadError
from robustlens.errors import MissingDependencyError
from robustlens.zoo import create_model, list_models, load_model, load_user_model, read_weights, save_model

# (name, options, input shape, parameter count). The counts are the published ones for these architectures with
# 10 classes: LeNet-5 (LeCun et al., 1998) 61,706; ResNet-18 with the CIFAR stem 11,173,962; PreAct-ResNet-18 as in
# Wong et al. (2020), with the final BN-ReLU, 11,172,170; WRN-28-10 36,479,194 (Zagoruyko and Komodakis, 2016).
# MLP and SmallCNN follow from their layer sizes (784*256+256 + 256*256+256 + 256*10+10; 320 + 18,496 + 3136*128+128
# + 1,290).
ZOO = [
    ("mlp", {}, (1, 28, 28), 269_322),
    ("lenet", {}, (1, 28, 28), 61_706),
    ("smallcnn", {}, (1, 28, 28), 421_642),
    ("resnet18", {}, (3, 32, 32), 11_173_962),
    ("preact_resnet18", {}, (3, 32, 32), 11_172_170),
    ("wrn-28-10", {}, (3, 32, 32), 36_479_194),
    ("wideresnet", {"depth": 10, "width": 1}, (3, 32, 32), None),
]


def _n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_the_table_covers_the_whole_zoo():
    assert sorted(name for name, *_ in ZOO) == list_models()


@pytest.mark.parametrize("name, options, shape, n_params", ZOO, ids=[z[0] for z in ZOO])
def test_every_zoo_model_builds_and_runs_forward(name, options, shape, n_params):
    model = create_model(name, **options).eval()
    if n_params is not None:
        assert _n_params(model) == n_params
    x = torch.rand(2 if n_params is None or n_params < 1_000_000 else 1, *shape,
                   generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model(x)
    assert out.shape == (x.shape[0], 10) and torch.isfinite(out).all()


def test_sizes_and_channels_follow_the_options():
    m = create_model("smallcnn", num_classes=7, in_channels=3, input_size=32)
    assert m(torch.rand(2, 3, 32, 32)).shape == (2, 7)
    lenet = create_model("lenet", input_size=32)  # the original 32x32 geometry, no padding
    assert lenet(torch.rand(1, 1, 32, 32)).shape == (1, 10) and _n_params(lenet) == 61_706
    wrn = create_model("wrn-16-2")
    assert wrn.depth == 16 and wrn.width == 2 and wrn(torch.rand(1, 3, 32, 32)).shape == (1, 10)
    with pytest.raises(ConfigError, match="unknown model 'vgg16'; choose one of lenet, mlp"):
        create_model("vgg16")
    with pytest.raises(ConfigError, match="bad options for model 'mlp'"):
        create_model("mlp", depth=3)


def test_construction_is_seeded_and_leaves_the_global_rng_alone():
    state = torch.get_rng_state()
    a, b, c = create_model("lenet", seed=3), create_model("lenet", seed=3), create_model("lenet", seed=4)
    assert torch.equal(torch.get_rng_state(), state)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


# ------------------------------------------------------------------------------------------ saving and loading
def _trained_resnet() -> nn.Module:
    """A small ResNet with non-trivial BatchNorm running statistics (buffers must round-trip too)."""
    m = create_model("resnet18", widths=(4, 8, 8, 8), blocks=(1, 1, 1, 1), seed=1)
    m.train()
    with torch.no_grad():
        m(torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(2)))
    return m.eval()


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_saved_and_reloaded_model_gives_identical_logits(tmp_path, suffix):
    model = _trained_resnet()
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    path = save_model(model, tmp_path / f"net{suffix}", metadata={"note": "test"})
    for loaded in (load_model(path), load_model(path, "resnet18"), load_model(path, _fresh_resnet())):
        assert not loaded.training
        with torch.no_grad():
            assert torch.equal(loaded(x), model(x))
    assert not list(tmp_path.glob(".*tmp*"))  # the atomic write left nothing behind


def _fresh_resnet() -> nn.Module:
    return create_model("resnet18", widths=(4, 8, 8, 8), blocks=(1, 1, 1, 1), seed=9)


def test_plain_state_dicts_and_dataparallel_prefixes_load(tmp_path):
    model = _trained_resnet()
    x = torch.rand(2, 3, 32, 32)
    torch.save(model.state_dict(), tmp_path / "plain.pt")
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}, "epoch": 3},
               tmp_path / "ddp.pt")
    for name in ("plain.pt", "ddp.pt"):
        loaded = load_model(tmp_path / name, _fresh_resnet)
        with torch.no_grad():
            assert torch.equal(loaded(x), model(x))
    with pytest.raises(ConfigError, match="holds weights but no architecture; pass model="):
        load_model(tmp_path / "plain.pt")
    with pytest.raises(ConfigError, match="do not fit SmallCNN.*check the architecture"):
        load_model(tmp_path / "plain.pt", "smallcnn")


def test_a_pickled_model_is_refused_without_the_unsafe_flag_and_loads_with_it(tmp_path):
    model = create_model("smallcnn", seed=2).eval()
    path = tmp_path / "whole.pt"
    torch.save(model, path)  # a full pickle of the nn.Module: loading it runs code
    with pytest.raises(UnsafeLoadError) as err:
        load_model(path)
    msg = str(err.value)
    assert "refusing to load" in msg and "whole.pt" in msg
    assert "unpickling can execute arbitrary code" in msg  # why
    assert "unsafe=True" in msg and "--unsafe-pickle" in msg  # how
    assert "save_model(model, 'model.safetensors')" in msg  # and the better way
    with pytest.raises(UnsafeLoadError):
        read_weights(path)
    loaded = load_model(path, unsafe=True)
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_a_checkpoint_holding_a_pickled_model_is_refused_too(tmp_path):
    model = create_model("mlp", seed=0)
    torch.save({"model": model, "epoch": 1}, tmp_path / "ckpt.pt")
    with pytest.raises(UnsafeLoadError, match="full pickle.*unsafe=True"):
        load_model(tmp_path / "ckpt.pt")
    assert isinstance(load_model(tmp_path / "ckpt.pt", unsafe=True), type(model))


def test_user_model_file(tmp_path):
    (tmp_path / "mine.py").write_text(
        "from torch import nn\n\n"
        "def build(width=3):\n    return nn.Sequential(nn.Flatten(), nn.Linear(4, width))\n"
    )
    net = load_user_model(f"{tmp_path / 'mine.py'}:build", width=5)
    assert net(torch.rand(2, 1, 2, 2)).shape == (2, 5) and not net.training
    save_model(net, tmp_path / "w.safetensors")
    again = load_user_model(f"{tmp_path / 'mine.py'}:build", tmp_path / "w.safetensors", width=5)
    x = torch.rand(2, 4)
    assert torch.equal(again(x), net(x))
    with pytest.raises(ConfigError, match="has no callable 'nothing'; callables defined there: build"):
        load_user_model(f"{tmp_path / 'mine.py'}:nothing")
    with pytest.raises(ConfigError, match="must be 'path/to/file.py:factory'"):
        load_user_model(str(tmp_path / "mine.py"))


@pytest.mark.parametrize("source, package", [("timm:resnet50", "timm"), ("torchvision:resnet18", "torchvision"),
                                             ("robustbench:Standard", "robustbench")])
def test_adapters_name_the_missing_package(monkeypatch, source, package):
    for mod in (package, "torchvision.models", "robustbench.utils"):
        monkeypatch.setitem(sys.modules, mod, None)  # importing it raises ImportError, installed or not
    with pytest.raises(MissingDependencyError, match=f"needs the '{package}' package; install it with: .*pip "
                       f"install .*{package}"):
        load_model(source)


def test_model_files_written_by_save_model_record_the_architecture(tmp_path):
    model = create_model("smallcnn", num_classes=4, in_channels=3, input_size=32, width=8, seed=1)
    for suffix in (".safetensors", ".pt"):
        path = save_model(model, tmp_path / f"m{suffix}")
        _, arch = read_weights(path)
        assert arch == {"name": "smallcnn", "num_classes": 4, "in_channels": 3, "input_size": 32, "width": 8}
        rebuilt = load_model(Path(path))
        assert torch.equal(rebuilt(torch.zeros(1, 3, 32, 32)), model.eval()(torch.zeros(1, 3, 32, 32)))


def test_smallcnn_softplus_twin_is_smooth_and_round_trips(tmp_path):
    model = create_model("smallcnn", activation="softplus", width=4, hidden=8, seed=0).eval()
    assert not any(isinstance(m, (nn.ReLU, nn.MaxPool2d)) for m in model.modules())
    assert _n_params(model) == _n_params(create_model("smallcnn", width=4, hidden=8, seed=0))
    # smooth logits: the input Hessian of one logit is non-zero (a ReLU network's is zero almost everywhere)
    x = torch.rand(1, 1, 28, 28, dtype=torch.float64)
    h = torch.autograd.functional.hessian(lambda v: model.double()(v)[0, 0], x)
    assert float(h.abs().max()) > 0
    relu = create_model("smallcnn", width=4, hidden=8, seed=0).double().eval()
    assert float(torch.autograd.functional.hessian(lambda v: relu(v)[0, 0], x).abs().max()) == 0
    path = save_model(model.float(), tmp_path / "soft.pt")
    _, arch = read_weights(path)
    assert arch is not None and arch["activation"] == "softplus"
    z = torch.rand(2, 1, 28, 28)
    assert torch.equal(load_model(path)(z), model(z))
    with pytest.raises(ValueError, match="activation"):
        create_model("smallcnn", activation="tanh")


# ---------------------------------------------------------------------------------------------- untrusted files
def _mlp_file(path: Path, arch: object, *, hidden: tuple[int, ...] = (8,), fmt: str = "safetensors") -> Path:
    """A model file holding a small MLP's weights and whatever architecture record it is given."""
    import json as _json

    from safetensors.torch import save_file

    net = create_model("mlp", in_channels=1, input_size=4, hidden=hidden)
    sd = {k: v.contiguous() for k, v in net.state_dict().items()}
    if fmt == "safetensors":
        meta = {"format": "robustlens"}
        if arch is not None:
            meta["robustlens.arch"] = arch if isinstance(arch, str) else _json.dumps(arch)
        save_file(sd, str(path), metadata=meta)
    else:
        torch.save({"model": sd, "arch": arch, "metadata": {}}, path)
    return path


GOOD_ARCH = {"name": "mlp", "num_classes": 10, "in_channels": 1, "input_size": 4, "hidden": [8]}


@pytest.mark.parametrize("fmt", ["safetensors", "pt"])
def test_a_recorded_architecture_larger_than_the_weights_is_refused_before_it_is_built(tmp_path, fmt, monkeypatch):
    import time

    import robustlens.zoo.io as zio
    from robustlens.errors import CorruptFileError

    monkeypatch.setattr(zio, "_load_safetensors", lambda *a: pytest.fail("tensors read before the check"))
    huge = {**GOOD_ARCH, "hidden": [200000, 200000]}  # 40 billion parameters: 160 GB if it were allocated
    path = _mlp_file(tmp_path / f"huge.{fmt}", huge, fmt=fmt)
    t0 = time.perf_counter()
    with pytest.raises(CorruptFileError, match="asks for a model larger than the weights in the file.*refusing"):
        load_model(path)
    assert time.perf_counter() - t0 < 5
    # the right size but other shapes (hidden 16 recorded, 8 stored): refused before any tensor is read
    path = _mlp_file(tmp_path / f"wide.{fmt}", {**GOOD_ARCH, "hidden": [16]}, fmt=fmt)
    with pytest.raises(CorruptFileError, match=r"do not fit the architecture recorded.*net.1.weight: \[8, 16\] in "
                       r"the file, \[16, 16\] in the model"):
        load_model(path)
    # a smaller recorded model with all parameters present is the file's own: its count is checked too
    fewer = _mlp_file(tmp_path / f"fewer.{fmt}", {**GOOD_ARCH, "hidden": [8, 8]}, fmt=fmt)
    with pytest.raises(CorruptFileError):
        load_model(fewer)


@pytest.mark.parametrize("arch, detail", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "malformed architecture"),
    ('"mlp"', "malformed architecture"),
    ({"hidden": [8]}, "malformed architecture"),
    ({"name": 7}, "malformed architecture"),
    ({"name": "no-such-model"}, "cannot be built.*unknown model"),
    ({**GOOD_ARCH, "hidden": "abc"}, "cannot be built"),
    ({**GOOD_ARCH, "hidden": [-5]}, "cannot be built"),
    ({**GOOD_ARCH, "hidden": [8.5]}, "cannot be built"),
    ({**GOOD_ARCH, "num_classes": "ten"}, "cannot be built"),
    ({**GOOD_ARCH, "colour": "blue"}, "cannot be built"),
    ({**GOOD_ARCH, "hidden": None}, "cannot be built"),
])
def test_malformed_architecture_metadata_is_a_corrupt_file_error(tmp_path, arch, detail):
    from robustlens.errors import CorruptFileError

    path = _mlp_file(tmp_path / "m.safetensors", arch)
    with pytest.raises(CorruptFileError, match=detail) as e:
        load_model(path)
    assert "pass the architecture yourself" in str(e.value) or "save the model again" in str(e.value)
    # the weights are fine: naming the architecture loads them
    net = load_model(path, lambda: create_model("mlp", in_channels=1, input_size=4, hidden=(8,)))
    assert isinstance(net, nn.Module)
    if not isinstance(arch, str):  # a .pt checkpoint recording the same dict is refused the same way
        with pytest.raises(CorruptFileError, match=detail):
            load_model(_mlp_file(tmp_path / "m.pt", arch, fmt="pt"))


def test_files_with_non_finite_weights_are_refused_unless_allowed(tmp_path):
    from robustlens.errors import CorruptFileError

    net = create_model("mlp", in_channels=1, input_size=4, hidden=(8,))
    with torch.no_grad():
        net.net[1].weight[0, 3] = float("nan")
        net.net[3].bias[1] = float("inf")
    for suffix in (".safetensors", ".pt"):
        path = save_model(net, tmp_path / f"nan{suffix}")
        with pytest.raises(CorruptFileError, match=r"non-finite weights: net.1.weight \(1 NaN, 0 inf of 128\), "
                           r"net.3.bias \(0 NaN, 1 inf of 10\).*allow_nonfinite=True"):
            load_model(path)
        loaded = load_model(path, allow_nonfinite=True)
        assert bool(torch.isnan(loaded.net[1].weight).any())
    torch.save(net, tmp_path / "pickled.pt")
    with pytest.raises(CorruptFileError, match="non-finite weights"):
        load_model(tmp_path / "pickled.pt", unsafe=True)


def test_other_tools_arch_strings_in_checkpoints_are_ignored(tmp_path):
    net = create_model("mlp", in_channels=1, input_size=4, hidden=(8,))
    torch.save({"arch": "resnet50", "epoch": 3, "state_dict": net.state_dict()}, tmp_path / "ckpt.pt")
    loaded = load_model(tmp_path / "ckpt.pt", lambda: create_model("mlp", in_channels=1, input_size=4, hidden=(8,)))
    x = torch.rand(2, 1, 4, 4)
    assert torch.equal(loaded(x), net.eval()(x))


# ---------------------------------------------------------------------------------------------- pretrained adapters
class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(12, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def _stub_timm(calls: list) -> object:
    import types

    timm = types.ModuleType("timm")

    def create_model(name, pretrained=False, **kw):
        calls.append((name, pretrained, kw))
        m = _Tiny()
        m.pretrained_cfg = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225), "input_size": (3, 2, 2)}
        return m

    timm.create_model = create_model
    return timm


def _stub_torchvision(calls: list) -> tuple[object, object]:
    import enum
    import types

    class Preset:
        mean = [0.5, 0.4, 0.3]
        std = [0.2, 0.2, 0.25]

    class TinyWeights(enum.Enum):
        IMAGENET1K_V1 = "v1"
        DEFAULT = "v1"

        def transforms(self):
            return Preset()

    tv = types.ModuleType("torchvision")
    models = types.ModuleType("torchvision.models")

    def get_model(name, weights=None, **kw):
        calls.append((name, weights, kw))
        return _Tiny()

    models.get_model = get_model
    models.get_model_weights = lambda name: TinyWeights
    tv.models = models
    return tv, models


def test_timm_and_torchvision_adapters_load_pretrained_weights_with_their_normalisation(monkeypatch):
    from robustlens.zoo.adapters import normalization, pretrained_classifier

    calls: list = []
    monkeypatch.setitem(sys.modules, "timm", _stub_timm(calls))
    tv, models = _stub_torchvision(calls)
    monkeypatch.setitem(sys.modules, "torchvision", tv)
    monkeypatch.setitem(sys.modules, "torchvision.models", models)

    net = load_model("timm:resnet50")
    assert calls[-1] == ("resnet50", True, {}) and not net.training
    assert normalization(net, (0.1,), (0.9,)) == {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
    clf = pretrained_classifier("timm:resnet50")
    x = torch.rand(2, 3, 2, 2)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    assert torch.allclose(clf.forward(x), clf.model((x - mean.view(3, 1, 1)) / std.view(3, 1, 1)), atol=1e-6)

    net = load_model("torchvision:tiny")
    name, weights, _ = calls[-1]
    assert name == "tiny" and weights is not None and weights.name == "IMAGENET1K_V1"  # DEFAULT, not random
    assert normalization(net) == {"mean": (0.5, 0.4, 0.3), "std": (0.2, 0.2, 0.25)}
    # a model without a recorded normalisation keeps the data set's, and an explicit weights=None records none
    assert normalization(_Tiny(), (0.1,), (0.9,)) == {"mean": (0.1,), "std": (0.9,)}
    from robustlens.zoo.adapters import from_torchvision

    assert normalization(from_torchvision("tiny", weights=None), (0.1,), (0.9,)) == {"mean": None, "std": None}
    with pytest.raises(ConfigError, match="has no weights 'IMAGENET9'"):
        from_torchvision("tiny", weights="IMAGENET9")


def test_install_hints_keep_the_installed_torch(monkeypatch):
    import re

    from robustlens.zoo.adapters import install_hint, torch_wheel_index

    for mod in ("timm", "torchvision", "torchvision.models", "robustbench", "robustbench.utils"):
        monkeypatch.setitem(sys.modules, mod, None)
    index = torch_wheel_index()
    assert index == ("https://download.pytorch.org/whl/cpu" if torch.version.cuda is None else index)
    for source in ("timm:resnet50", "torchvision:resnet18", "robustbench:Standard"):
        with pytest.raises(MissingDependencyError) as e:
            load_model(source)
        text = str(e.value)
        assert f"pip install torchvision --index-url {index}" in text and torch.__version__ in text
        assert not re.search(r"pip install torchvision(?! --index-url)", text)  # never a plain PyPI install
    assert install_hint("timm").endswith("then: pip install timm")
