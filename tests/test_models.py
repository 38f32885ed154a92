"""The architecture zoo: one conformance table over every registered model, plus what each family promises.

The table iterates the registry, so a new architecture is covered as soon as it is registered; give it
small params in ``SMALL`` if its defaults are too slow for the default suite.
"""

from __future__ import annotations

import copy
import inspect

import numpy as np
import pytest
import torch
from torch.func import functional_call, stack_module_state, vmap

from cyphercat.config import TrainingSpec
from cyphercat.errors import CyphercatError
from cyphercat.models import sklearn as sk
from cyphercat.models.zoo import build_model, check_output, is_sklearn
from cyphercat.registry import MODELS
from cyphercat.training.trainer import predict_logits, train_model

NUM_CLASSES = 3
N = 16
VOCAB, PAD = 50, 0
# A small record per modality; the image is non-square and not a power of two on purpose.
SHAPES = {"image": (3, 12, 10), "audio": (1, 16, 20), "text": (12,), "tabular": (10,)}
# Small widths so the whole table runs in seconds on two CPU cores.
SMALL = {
    "mlp": {"hidden": [16]},
    "cnn": {"channels": [4, 8], "hidden": 16},
    "lenet": {"channels": [4, 8], "hidden": [16, 12]},
    "alexnet": {"width": 4, "hidden": [16, 16]},
    "vgg11": {"width": 4},
    "vgg16": {"width": 4},
    "resnet18": {"width": 4},
    "resnet20": {"width": 4},
    "wrn16_4": {"width": 4, "widen": 1},
    "audio_cnn": {"channels": [4, 8]},
    "text_embedding_bag": {"dim": 8},
    "text_bilstm": {"dim": 8, "hidden": 8},
    "text_transformer": {"dim": 8, "heads": 2, "layers": 1},
    "svc": {},
    "random_forest": {"n_estimators": 10},
    "knn": {"n_neighbors": 3},
}
TORCH = [n for n in MODELS.names() if not is_sklearn(MODELS.get(n))]
SKLEARN = [n for n in MODELS.names() if is_sklearn(MODELS.get(n))]
TEXT = [n for n in TORCH if MODELS.get(n).modalities[0] == "text"]


pytestmark = pytest.mark.usefixtures("one_thread")


def modality_of(name: str) -> str:
    return MODELS.get(name).modalities[0]


def params_for(name: str) -> dict:
    params = dict(SMALL.get(name, {}))
    if modality_of(name) == "text":
        params.update(vocab_size=VOCAB, pad_id=PAD)
    return params


def make_data(modality: str, n: int = N, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Records whose label is written into the input, so every architecture can fit them."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % NUM_CLASSES
    if modality == "text":
        x = rng.integers(1, VOCAB, size=(n, SHAPES["text"][0]))
        x[:, 0] = 1 + y  # label token
        x[:, -3:] = PAD  # right padding
        return x.astype(np.int64), y
    x = rng.normal(size=(n, *SHAPES[modality])).astype(np.float32)
    x.reshape(n, -1)[:, :NUM_CLASSES] += 3.0 * np.eye(NUM_CLASSES, dtype=np.float32)[y]
    if modality in ("image", "audio"):
        x += (y[:, None, None, None] - 1.0).astype(np.float32)
    return x, y


def build(name: str, seed: int = 0, shape: tuple[int, ...] | None = None, **extra):
    shape = shape or SHAPES[modality_of(name)]
    return build_model(name, {**params_for(name), **extra}, shape, NUM_CLASSES, seed=seed)


def test_registry_has_the_zoo():
    expected = {"lenet", "alexnet", "vgg11", "vgg16", "resnet18", "resnet20", "wrn16_4", "audio_cnn",
                "text_embedding_bag", "text_bilstm", "text_transformer", "mlp", "logreg", "cnn",
                "svc", "random_forest", "logistic_regression_sk", "knn"}
    assert expected <= set(MODELS.names())
    for name, factory in MODELS.items():
        assert factory.framework in ("torch", "sklearn"), name
        assert factory.description and factory.modalities, name


@pytest.mark.parametrize("name", TORCH)
def test_torch_conformance(name):
    x, y = make_data(modality_of(name))
    net = build(name, seed=1)
    check_output(net, torch.from_numpy(x), NUM_CLASSES)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    train_model(net, x, y, TrainingSpec(epochs=1, batch_size=8, lr=1e-2), seed=3)
    assert not net.training
    changed = [k for k, v in net.state_dict().items() if v.is_floating_point() and not torch.equal(v, before[k])]
    assert changed, "one epoch of training changed no parameter"
    logits = predict_logits(net, x)
    assert logits.shape == (N, NUM_CLASSES) and np.isfinite(logits).all()

    # Same seed: identical initial parameters and outputs; another seed: different ones.
    a, b, c = build(name, seed=7), build(name, seed=7), build(name, seed=8)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa if sa[k].is_floating_point())
    np.testing.assert_array_equal(predict_logits(a, x), predict_logits(b, x))
    assert not np.allclose(predict_logits(a, x), predict_logits(c, x))


