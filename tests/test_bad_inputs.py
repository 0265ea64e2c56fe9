"""The bad-input catalogue (docs/bad-inputs.md): one row per way of holding robustlens wrong.

Every row is a function registered under the id the catalogue shows in its "test" column. It triggers the problem
through a public entry point and checks the message text (what is wrong, what to do) and, where results are written,
that earlier results survive. ``test_catalogue_matches_the_rows`` keeps the docs table and this file in step.
"""

from __future__ import annotations

import errno
import os
import pickle
import re
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from models import Affine, TinyCNN
from torch import nn

from robustlens import Classifier, ConfigError, InputError, LabelError, RobustLensError, RobustLensWarning
from robustlens.attacks import DeepFool
from robustlens.attacks.fgsm import FGSM
from robustlens.attacks.pgd import PGD
from robustlens.certify import Smoothed, certify_dataset
from robustlens.errors import CorruptFileError, UnsafeLoadError
from robustlens.results import Result
from robustlens.runner import EvaluationResult, StorageError, run_evaluation
from robustlens.zoo import load_model, save_model

ROOT = Path(__file__).resolve().parents[1]
ROWS: dict[str, Callable[[Path], None]] = {}


def row(name: str) -> Callable[[Callable[[Path], None]], Callable[[Path], None]]:
    def register(fn: Callable[[Path], None]) -> Callable[[Path], None]:
        assert name not in ROWS, name
        ROWS[name] = fn
        return fn

    return register


def cnn() -> Classifier:
    return Classifier(TinyCNN(), input_shape=(1, 28, 28))


def affine(d: int = 6, c: int = 3, **kw: object) -> Classifier:
    return Classifier(Affine(d, c), **kw)  # type: ignore[arg-type]


def images(n: int = 3) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(n))


# ------------------------------------------------------------------------------------------ inputs
@row("shape-per-sample")
def _(tmp: Path) -> None:
    with pytest.raises(InputError, match=r"shape \(1, 28, 27\) per sample but the classifier expects \(1, 28, 28\)"):
        FGSM(eps=0.1)(cnn(), torch.rand(2, 1, 28, 27))


@row("channels-model-rejects")
def _(tmp: Path) -> None:
    clf = Classifier(TinyCNN())  # input shape unknown: the model itself rejects the 3 channels
    with pytest.raises(InputError, match=r"model failed on inputs of shape \(2, 3, 28, 28\).*Check the channel count"):
        clf.predict(torch.rand(2, 3, 28, 28))


@row("no-batch-dimension")
def _(tmp: Path) -> None:
    with pytest.raises(InputError, match=r"add a batch dimension with x.unsqueeze\(0\)"):
        affine().predict(torch.rand(6))


@row("mean-std-channels")
def _(tmp: Path) -> None:
    clf = Classifier(TinyCNN(), mean=[0.5, 0.5, 0.5], std=[0.2, 0.2, 0.2])
    with pytest.raises(InputError, match="inputs have 1 channels but mean/std have 3 values"):
        clf.predict(images())


@row("not-a-tensor")
def _(tmp: Path) -> None:
    with pytest.raises(InputError, match=r"must be a torch.Tensor, got ndarray; use torch.as_tensor"):
        affine().predict(torch.rand(2, 6).numpy())  # type: ignore[arg-type]


@row("integer-images-uint8")
def _(tmp: Path) -> None:
    x = (images() * 255).to(torch.uint8)
    with pytest.raises(InputError, match=r"floating point, got torch.uint8.*x.float\(\) / 255"):
        PGD(eps=0.1, steps=2)(cnn(), x)


@row("integer-images-as-float")
def _(tmp: Path) -> None:
    x = (images() * 255).round()
    msg = r"outside the classifier's bounds \[0, 1\].*look like 0-255 pixels: divide by 255"
    with pytest.raises(InputError, match=msg):
        DeepFool()(cnn(), x)


@row("normalized-inputs")
def _(tmp: Path) -> None:
    x = (images() - 0.1307) / 0.3081
    with pytest.raises(InputError, match="already normalized.*give mean/std to Classifier"):
        cnn().predict(x)


