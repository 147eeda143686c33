"""The re-ID networks of DML's Market-1501 experiments (rdml.models.reid): the interface (`features` the last
pooling layer's output, `classify`, `forward = classify ∘ features`, `feature_dim`) against each library's own
forward pass and pooling layer, the parameter counts against the published ones and TF-slim's, and the
published ImageNet weights as data, from generated files (no download anywhere in this module)."""

import copy
import socket

import pytest
import timm
import torch
import torchvision
from safetensors.torch import load_file

from rdml.data.catalog import DATASETS, DataSpec
from rdml.io import sha256_file
from rdml.keys import ConfigError
from rdml.models import build_model
from rdml.models import pretrained
from rdml.models.catalog import ARCHITECTURES
from rdml.models.pretrained import fetch_weights, published_outputs
from rdml.models.reid import ReidNetwork, ReidTiny

MARKET = DATASETS["market1501"].spec  # pedestrians, 751 classes, 3×224×224
REAL = ("mobilenetv1_100", "tv_googlenet")
FEATURE_DIM = {"mobilenetv1_100": 1024, "tv_googlenet": 1024, "reid_tiny": 64}


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Nothing here may reach the network: building without weights never downloads."""
    def refuse(*args, **kwargs):
        raise OSError("no network in these tests")

    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture(scope="module")
def built():
    networks = {}
    for name in FEATURE_DIM:
        torch.manual_seed(0)
        networks[name] = build_model(name, MARKET).eval()
    torch.manual_seed(1)
    return networks, torch.randn(2, 3, 224, 224)


@pytest.mark.parametrize("name", list(FEATURE_DIM))
def test_forward_is_classify_of_features_and_evaluation_is_deterministic(built, name):
    networks, x = built
    model = networks[name]
    assert isinstance(model, ReidNetwork) and model.feature_dim == FEATURE_DIM[name]
    with torch.no_grad():
        features, logits = model.features(x), model(x)
        assert features.shape == (2, FEATURE_DIM[name]) and logits.shape == (2, MARKET.num_classes)
        assert torch.equal(logits, model.classify(features))
        assert torch.equal(model(x), logits) and torch.equal(model.features(x), features)


def test_mobilenet_feature_is_timm_s_pooled_map_and_its_logits_timm_s(built):
    networks, x = built
    model = networks["mobilenetv1_100"]
    net = model.net
    with torch.no_grad():
        feature_map = net.forward_features(x)
        assert feature_map.shape == (2, 1024, 7, 7)  # slim's 7×7 AvgPool_1a window is the whole map at 224 px
        torch.testing.assert_close(model.features(x), feature_map.mean(dim=(2, 3)), rtol=1e-6, atol=1e-6)
        assert torch.equal(model(x), net(x))  # timm's own forward pass: global pool, dropout, Linear
    assert [type(m).__name__ for m in net.modules() if "ReLU" in type(m).__name__][:1] == ["ReLU6"]
    assert net.drop_rate == pytest.approx(1 - 0.999)  # slim's dropout_keep_prob (nets/mobilenet_v1.py L271)


def test_googlenet_feature_is_its_average_pool_s_output_and_its_logits_torchvision_s(built):
    networks, x = built
    model = networks["tv_googlenet"]
    pooled = []
    hook = model.net.avgpool.register_forward_hook(lambda module, args, out: pooled.append(out))
    try:
        with torch.no_grad():
            theirs = model.net(x)  # torchvision's own forward pass (no auxiliary heads: a tensor in eval mode)
    finally:
        hook.remove()
    with torch.no_grad():
        assert torch.equal(model.features(x), torch.flatten(pooled[0], 1)) and torch.equal(model(x), theirs)
    assert model.net.aux1 is None and not model.net.transform_input and model.net.dropout.p == 0.2


@torch.no_grad()
def test_googlenet_drops_out_after_the_feature_in_training(built):
    model = copy.deepcopy(built[0]["tv_googlenet"]).train()
    x = torch.randn(2, 3, 64, 64)
    first, second = model.features(x), model.features(x)
    assert torch.equal(first, second)  # no dropout in the feature
    torch.manual_seed(1)
    one = model.classify(first)
    torch.manual_seed(2)
    assert not torch.equal(one, model.classify(first))  # dropout 0.2 in the classifier's input
    torch.manual_seed(3)
    again = model(x)
    torch.manual_seed(3)
    assert torch.equal(again, model.classify(model.features(x)))


def test_tiny_feature_is_the_average_of_its_last_convolution(built):
    networks, x = built
    model = networks["reid_tiny"]
    with torch.no_grad():
        feature_map = model.body(x)
        assert feature_map.shape == (2, 64, 14, 14)  # 224 → 56 (stride 4) → 28 → 14
        torch.testing.assert_close(model.features(x), feature_map.mean(dim=(2, 3)), rtol=1e-6, atol=1e-6)


def _count(module):
    return sum(p.numel() for p in module.parameters())


def test_parameter_counts_are_the_published_ones(built):
    networks, _ = built
    mobilenet, googlenet = networks["mobilenetv1_100"].net, networks["tv_googlenet"].net
    head = 1024 * 751 + 751  # slim's 1×1 logits convolution with bias, a Linear here
    # MobileNet: slim's table (nets/mobilenet_v1.py L32-62) counts 3,185,088 convolution weights; its batch
    # norm has a scale and an offset (L409-415) on 10,944 channels; timm's backbone is the same 3,206,976
    assert sum(m.weight.numel() for m in mobilenet.modules() if isinstance(m, torch.nn.Conv2d)) == 3_185_088
    assert sum(m.num_features for m in mobilenet.modules() if isinstance(m, torch.nn.BatchNorm2d)) == 10_944
    assert _count(mobilenet) == 3_185_088 + 2 * 10_944 + head == 3_976_751
    assert _count(mobilenet.classifier) == head
    # GoogLeNet: 5,585,344 convolution weights (slim's inception_v1 has the same layer by layer), 7,280
    # batch-norm channels with scale and offset (slim's have no scale: 6,362,399 parameters), 751-way fc
    assert sum(m.weight.numel() for m in googlenet.modules() if isinstance(m, torch.nn.Conv2d)) == 5_585_344
    assert sum(m.num_features for m in googlenet.modules() if isinstance(m, torch.nn.BatchNorm2d)) == 7_280
    assert _count(googlenet) == 5_585_344 + 2 * 7_280 + head == 6_369_679
    # with ImageNet's 1000 classes, the counts the libraries publish
    published = torchvision.models.GoogLeNet_Weights.IMAGENET1K_V1.meta["num_params"]
    assert _count(build_model("tv_googlenet", MARKET, outputs=1000)) == published == 6_624_904
    assert round(_count(build_model("mobilenetv1_100", MARKET, outputs=1000)) / 1e6, 2) == 4.23  # timm's README


def test_catalogue_entries():
    for name in REAL:
        arch = ARCHITECTURES[name]
        # Market-1501's crops (DML §4.1) and ImageNet's photos (Fig. 2a)
        assert arch.kinds == ("pedestrians", "imagenet_photos") and arch.smoke == "reid_tiny" and arch.note
        assert ARCHITECTURES[arch.smoke].kinds == arch.kinds
    assert ARCHITECTURES["mobilenetv1_100"].weights == "mobilenetv1_100.ra4_e3600_r224_in1k"
    assert ARCHITECTURES["tv_googlenet"].weights == "tv_googlenet.imagenet1k_v1"
    assert ARCHITECTURES["reid_tiny"].weights == f"reid_tiny.{pretrained.GENERATED}"
    _, _, url = pretrained.TORCHVISION["tv_googlenet.imagenet1k_v1"]
    assert url == torchvision.models.GoogLeNet_Weights.IMAGENET1K_V1.url
    assert {arch: published_outputs(arch) for arch in FEATURE_DIM} == dict.fromkeys(FEATURE_DIM, 1000)


# ---- published weights as data ------------------------------------------------------------------------------

def _assert_started_from(model_state, published, head, outputs):
    for key, value in model_state.items():
        if key.startswith(f"{head}."):
            assert value.shape[0] == outputs
            if outputs == published[key].shape[0]:
                assert torch.equal(value, published[key]), key
        else:
            assert torch.equal(value, published[key]), key


def test_mobilenet_starts_from_a_local_copy_through_timm(tmp_path):
    torch.manual_seed(3)
    source = timm.create_model("mobilenetv1_100")  # the "published" network, 1000 classes
    torch.save(source.state_dict(), tmp_path / "downloaded.pth")
    fetched = fetch_weights("mobilenetv1_100", tmp_path / "data", tmp_path / "downloaded.pth")
    assert fetched["sha256"] == sha256_file(fetched["file"]) and fetched["origin"].startswith("file ")
    theirs = source.state_dict()
    model = build_model("mobilenetv1_100", MARKET, weights=fetched["file"])
    _assert_started_from({k.removeprefix("net."): v for k, v in model.state_dict().items()}, theirs, "classifier", 751)
    kept = build_model("mobilenetv1_100", MARKET, outputs=1000, weights=fetched["file"])
    _assert_started_from({k.removeprefix("net."): v for k, v in kept.state_dict().items()}, theirs, "classifier", 1000)


@pytest.fixture
def googlenet_file(tmp_path):
    """A file as torchvision publishes GoogLeNet's (auxiliary heads, 1000 classes, no num_batches_tracked), random."""
    torch.manual_seed(4)
    state = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False).state_dict()
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "googlenet.pth")
    return tmp_path / "googlenet.pth", state