@pytest.mark.parametrize("name", TORCH)
def test_torch_models_can_fit_a_small_batch(name):
    """A real training signal flows through every layer: within 60 full-batch Adam steps the model gets all
    16 records, whose label is planted in the input, right (at some epoch: Adam at lr 1e-2 may overshoot)."""
    x, y = make_data(modality_of(name))
    # Dropout would make train accuracy noisy; switch it off where the architecture has it.
    no_dropout = {"dropout": 0.0} if "dropout" in inspect.signature(MODELS.get(name)).parameters else {}
    net = build(name, seed=2, **no_dropout)
    accuracy: list[float] = []

    def fitted(epoch, model):
        accuracy.append(float((predict_logits(model, x).argmax(1) == y).mean()))
        return accuracy[-1] == 1.0

    train_model(net, x, y, TrainingSpec(epochs=60, batch_size=N, lr=1e-2), seed=0, epoch_callback=fitted)
    assert accuracy[-1] == 1.0, f"{name} fitted at best {max(accuracy):.0%} of 16 planted records"


# embedding_bag with padding_idx has no vmap batching rule yet: torch loops over the models (correct, slower).
@pytest.mark.filterwarnings("ignore:There is a performance drop")
@pytest.mark.parametrize("name", [n for n in TORCH if MODELS.get(n).batchable])
def test_batchable_models_run_under_vmap(name):
    """What ``batchable=True`` promises the ensemble trainer: a stack of models runs as one vmapped call,
    with the same outputs as the models one by one, and gradients for every model."""
    x = torch.from_numpy(make_data(modality_of(name), n=6)[0])
    nets = [build(name, seed=s).eval() for s in (0, 1)]
    params, buffers = stack_module_state(nets)
    base = copy.deepcopy(nets[0]).to("meta")

    def call(p, b, xx):
        return functional_call(base, (p, b), (xx,))

    out = vmap(call, in_dims=(0, 0, None))(params, buffers, x)
    for i, net in enumerate(nets):
        torch.testing.assert_close(out[i], net(x), atol=1e-5, rtol=1e-4)
    base.train()
    out = vmap(call, in_dims=(0, 0, None), randomness="different")(params, buffers, x)
    grads = torch.autograd.grad(out.square().sum(), list(params.values()), allow_unused=True)
    assert all(g is None or torch.isfinite(g).all() for g in grads)
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_batch_norm_and_lstm_are_not_batchable():
    for name in ("resnet18", "resnet20", "wrn16_4", "vgg11", "vgg16", "text_bilstm"):
        assert not MODELS.get(name).batchable, name


@pytest.mark.parametrize("name", [n for n in TORCH if "image" in MODELS.get(n).modalities])
@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32), (1, 62, 47), (1, 40, 8)])
def test_image_models_fit_common_sizes(name, shape):
    """8x8 digits, MNIST, CIFAR, LFW crops and a narrow strip all give one logit per class."""
    net = build(name, shape=shape).eval()
    with torch.no_grad():
        out = net(torch.rand(2, *shape))
    assert out.shape == (2, NUM_CLASSES) and torch.isfinite(out).all()


@pytest.mark.parametrize(("name", "shape", "count"), [
    ("lenet", (1, 28, 28), 61_706),  # LeNet-5 on MNIST (LeCun et al. 1998)
    ("resnet20", (3, 32, 32), 269_722),  # "0.27M" in He et al. 2016, option A shortcuts
    ("resnet18", (3, 32, 32), 11_173_962),  # the usual CIFAR ResNet-18
    ("wrn16_4", (3, 32, 32), 2_748_890),  # WRN-16-4, "2.7M" in Zagoruyko & Komodakis 2016
    ("vgg16", (3, 32, 32), 14_724_042),  # CIFAR VGG-16-BN, no conv bias before batch norm
])
def test_default_sizes_match_the_papers(name, shape, count):
    net = build_model(name, {}, shape, 10, seed=0)
    assert sum(p.numel() for p in net.parameters()) == count