@row("float64-inputs")
def _(tmp: Path) -> None:
    # accepted: inputs follow the model's dtype; the results equal those of float32 inputs
    clf, x = cnn(), images()
    a = FGSM(eps=0.05)(clf, x.double(), seed=1)
    b = FGSM(eps=0.05)(clf, x, seed=1)
    assert a.adversarial.dtype == torch.float32
    assert torch.equal(a.adversarial, b.adversarial)


@row("nan-inputs")
def _(tmp: Path) -> None:
    x = images()
    x[1, 0, 3, 3] = float("nan")
    with pytest.raises(InputError, match="1 input\\(s\\) contain NaN or Inf values; clean or drop them"):
        Smoothed(cnn(), 0.25).predict(x, n=10)


@row("inf-inputs")
def _(tmp: Path) -> None:
    x = images()
    x[0, 0, 0, 0] = float("inf")
    x[2, 0, 0, 0] = float("-inf")
    with pytest.raises(InputError, match="2 input\\(s\\) contain NaN or Inf"):
        FGSM(eps=0.1)(cnn(), x, torch.tensor([0, 1, 2]))


@row("empty-batch")
def _(tmp: Path) -> None:
    with pytest.raises(InputError, match=r"input batch is empty \(N = 0\)"):
        DeepFool()(cnn(), torch.rand(0, 1, 28, 28))


@row("empty-dataset")
def _(tmp: Path) -> None:
    clf = cnn()
    with pytest.raises(InputError, match="dataset is empty: nothing to evaluate; check the split and any filters"):
        certify_dataset(Smoothed(clf, 0.25), (torch.rand(0, 1, 28, 28), torch.zeros(0, dtype=torch.long)), n0=2,
                        n=4, progress=False)
    with pytest.raises(InputError, match="dataset is empty"):
        run_evaluation(lambda bx, by, bi: {"v": bx}, [], progress=False)


# ------------------------------------------------------------------------------------------ labels
@row("labels-out-of-range")
def _(tmp: Path) -> None:
    msg = r"range over \[1, 10\] but the model has 10 classes.*1-based labels need y - 1"
    with pytest.raises(LabelError, match=msg):
        PGD(eps=0.1, steps=1)(cnn(), images(), torch.tensor([1, 10, 3]))


@row("labels-negative")
def _(tmp: Path) -> None:
    with pytest.raises(LabelError, match=r"range over \[-1, 2\].*check the label encoding"):
        cnn().loss_and_input_grad(images(), torch.tensor([0, -1, 2]))


@row("labels-wrong-length")
def _(tmp: Path) -> None:
    with pytest.raises(LabelError, match="got 2 labels for 3 inputs; pass one label per input"):
        DeepFool()(cnn(), images(), torch.tensor([0, 1]))
    with pytest.raises(InputError, match="3 inputs but 2 labels; pass one label per input"):
        run_evaluation(lambda bx, by, bi: {"v": bx}, (images(), torch.tensor([0, 1])), progress=False)


@row("labels-one-hot")
def _(tmp: Path) -> None:
    y = torch.nn.functional.one_hot(torch.tensor([0, 1, 2]), 10).float()
    with pytest.raises(LabelError, match=r"look one-hot or like probabilities.*y.argmax\(1\)"):
        FGSM(eps=0.1)(cnn(), images(), y)


@row("labels-float")
def _(tmp: Path) -> None:
    with pytest.raises(LabelError, match=r"integer class indices, got dtype torch.float32; use y.long\(\)"):
        Smoothed(cnn(), 0.25).certify(images(), torch.tensor([0.0, 1.0, 2.0]), n0=2, n=4)


@row("targets-equal-labels")
def _(tmp: Path) -> None:
    with pytest.raises(ConfigError, match="targets equal the true labels; a targeted attack needs a different class"):
        PGD(eps=0.1, steps=1)(cnn(), images(), torch.tensor([0, 1, 2]), target=torch.tensor([0, 5, 6]))


@row("unknown-target")
def _(tmp: Path) -> None:
    with pytest.raises(ConfigError, match="unknown target 'furthest'; use None, a label tensor, 'random' or"):
        FGSM(eps=0.1)(cnn(), images(), target="furthest")