@pytest.mark.bad_input
def test_a_googlenet_file_that_is_not_the_published_one_is_refused(tmp_path, googlenet_file):
    with pytest.raises(ConfigError, match="is not tv_googlenet.imagenet1k_v1: its sha256 starts .* file's 1378be20"):
        fetch_weights("tv_googlenet", tmp_path / "data", googlenet_file[0])
    assert not pretrained.weights_file("tv_googlenet", tmp_path / "data").exists()


def _published_as(monkeypatch, file):
    """TORCHVISION's GoogLeNet entry with the URL a file of this sha256 would be published under."""
    name = "tv_googlenet.imagenet1k_v1"
    builder, kwargs, _ = pretrained.TORCHVISION[name]
    url = f"https://download.pytorch.org/models/googlenet-{sha256_file(file)[:8]}.pth"
    monkeypatch.setitem(pretrained.TORCHVISION, name, (builder, kwargs, url))


def test_googlenet_starts_from_torchvision_s_file_without_its_auxiliary_heads(tmp_path, googlenet_file, monkeypatch):
    file, theirs = googlenet_file
    _published_as(monkeypatch, file)
    fetched = fetch_weights("tv_googlenet", tmp_path / "data", file)
    written = load_file(fetched["file"])
    assert {k for k in written if not k.endswith("num_batches_tracked")} == set(theirs)
    heads = {}
    for outputs in (751, 1000):
        torch.manual_seed(5)
        model = build_model("tv_googlenet", MARKET, outputs=outputs, weights=fetched["file"])
        mine = {k.removeprefix("net."): v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
        assert not any(k.startswith("aux") for k in mine), outputs
        _assert_started_from(mine, theirs, "fc", outputs)
        heads[outputs] = model.net.fc.weight
    torch.manual_seed(5)  # a new head is the one the seed draws without weights
    assert torch.equal(heads[751], build_model("tv_googlenet", MARKET).net.fc.weight)


@pytest.mark.bad_input
def test_a_file_with_the_published_hash_but_other_contents_is_refused(tmp_path, monkeypatch):
    torch.save({"something": torch.zeros(3)}, tmp_path / "other.pth")
    _published_as(monkeypatch, tmp_path / "other.pth")
    with pytest.raises(ConfigError, match="does not hold weights of tv_googlenet.imagenet1k_v1"):
        fetch_weights("tv_googlenet", tmp_path / "data", tmp_path / "other.pth")


def test_a_failed_googlenet_download_says_how_to_give_a_local_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # an empty hub cache: the download is tried
    with pytest.raises(ConfigError, match=r"could not be downloaded from https://download.pytorch.org/models/googlenet-"
                                          r"1378be20.pth .*rdml pipeline weights tv_googlenet --file PATH"):
        fetch_weights("tv_googlenet", tmp_path / "data")


def test_the_tiny_stand_in_s_weights_are_generated_from_seed_0(tmp_path):
    fetched = fetch_weights("reid_tiny", tmp_path / "data")
    assert fetched["origin"].startswith("generated from seed 0")
    torch.manual_seed(0)
    theirs = ReidTiny(3, 1000).state_dict()
    assert load_file(fetched["file"]).keys() == theirs.keys()
    _assert_started_from(build_model("reid_tiny", MARKET, weights=fetched["file"]).state_dict(), theirs, "classifier", 751)
    tiny = DataSpec("pedestrians", 12, (3, 224, 224))  # tiny_market1501's spec
    assert build_model("reid_tiny", tiny, weights=fetched["file"]).classifier.out_features == 12


@pytest.mark.bad_input
def test_weights_of_another_network_are_refused(tmp_path):
    fetched = fetch_weights("reid_tiny", tmp_path / "data")
    with pytest.raises(ConfigError, match="does not hold this network's weights"):
        build_model("tv_googlenet", MARKET, weights=fetched["file"])