@pytest.mark.parametrize("name", TEXT)
def test_text_models_survive_all_padding(name):
    x, y = make_data("text", n=8)
    x[:3] = PAD
    net = build(name)
    train_model(net, x, y, TrainingSpec(epochs=2, batch_size=4), seed=0)
    for mode in (True, False):
        net.train(mode)
        out = net(torch.from_numpy(x))
        assert torch.isfinite(out).all(), f"NaN/inf logits (training={mode})"
        grads = torch.autograd.grad(out.sum(), [p for p in net.parameters() if p.requires_grad], allow_unused=True)
        assert all(g is None or torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", TEXT)
def test_text_models_ignore_where_padding_sits(name):
    x, _ = make_data("text", n=4)  # right-padded
    left = np.full_like(x, PAD)
    left[:, 3:] = x[:, :-3]
    net = build(name).eval()
    with torch.no_grad():
        torch.testing.assert_close(net(torch.from_numpy(left)), net(torch.from_numpy(x)), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", SKLEARN)
def test_sklearn_conformance(name):
    x, y = make_data("image", n=60)
    est = build(name, seed=5, shape=SHAPES["image"])
    assert is_sklearn(est) and is_sklearn(MODELS.get(name)) and not is_sklearn(build("mlp"))
    check_output(est, torch.from_numpy(x), NUM_CLASSES)  # a no-op for unfitted estimators
    est.fit(sk.features(x), y)
    probs = sk.predict_proba(est, x, NUM_CLASSES)
    assert probs.shape == (60, NUM_CLASSES)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-6)
    assert (probs.argmax(1) == y).mean() > 0.9  # the planted label is easy to learn
    again = build(name, seed=5, shape=SHAPES["image"]).fit(sk.features(x), y)
    np.testing.assert_array_equal(sk.predict_proba(again, x, NUM_CLASSES), probs)
    if "random_state" in est.get_params():
        assert est.get_params()["random_state"] == 5


def test_sklearn_seed_changes_the_model():
    x, y = make_data("tabular", n=60)
    a = build_model("random_forest", {"n_estimators": 5}, SHAPES["tabular"], NUM_CLASSES, seed=1).fit(x, y)
    b = build_model("random_forest", {"n_estimators": 5}, SHAPES["tabular"], NUM_CLASSES, seed=2).fit(x, y)
    assert not np.array_equal(a.predict_proba(x), b.predict_proba(x))
    big = build_model("random_forest", {}, SHAPES["tabular"], NUM_CLASSES, seed=2**62 + 5)
    assert big.get_params()["random_state"] == 5  # 63-bit seeds folded into scikit-learn's 32-bit range


def test_sklearn_probabilities_keep_missing_classes():
    x, y = make_data("tabular", n=60)
    seen = y != 1
    est = build_model("logistic_regression_sk", {}, SHAPES["tabular"], NUM_CLASSES, seed=0).fit(x[seen], y[seen])
    probs = sk.predict_proba(est, x, NUM_CLASSES)
    assert probs.shape == (60, NUM_CLASSES) and (probs[:, 1] == 0).all()


def test_sklearn_estimator_without_probabilities_is_rejected(monkeypatch):
    from sklearn.svm import SVC

    def no_proba(input_shape, num_classes):
        return SVC()

    monkeypatch.setitem(MODELS._entries, "svc_no_proba", no_proba)
    with pytest.raises(CyphercatError, match="predict_proba"):
        build_model("svc_no_proba", {}, (4,), 2, seed=0)


@pytest.mark.parametrize("name", ["lenet", "alexnet", "resnet20", "wrn16_4", "vgg11", "audio_cnn"])
def test_image_model_on_tabular_input_is_a_clear_error(name):
    with pytest.raises(CyphercatError, match=f"{name} cannot be built for input \\(10,\\)") as err:
        build(name, shape=(10,))
    assert err.value.field == "model"


def test_wrong_input_shape_is_a_clear_error():
    net = build("lenet", shape=(1, 8, 8))
    with pytest.raises(CyphercatError, match=r"input of shape \(3, 8, 8\) does not fit"):
        check_output(net, torch.rand(2, 3, 8, 8), NUM_CLASSES)
    for name in TEXT:
        with pytest.raises(CyphercatError, match="takes integer token ids of shape"):
            check_output(build(name), torch.rand(2, 1, 8, 8), NUM_CLASSES)
    transformer = build("text_transformer")
    with pytest.raises(CyphercatError, match="max_len"):
        check_output(transformer, torch.ones(2, 40, dtype=torch.int64), NUM_CLASSES)


def test_bad_params_are_clear_errors():
    with pytest.raises(CyphercatError, match="vocab_size") as err:
        build_model("text_bilstm", {}, (12,), NUM_CLASSES, seed=0)
    assert err.value.field == "model.params.vocab_size"
    with pytest.raises(CyphercatError, match="pad_id"):
        build_model("text_transformer", {"vocab_size": 10, "pad_id": 10}, (12,), NUM_CLASSES, seed=0)
    with pytest.raises(CyphercatError, match="text_transformer cannot be built for input"):
        build_model("text_transformer", {"vocab_size": 10}, (1, 8, 8), NUM_CLASSES, seed=0)
    with pytest.raises(CyphercatError, match="norm must be one of"):
        build("vgg11", norm="layer")
    with pytest.raises(CyphercatError, match="depth must be 6n\\+4"):
        build("wrn16_4", depth=15)
    with pytest.raises(CyphercatError, match="has no parameter 'random_state'"):
        build_model("random_forest", {"random_state": 3}, (4,), 2, seed=0)


@pytest.mark.parametrize("norm", ["group", "none"])
def test_norm_variants_build_and_train(norm):
    x, y = make_data("image")
    for name in ("vgg11", "resnet20", "wrn16_4"):
        net = build(name, norm=norm)
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
        train_model(net, x, y, TrainingSpec(epochs=1, batch_size=8), seed=0)
        assert np.isfinite(predict_logits(net, x)).all()