# ------------------------------------------------------------------------------------------ models
@row("probabilities-output")
def _(tmp: Path) -> None:
    clf = Classifier(nn.Sequential(Affine(6, 3), nn.Softmax(dim=1)))
    with pytest.warns(RobustLensWarning, match="look like probabilities, not logits.*remove the final softmax"):
        DeepFool()(clf, torch.rand(4, 6))


@row("log-probabilities-output")
def _(tmp: Path) -> None:
    # accepted without a message: log-softmax shifts each sample's logits by one constant, which changes no decision,
    # margin, cross-entropy or gradient; the attacks return the same examples as on the logits
    net = Affine(6, 3)
    x = torch.rand(8, 6, generator=torch.Generator().manual_seed(2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        logp = PGD(norm=2, eps=0.3, steps=5)(Classifier(nn.Sequential(net, nn.LogSoftmax(1))), x, seed=3)
    logits = PGD(norm=2, eps=0.3, steps=5)(Classifier(net), x, seed=3)
    assert torch.allclose(logp.adversarial, logits.adversarial, atol=1e-5)
    assert torch.equal(logp.success, logits.success)


@row("tuple-output")
def _(tmp: Path) -> None:
    class Pair(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(6, 3)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return self.lin(x), x

    with pytest.raises(RobustLensError, match="must return logits of shape.*Wrap models that return tuples"):
        Classifier(Pair()).predict(torch.rand(2, 6))


@row("train-mode-batchnorm-dropout")
def _(tmp: Path) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.Linear(8, 3))
    x = torch.rand(5, 6, generator=torch.Generator().manual_seed(1))
    net.eval()
    expected = DeepFool()(Classifier(net), x)
    stats = net[1].running_mean.clone()
    net.train()
    with pytest.warns(RobustLensWarning, match="train mode and has BatchNorm/Dropout.*Call model.eval\\(\\)"):
        got = DeepFool()(Classifier(net), x)
    assert net.training and all(m.training for m in net.modules())  # the caller's flags are restored
    assert torch.equal(net[1].running_mean, stats)  # BatchNorm statistics were not updated by the analysis
    assert torch.equal(got.adversarial, expected.adversarial)


@row("parameterless-model")
def _(tmp: Path) -> None:
    with pytest.raises(RobustLensError, match="no parameters.*pass allow_parameterless=True"):
        Classifier(nn.Flatten())


@row("model-moved-device")
def _(tmp: Path) -> None:
    net = Affine(6, 3)
    clf = Classifier(net)
    net.to("meta")  # stands for net.cuda() after wrapping: the parameters leave the inputs' device
    with pytest.raises(InputError, match="on different devices.*moves inputs to cpu.*wrap it again"):
        FGSM(eps=0.1)(clf, torch.rand(2, 6))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_model_moved_to_cuda_after_wrapping() -> None:
    net = Affine(6, 3)
    clf = Classifier(net)
    net.cuda()
    with pytest.raises(InputError, match="on different devices.*wrap it again"):
        FGSM(eps=0.1)(clf, torch.rand(2, 6))
    clf = Classifier(net)  # inputs on the CPU follow a CUDA model
    res = FGSM(eps=0.1)(clf, torch.rand(2, 6))
    assert res.adversarial.device.type == "cuda"


@row("model-converted-dtype")
def _(tmp: Path) -> None:
    net = Affine(6, 3)
    clf = Classifier(net)
    net.double()
    with pytest.raises(InputError, match="different dtypes.*casts inputs to torch.float32.*wrap it again"):
        clf.predict(torch.rand(2, 6))


# ------------------------------------------------------------------------------------------ settings
@row("eps-negative")
def _(tmp: Path) -> None:
    with pytest.raises(ConfigError, match="eps must be a finite number >= 0, got -0.1"):
        PGD(eps=-0.1)


@row("eps-not-finite")
def _(tmp: Path) -> None:
    with pytest.raises(ConfigError, match="eps must be a finite number >= 0, got nan"):
        FGSM(eps=float("nan"))


@row("unknown-norm")
def _(tmp: Path) -> None:
    with pytest.raises(ConfigError, match="unknown norm 'l3x'; use one of 0, 1, 2, 'inf'"):
        DeepFool(norm="l3x")


@row("norm-below-one")
def _(tmp: Path) -> None:
    with pytest.raises(ConfigError, match=r"norm order must be 0 or >= 1 \(1, 2, inf...\), got 0.5"):
        PGD(norm=0.5, eps=0.1)


@row("attack-step-negative")
def _(tmp: Path) -> None:
    for alpha in (-0.01, 0.0, float("nan")):
        with pytest.raises(ConfigError, match="PGD: alpha must be a finite number > 0"):
            PGD(eps=0.1, alpha=alpha, random_start=False)


@row("attack-count-not-integer")
def _(tmp: Path) -> None:
    with pytest.raises(ConfigError, match=r"DeepFool: max_iter must be an integer >= 1, got 2.5 \(not a whole"):
        DeepFool(max_iter=2.5)  # type: ignore[arg-type]


@row("normalization-nan")
def _(tmp: Path) -> None:
    with pytest.raises(ConfigError, match="Classifier: std must be a finite number > 0, got nan"):
        Classifier(TinyCNN(), mean=0.5, std=float("nan"))
    with pytest.raises(ConfigError, match=r"Classifier: mean\[1\] must be a finite number, got nan"):
        Classifier(TinyCNN(), mean=[0.5, float("nan"), 0.5], std=[0.2, 0.2, 0.2])


@row("nan-logits-at-clean-inputs")
def _(tmp: Path) -> None:
    clf = Classifier(_NaNNet(), input_shape=(6,))
    x = torch.rand(3, 6)
    with pytest.raises(InputError, match=r"NaN or Inf logits for 3 of 3 input\(s\).*argmax would silently call "
                                         "them class 0"):
        clf.accuracy(x, torch.zeros(3, dtype=torch.long))
    with pytest.raises(InputError, match=r"DeepFool: the model returns NaN or Inf logits for 3 of 3 clean input\(s\)"
                                         r".*invalid='mark'"):
        DeepFool()(clf, x)


@row("nan-gradient")
def _(tmp: Path) -> None:
    clf = Classifier(_SqrtNet(), input_shape=(6,))
    x = torch.rand(4, 6)
    x[:, 0] = 0.0  # sqrt'(0) * sqrt(0) = inf * 0 = NaN
    with pytest.warns(RobustLensWarning, match="DeepFool stopped on 4 of 4 samples: the model's input gradient"):
        res = DeepFool()(clf, x)
    with pytest.raises(InputError, match="robust accuracy is unknown: deepfool stopped on 4 correctly classified"):
        res.robust_accuracy([0.1])


@row("stochastic-model")
def _(tmp: Path) -> None:
    net = nn.Sequential(nn.Linear(6, 3), _AlwaysDropout())
    with pytest.raises(RobustLensError, match="two forward passes of the same inputs gave different logits.*"
                                              "stochastic=True"):
        FGSM(eps=0.1)(Classifier(net), torch.rand(3, 6))
    x = torch.rand(3, 6, generator=torch.Generator().manual_seed(0))
    res = FGSM(eps=0.1)(Classifier(net, stochastic=True, draws=4), x, seed=1)
    again = FGSM(eps=0.1)(Classifier(net, stochastic=True, draws=4), x, seed=1)
    assert torch.equal(res.success, again.success) and torch.equal(res.adversarial, again.adversarial)


@row("one-class-model")
def _(tmp: Path) -> None:
    with pytest.raises(RobustLensError, match=r"returns 1 logit per sample.*torch.cat\(\[-s, s\], 1\)"):
        DeepFool()(Classifier(nn.Linear(6, 1)), torch.rand(2, 6))


@row("no-gradient-path")
def _(tmp: Path) -> None:
    with pytest.raises(RobustLensError, match="do not depend differentiably on its input.*gradient-free attack"):
        PGD(eps=0.1)(Classifier(_DetachNet()), torch.rand(2, 6))


@row("reduced-precision-model")
def _(tmp: Path) -> None:
    with pytest.warns(RobustLensWarning, match="bfloat16.*analyses a float32 copy"):
        clf = Classifier(Affine(6, 3).to(torch.bfloat16))
    x = torch.rand(4, 6)
    ref = Classifier(Affine(6, 3).to(torch.bfloat16).float())
    assert torch.equal(DeepFool()(clf, x).success, DeepFool()(ref, x).success)


class _NaNNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) * float("nan")


class _SqrtNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = Affine(6, 3).linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(torch.sqrt(x) * torch.sqrt(x))


class _DetachNet(_NaNNet):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.detach())


class _AlwaysDropout(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.dropout(x, 0.5, training=True)


@row("sigma-not-positive")
def _(tmp: Path) -> None:
    with pytest.raises(ConfigError, match="sigma must be a finite number > 0, got 0.0"):
        Smoothed(cnn(), 0.0)


# ------------------------------------------------------------------------------------------ model files
class _Payload:
    """Unpickling this object creates a file: proof that loading ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def _saved(tmp: Path, suffix: str) -> tuple[Path, nn.Module]:
    net = Affine(6, 3)
    return save_model(net, tmp / f"m{suffix}"), net


@row("checkpoint-random-bytes")
def _(tmp: Path) -> None:
    p = tmp / "m.pt"
    p.write_bytes(os.urandom(64).replace(b"\x80", b"\x00").replace(b"PK", b"pk"))
    with pytest.raises(CorruptFileError, match="neither a safetensors file nor a torch.save checkpoint.*corrupt"):
        load_model(p, Affine(6, 3))


@row("checkpoint-truncated")
def _(tmp: Path) -> None:
    p, _net = _saved(tmp, ".pt")
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    with pytest.raises(CorruptFileError, match="could not be read.*truncated or corrupt.*save or download it again"):
        load_model(p, Affine(6, 3))


@row("safetensors-truncated")
def _(tmp: Path) -> None:
    p, _net = _saved(tmp, ".safetensors")
    p.write_bytes(p.read_bytes()[:40])
    with pytest.raises(CorruptFileError, match="truncated safetensors file.*save or download the model again"):
        load_model(p, Affine(6, 3))


@row("checkpoint-empty")
def _(tmp: Path) -> None:
    p = tmp / "m.safetensors"
    p.write_bytes(b"")
    with pytest.raises(CorruptFileError, match=r"is empty \(0 bytes\): the save was interrupted"):
        load_model(p, Affine(6, 3))


@row("checkpoint-full-pickle")
def _(tmp: Path) -> None:
    marker = tmp / "ran"
    p = tmp / "m.pt"
    torch.save({"model": Affine(6, 3), "hook": _Payload(marker)}, p)
    with pytest.raises(UnsafeLoadError, match="full pickle.*execute arbitrary code.*unsafe=True.*state_dict"):
        load_model(p)
    assert not marker.exists()  # nothing in the file ran
    net = load_model(p, unsafe=True)  # the explicit flag loads it (and runs it)
    assert isinstance(net, nn.Module) and marker.exists()


@row("pickled-module-file")
def _(tmp: Path) -> None:
    p = tmp / "m.pt"
    torch.save(Affine(6, 3), p)  # torch.save(model) instead of torch.save(model.state_dict())
    with pytest.raises(UnsafeLoadError, match="refusing to load.*re-save it as weights only"):
        load_model(p, Affine(6, 3))


@row("weights-wrong-architecture")
def _(tmp: Path) -> None:
    p, _net = _saved(tmp, ".safetensors")
    with pytest.raises(ConfigError, match="do not fit Affine.*check the architecture"):
        load_model(p, Affine(6, 4))


@row("weights-without-architecture")
def _(tmp: Path) -> None:
    p = tmp / "sd.pt"
    torch.save(Affine(6, 3).state_dict(), p)
    with pytest.raises(ConfigError, match="holds weights but no architecture; pass model="):
        load_model(p)


@row("data-pickle-with-code")
def _(tmp: Path) -> None:
    from robustlens.data.cifar import read_batch

    marker = tmp / "ran"
    p = tmp / "data_batch_1"
    p.write_bytes(pickle.dumps({b"data": _Payload(marker), b"labels": [0, 1]}))
    msg = r"refusing to unpickle (io|builtins).open: a CIFAR batch holds only arrays.*not a genuine batch"
    with pytest.raises(UnsafeLoadError, match=msg):
        read_batch(p)
    assert not marker.exists()


# ------------------------------------------------------------------------------------------ state and results
def _fn(bx: torch.Tensor, by: torch.Tensor | None, bi: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"s": bx.sum(1) + bi}


def _snapshot(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


@row("state-dir-of-another-run")
def _(tmp: Path) -> None:
    x = torch.rand(6, 3)
    run_evaluation(_fn, x, state_dir=tmp, batch_size=2, config={"eps": 0.1}, seed=0, progress=False)
    before = _snapshot(tmp)
    with pytest.raises(ConfigError, match="holds an evaluation with other settings(.|\n)*config.eps: 0.1 recorded, "
                       "0.2 now(.|\n)*another state_dir, or overwrite=True"):
        run_evaluation(_fn, x, state_dir=tmp, batch_size=2, config={"eps": 0.2}, seed=0, resume=True,
                       progress=False)
    assert _snapshot(tmp) == before  # the refused run touched nothing


@row("state-dir-without-resume")
def _(tmp: Path) -> None:
    x = torch.rand(4, 3)
    run_evaluation(_fn, x, state_dir=tmp, batch_size=2, progress=False)
    before = _snapshot(tmp)
    with pytest.raises(ConfigError, match="already holds an evaluation; pass resume=True to continue it, overwrite"):
        run_evaluation(_fn, x, state_dir=tmp, batch_size=2, progress=False)
    assert _snapshot(tmp) == before


@row("state-dir-foreign-files")
def _(tmp: Path) -> None:
    (tmp / "batch_000000.npz").write_bytes(b"not ours")
    with pytest.raises(ConfigError, match="holds batch files but no manifest.json.*choose an empty state_dir"):
        run_evaluation(_fn, torch.rand(4, 3), state_dir=tmp, batch_size=2, progress=False)
    assert (tmp / "batch_000000.npz").read_bytes() == b"not ours"


def _fail_fsync_after(monkeypatch: pytest.MonkeyPatch, ok: int) -> None:
    """Simulate a full disk: the first ``ok`` flushes to disk succeed, then every one fails with ENOSPC."""
    real = os.fsync
    calls = [0]

    def fsync(fd: int) -> None:
        calls[0] += 1
        if calls[0] > ok:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


@row("full-disk-runner")
def _(tmp: Path) -> None:
    x = torch.rand(8, 3)
    reference = run_evaluation(_fn, x, batch_size=2, progress=False)
    with pytest.MonkeyPatch.context() as mp:
        _fail_fsync_after(mp, ok=3)  # the manifest and two batches are written, then the disk is full
        with pytest.raises(StorageError, match="no space left on device(.|\n)*2 batch\\(es\\) finished before are "
                           "kept intact(.|\n)*free some space.*resume=True"):
            run_evaluation(_fn, x, state_dir=tmp, batch_size=2, progress=False)
    assert sorted(p.name for p in tmp.iterdir()) == ["batch_000000.npz", "batch_000001.npz", "manifest.json"]
    resumed = run_evaluation(_fn, x, state_dir=tmp, batch_size=2, resume=True, progress=False)
    assert torch.equal(resumed["s"], reference["s"])
    assert isinstance(EvaluationResult.load(tmp / "result.npz"), EvaluationResult)


@row("full-disk-result-save")
def _(tmp: Path) -> None:
    res = FGSM(eps=0.1)(cnn(), images(), seed=0)
    path = res.save(tmp / "fgsm.json")
    before = _snapshot(tmp)
    with pytest.MonkeyPatch.context() as mp:
        _fail_fsync_after(mp, ok=0)
        full = r"could not write .*fgsm.*No space left on device\. Free some space"
        with pytest.raises(StorageError, match=full) as e:
            FGSM(eps=0.2)(cnn(), images(), seed=0).save(path)
    assert e.value.errno == errno.ENOSPC and isinstance(e.value.__cause__, OSError)
    assert _snapshot(tmp) == before  # the earlier result is intact and no temporary file is left
    again = Result.load(path)
    assert torch.equal(again.adversarial, res.adversarial)  # type: ignore[attr-defined]


@row("result-file-extension")
def _(tmp: Path) -> None:
    res = FGSM(eps=0.1)(cnn(), images(), seed=0)
    with pytest.raises(ConfigError, match=r"a result file must end in \.json \(one strict JSON file, arrays inside\) "
                       r"or \.npz \(a NumPy archive"):
        res.save(tmp / "fgsm.txt")
    assert list(tmp.iterdir()) == []
    res.save(tmp / "fgsm.npz")  # an .npz path holds the whole result: nothing beside it
    assert [p.name for p in tmp.iterdir()] == ["fgsm.npz"]


@row("runner-damaged-batch")
def _(tmp: Path) -> None:
    x = torch.rand(6, 3)
    reference = run_evaluation(_fn, x, state_dir=tmp, batch_size=2, progress=False)
    (tmp / "batch_000001.npz").write_bytes((tmp / "batch_000001.npz").read_bytes()[:-30])  # truncated
    with pytest.warns(RobustLensWarning, match="batch_000001.npz is damaged or does not match its batch .*; "
                      "recomputing it"):
        resumed = run_evaluation(_fn, x, state_dir=tmp, batch_size=2, resume=True, progress=False)
    assert torch.equal(resumed["s"], reference["s"])


@row("state-dir-in-use")
def _(tmp: Path) -> None:
    import subprocess
    import sys
    import time

    code = ("import sys, time; from robustlens.state import OutputLock\n"
            "with OutputLock(sys.argv[1], 'evaluation'):\n    print('held', flush=True); time.sleep(60)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        t0 = time.perf_counter()
        with pytest.raises(ConfigError, match=f"is in use by another evaluation \\(pid {proc.pid} on .*\\); wait "
                           "for it to finish or choose another output folder"):
            run_evaluation(_fn, torch.rand(4, 3), state_dir=tmp, batch_size=2, progress=False)
        assert time.perf_counter() - t0 < 5  # refused at once, not after waiting
    finally:
        proc.kill()
        proc.wait()
    assert not (tmp / "manifest.json").exists()


@row("model-arch-larger-than-weights")
def _(tmp: Path) -> None:
    import json

    from safetensors.torch import save_file

    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 4), nn.ReLU(), nn.Linear(4, 10))
    arch = {"name": "mlp", "num_classes": 10, "in_channels": 1, "input_size": 28, "hidden": [200000, 200000]}
    save_file({f"net.{k}": v for k, v in net.state_dict().items()}, str(tmp / "m.safetensors"),
              metadata={"robustlens.arch": json.dumps(arch)})
    with pytest.raises(CorruptFileError, match="the architecture recorded in .* asks for a model larger than the "
                       "weights in the file .*refusing to build it: pass the architecture yourself"):
        load_model(tmp / "m.safetensors")


@row("model-arch-malformed")
def _(tmp: Path) -> None:
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp / "m.safetensors"), metadata={"robustlens.arch": '{"name": "mlp",'})
    with pytest.raises(CorruptFileError, match="records an architecture that is not valid JSON .*pass the "
                       "architecture yourself \\(model=..., --arch on the command line\\) or save the model again"):
        load_model(tmp / "m.safetensors")


@row("model-nonfinite-weights")
def _(tmp: Path) -> None:
    net = TinyCNN()
    with torch.no_grad():
        next(net.parameters()).view(-1)[0] = float("nan")
    save_model(net, tmp / "nan.safetensors")
    with pytest.raises(CorruptFileError, match=r"holds non-finite weights: .* \(1 NaN, 0 inf of .*meaningless "
                       "logits.*pass allow_nonfinite=True to load it anyway"):
        load_model(tmp / "nan.safetensors", TinyCNN())


@row("runner-nan-in-config")
def _(tmp: Path) -> None:
    x = torch.rand(4, 3)
    config = {"eps": float("nan"), "grid": torch.tensor([float("nan"), float("inf")])}
    first = run_evaluation(_fn, x, state_dir=tmp, batch_size=2, config=config, progress=False)
    again = run_evaluation(_fn, x, state_dir=tmp, batch_size=2, config=dict(config), resume=True, progress=False)
    assert torch.equal(first["s"], again["s"])  # NaN settings match themselves: the run resumes


# ------------------------------------------------------------------------------------------ command line
def _cli(args: list[str], cwd: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    from typer.testing import CliRunner

    from robustlens.cli import app

    monkeypatch.chdir(cwd)
    res = CliRunner().invoke(app, args)
    text = res.output + ("" if res.exception is None else f"{type(res.exception).__name__}: {res.exception}")
    return res.exit_code, text


def _plant(tmp: Path) -> Path:
    """Python files in the working folder that create ``planted`` when imported."""
    marker = tmp / "planted"
    code = f"open({str(marker)!r}, 'w').close()\n"
    for name in ("model.py", "models.py", "robustlens_plugin.py", "sitecustomize.py", "conftest.py"):
        (tmp / name).write_text(code)
    return marker


@row("cli-pickled-model")
def _(tmp: Path) -> None:
    marker = tmp / "ran"
    torch.save({"model": Affine(6, 3), "hook": _Payload(marker)}, tmp / "evil.pt")
    planted = _plant(tmp)
    with pytest.MonkeyPatch.context() as mp:
        code, text = _cli(["certify", "--model", "evil.pt", "--device", "cpu", "--limit", "2", "--no-progress"],
                          tmp, mp)
    assert code != 0
    assert re.search("refusing to load.*--unsafe-pickle", text.replace("\n", " ")), text
    assert not marker.exists() and not planted.exists()


@row("cli-model-file-named")
def _(tmp: Path) -> None:
    planted = _plant(tmp)
    ran = tmp / "factory_ran"
    (tmp / "arch.py").write_text(
        f"import sys\nsys.path.insert(0, {str(Path(__file__).parent)!r})\nfrom models import TinyCNN\n"
        f"def make():\n    open({str(ran)!r}, 'w').close()\n    return TinyCNN(size=8)\n"
    )
    save_model(TinyCNN(size=8), tmp / "w.safetensors")
    with pytest.MonkeyPatch.context() as mp:
        code, text = _cli(["certify", "--model", "arch.py:make=w.safetensors", "--data", "digits", "--device", "cpu",
                           "--limit", "2", "--n0", "4", "--n", "8", "--batch-size", "8", "--no-progress",
                           "--out", "c.json"], tmp, mp)
    assert code == 0, text
    assert ran.exists()  # the file named on the command line ran ...
    assert not planted.exists()  # ... and nothing else in the folder did
    assert (tmp / "c.json").is_file()


# ------------------------------------------------------------------------------------------ the catalogue
@pytest.mark.parametrize("name", sorted(ROWS))
def test_bad_input(name: str, tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RobustLensWarning)
        warnings.simplefilter("ignore", UserWarning)
        ROWS[name](tmp_path)


def test_catalogue_matches_the_rows() -> None:
    text = (ROOT / "docs" / "bad-inputs.md").read_text()
    listed = re.findall(r"^\|.*\|\s*`([a-z0-9-]+)`\s*\|\s*$", text, flags=re.M)
    assert len(listed) == len(set(listed)), "a row is listed twice"
    assert sorted(listed) == sorted(ROWS), (sorted(set(ROWS) - set(listed)), sorted(set(listed) - set(ROWS)))
    assert len(listed) >= 20


def test_checkpoints_are_read_with_weights_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[object] = []
    real = torch.load

    def spy(*args: object, **kwargs: object) -> object:
        seen.append(kwargs.get("weights_only"))
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(torch, "load", spy)
    p, net = _saved(tmp_path, ".pt")
    loaded = load_model(p, Affine(6, 3))
    assert seen == [True]
    assert torch.equal(loaded.linear.weight, net.linear.weight)  # type: ignore[union-attr]
    q, _ = _saved(tmp_path, ".safetensors")
    load_model(q, Affine(6, 3))
    assert seen == [True]  # safetensors files never go through pickle


@pytest.mark.slow
def test_console_script_imports_nothing_from_the_working_folder(tmp_path: Path) -> None:
    import subprocess
    import sys

    script = Path(sys.executable).parent / "robustlens"
    assert script.exists(), "the robustlens console script is missing: install the package (make install-dev)"
    planted = _plant(tmp_path)
    marker = tmp_path / "ran"
    torch.save({"model": Affine(6, 3), "hook": _Payload(marker)}, tmp_path / "evil.pt")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["OMP_NUM_THREADS"] = "1"
    out = subprocess.run([str(script), "certify", "--model", "evil.pt", "--device", "cpu", "--no-progress"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "refusing to load" in out.stderr + out.stdout
    assert not marker.exists() and not planted.exists()
