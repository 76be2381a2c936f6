"""Checkpoint import/export: official-format .pth (synthetic), RRDB-only files, our
safetensors, clear errors for broken/unsafe files, and the official-YAML reader
(issue #3).  All official-format files here are built from our own models' state
dicts; the YAML fixtures are written by the tests (same keys as the official ones)."""
import json
import pickle

import pytest
import torch
import yaml

import flow
from conftest import make_model, rand_images, randomize
from flow import CheckpointError, ModelConfig, SRFlow, from_official_yaml, load_model, preset, save_safetensors
from flow.layers import ActNorm, ZeroConv
from flow.models.checkpoint import read_safetensors_meta
from conftest import ROOT


# ---------------------------------------------------------------------------
# YAML fixtures (our own minimal files with the official keys)
# ---------------------------------------------------------------------------

def official_opt(model="SRFlow", scale=4, nf=64, nb=23, K=16, L=3, blocks=(1, 8, 15, 22), hidden=None,
                 gc=None, split=True, fea_up0=True, n_trans=2, correct_splits=None):
    flow_opt = {
        "K": K, "L": L, "noInitialInj": True, "coupling": "CondAffineSeparatedAndCond",
        "additionalFlowNoAffine": n_trans, "split": {"enable": split},
        "fea_up0": fea_up0, "stackRRDB": {"blocks": list(blocks), "concat": True},
    }
    if correct_splits is not None:
        flow_opt["split"]["correct_splits"] = correct_splits
    if hidden is not None:
        flow_opt["CondAffineSeparatedAndCond"] = {"hidden_channels": hidden}
    g = {"which_model_G": "SRFlowNet", "in_nc": 3, "out_nc": 3, "nf": nf, "nb": nb, "upscale": scale,
         "train_RRDB": False, "train_RRDB_delay": 0.5, "flow": flow_opt}
    if gc is not None:
        g["gc"] = gc
    return {"name": "test", "use_tb_logger": False, "model": model, "distortion": "sr", "scale": scale,
            "gpu_ids": [0], "network_G": g}


def write_yaml(path, **kw):
    path.write_text(yaml.safe_dump(official_opt(**kw), sort_keys=False))
    return path


TINY = dict(nf=16, nb=2, gc=8, K=2, blocks=(0, 1), hidden=16)


@pytest.fixture
def tiny4_yaml(tmp_path):
    return write_yaml(tmp_path / "Tiny_4X.yml", scale=4, L=3, **TINY)


@pytest.fixture
def tiny8_yaml(tmp_path):
    return write_yaml(tmp_path / "Tiny_8X.yml", scale=8, L=4, **TINY)


def _unused_f0(cond_channels=48):
    return {"flowUpsamplerNet.f.0.weight": torch.randn(96, cond_channels, 3, 3),
            "flowUpsamplerNet.f.0.bias": torch.randn(96)}


def _outputs(model, seed=0):
    lr = rand_images(1, 4, 6, seed=seed)
    hr = rand_images(1, 4 * model.scale, 6 * model.scale, seed=seed + 1)
    with torch.no_grad():
        lat, ld = model.encode(hr, lr)
    sr = model.sample(lr, temperature=0.7, seed=3)
    return lat, ld, sr


def _assert_same_outputs(a, b):
    lat_a, ld_a, sr_a = _outputs(a)
    lat_b, ld_b, sr_b = _outputs(b)
    for x, y in zip(lat_a.levels, lat_b.levels):
        torch.testing.assert_close(x, y, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(ld_a, ld_b, atol=1e-3, rtol=1e-6)
    torch.testing.assert_close(sr_a, sr_b, atol=1e-6, rtol=0)


def _assert_same_state(a, b, prefix=""):
    sa, sb = a.state_dict(), b.state_dict()
    keys = [k for k in sa if k.startswith(prefix)]
    assert keys
    for k in keys:
        assert torch.equal(sa[k], sb[k]), k


# ---------------------------------------------------------------------------
# official-format .pth
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("variant", ["plain", "module", "wrapped"])
def test_official_pth_roundtrip(tmp_path, tiny4_yaml, variant):
    src = make_model("tiny_4x", seed=5)
    sd = dict(src.state_dict())
    sd.update(_unused_f0())
    if variant == "module":
        sd = {"module." + k: v for k, v in sd.items()}
    path = tmp_path / "SRFlow_Tiny_4X.pth"
    torch.save({"state_dict": sd} if variant == "wrapped" else sd, path)
    model = load_model(path, config=tiny4_yaml, device="cpu")
    assert isinstance(model, SRFlow) and not model.training
    assert model.cfg.to_dict() | {"name": ""} == preset("tiny_4x").to_dict() | {"name": ""}
    assert model.meta["format"] == "official-full"
    assert not any(k.startswith("flowUpsamplerNet.f.") for k in model.state_dict())
    _assert_same_state(src, model)
    # loaded actnorms are initialised: training from here must not re-initialise them
    assert all(bool(m.inited) for m in model.modules() if isinstance(m, ActNorm))
    _assert_same_outputs(src, model)


def test_official_pth_with_preset_name_and_config_object(tmp_path):
    src = make_model("tiny_8x", seed=2)
    path = tmp_path / "m.pth"
    torch.save(dict(src.state_dict()), path)
    for cfg in ("tiny_8x", preset("tiny_8x")):
        _assert_same_state(src, load_model(path, config=cfg, device="cpu"))


def test_loaded_model_keeps_weights_in_train_mode(tmp_path, tiny4_yaml):
    """ActNorm data-dependent init is skipped after loading official weights."""
    src = make_model("tiny_4x", seed=6)
    path = tmp_path / "m.pth"
    torch.save(dict(src.state_dict()), path)
    model = load_model(path, config=tiny4_yaml, device="cpu").train()
    with torch.no_grad():
        model.nll(rand_images(2, 16, 16, seed=1), rand_images(2, 4, 4, seed=2))
    _assert_same_state(src, model)


@pytest.mark.parametrize("prefix", ["", "module."])
def test_rrdb_only_file_loads_into_encoder(tmp_path, tiny4_yaml, prefix):
    src = make_model("tiny_4x", seed=7)
    sd = {prefix + k[len("RRDB."):]: v for k, v in src.state_dict().items() if k.startswith("RRDB.")}
    assert "conv_first.weight" in {k[len(prefix):] for k in sd}
    path = tmp_path / "RRDB_Tiny_4X.pth"
    torch.save(sd, path)
    model = load_model(path, config=tiny4_yaml, device="cpu")
    assert model.meta["format"] == "official-rrdb"
    _assert_same_state(src, model, prefix="RRDB.")
    # the flow is freshly initialised (zero convs at zero) and still gets its
    # data-dependent actnorm init when training starts
    assert all(torch.all(m.weight == 0) for m in model.modules() if isinstance(m, ZeroConv))
    flow_norms = [m for m in model.flowUpsamplerNet.modules() if isinstance(m, ActNorm)]
    assert flow_norms and not any(bool(m.inited) for m in flow_norms)
    model.train()
    with torch.no_grad():
        model.nll(rand_images(2, 16, 16, seed=1), rand_images(2, 4, 4, seed=2))
    assert all(bool(m.inited) for m in flow_norms)
    assert model.flowUpsamplerNet.layers[1].actnorm.logs.abs().max() > 0


def test_rrdb_only_file_with_wrong_encoder_errors(tmp_path, tiny4_yaml):
    src = make_model("tiny_8x", seed=1)        # has upconv3: not a 4x encoder
    sd = {k[len("RRDB."):]: v for k, v in src.state_dict().items() if k.startswith("RRDB.")}
    path = tmp_path / "RRDB_8X.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match="unexpected keys.*RRDB.upconv3"):
        load_model(path, config=tiny4_yaml, device="cpu")


# ---------------------------------------------------------------------------
# broken / unsafe files
# ---------------------------------------------------------------------------

def _save_broken(tmp_path, mutate):
    sd = dict(make_model("tiny_4x", seed=8).state_dict())
    mutate(sd)
    path = tmp_path / "broken.pth"
    torch.save(sd, path)
    return path


MISSING = "flowUpsamplerNet.layers.4.affine.fAffine.4.logs"
UNEXPECTED = "flowUpsamplerNet.layers.4.affine.extra.weight"
MISSHAPED = "RRDB.trunk_conv.weight"


def test_missing_key_named(tmp_path, tiny4_yaml):
    path = _save_broken(tmp_path, lambda sd: sd.pop(MISSING))
    with pytest.raises(CheckpointError) as e:
        load_model(path, config=tiny4_yaml, device="cpu")
    msg = str(e.value)
    assert "missing keys (1)" in msg and MISSING in msg
    assert "unexpected" not in msg and "mis-shaped" not in msg


def test_unexpected_key_named(tmp_path, tiny4_yaml):
    path = _save_broken(tmp_path, lambda sd: sd.__setitem__(UNEXPECTED, torch.zeros(2)))
    with pytest.raises(CheckpointError, match=r"unexpected keys \(1\): " + UNEXPECTED.replace(".", r"\.")):
        load_model(path, config=tiny4_yaml, device="cpu")


def test_misshaped_key_named(tmp_path, tiny4_yaml):
    path = _save_broken(tmp_path, lambda sd: sd.__setitem__(MISSHAPED, torch.zeros(16, 16, 1, 1)))
    with pytest.raises(CheckpointError) as e:
        load_model(path, config=tiny4_yaml, device="cpu")
    msg = str(e.value)
    assert "mis-shaped keys (1)" in msg and MISSHAPED in msg
    assert "(16, 16, 1, 1)" in msg and "(16, 16, 3, 3)" in msg


def test_all_problems_reported_together(tmp_path, tiny4_yaml):
    def mutate(sd):
        sd.pop(MISSING)
        sd[UNEXPECTED] = torch.zeros(2)
        sd[MISSHAPED] = torch.zeros(3)
    path = _save_broken(tmp_path, mutate)
    with pytest.raises(CheckpointError) as e:
        load_model(path, config=tiny4_yaml, device="cpu")
    msg = str(e.value)
    for s in ("missing keys", MISSING, "unexpected keys", UNEXPECTED, "mis-shaped keys", MISSHAPED):
        assert s in msg


def test_wrong_architecture_yaml(tmp_path, tiny8_yaml):
    """A 4x checkpoint with an 8x config: a clear error, not a silent partial load."""
    src = make_model("tiny_4x", seed=9)
    path = tmp_path / "SRFlow_4X.pth"
    torch.save(dict(src.state_dict()), path)
    with pytest.raises(CheckpointError) as e:
        load_model(path, config=tiny8_yaml, device="cpu")
    msg = str(e.value)
    assert "missing keys" in msg and "RRDB.upconv3.weight" in msg
    assert "Tiny_8X" in msg


def test_corrupt_file(tmp_path, tiny4_yaml):
    bad = tmp_path / "garbage.pth"
    bad.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(CheckpointError, match="cannot read"):
        load_model(bad, config=tiny4_yaml, device="cpu")
    good = tmp_path / "good.pth"
    torch.save(dict(make_model("tiny_4x").state_dict()), good)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="cannot read"):
        load_model(truncated, config=tiny4_yaml, device="cpu")
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError):
        load_model(empty, config=tiny4_yaml, device="cpu")


@pytest.mark.parametrize("obj", [torch.zeros(3), [torch.zeros(2)], {"epoch": 3, "iter": 10},
                                 {"state_dict": {"a": 1}}],
                         ids=["tensor", "list", "dict-of-ints", "wrapped-non-tensor"])
def test_not_a_state_dict(tmp_path, tiny4_yaml, obj):
    path = tmp_path / "x.pth"
    torch.save(obj, path)
    with pytest.raises(CheckpointError, match="state dict"):
        load_model(path, config=tiny4_yaml, device="cpu")


def test_state_dict_of_something_else(tmp_path, tiny4_yaml):
    path = tmp_path / "resnet.pth"
    torch.save({"fc.weight": torch.zeros(2, 2), "fc.bias": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="not an SRFlow or RRDB checkpoint"):
        load_model(path, config=tiny4_yaml, device="cpu")


class _Payload:
    """Unpickling this would create a file (harmless proof of code execution)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_pickle_with_arbitrary_object_is_refused(tmp_path, tiny4_yaml, writer):
    marker = tmp_path / "executed.txt"
    sd = dict(make_model("tiny_4x").state_dict())
    sd["evil"] = _Payload(marker)
    path = tmp_path / "evil.pth"
    if writer == "torch.save":
        torch.save(sd, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(sd, f)
    assert not marker.exists()
    with pytest.raises(CheckpointError):
        load_model(path, config=tiny4_yaml, device="cpu")
    assert not marker.exists(), "the checkpoint's pickle was executed"


def test_pth_without_config(tmp_path):
    path = tmp_path / "SRFlow_DF2K_4X.pth"
    torch.save(dict(make_model("tiny_4x").state_dict()), path)
    with pytest.raises(CheckpointError, match="config"):
        load_model(path, device="cpu")


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "nope.pth", config="tiny_4x", device="cpu")


# ---------------------------------------------------------------------------
# our safetensors format
# ---------------------------------------------------------------------------

def test_safetensors_roundtrip_stores_config(tmp_path):
    src = make_model("tiny_8x", seed=10)
    path = tmp_path / "sub" / "model.safetensors"
    save_safetensors(src, path, extra={"train_step": 12, "note": "hello"})
    assert path.is_file() and not (tmp_path / "sub" / "model.safetensors.tmp").exists()
    model = load_model(path, device="cpu")          # no config needed
    assert model.cfg.to_dict() == src.cfg.to_dict()
    assert model.meta["format"] == "srflow-studio/1"
    assert ModelConfig.from_dict(json.loads(model.meta["config"])).to_dict() == src.cfg.to_dict()
    assert json.loads(model.meta["train_step"]) == 12 and model.meta["note"] == "hello"
    _assert_same_state(src, model)
    assert all(bool(m.inited) for m in model.modules() if isinstance(m, ActNorm))
    _assert_same_outputs(src, model)
    # an explicit, matching config is accepted; a mismatching one is a clear error
    load_model(path, config="tiny_8x", device="cpu")
    with pytest.raises(CheckpointError, match="missing keys|mis-shaped keys|unexpected keys"):
        load_model(path, config="tiny_4x", device="cpu")


def test_safetensors_lu_model_roundtrip(tmp_path):
    """Non-official options (LU 1x1 convs, with their buffers) survive the round trip."""
    cfg = preset("tiny_4x")
    cfg.flow.lu = True
    torch.manual_seed(0)
    src = randomize(SRFlow(cfg), seed=1).eval()
    path = tmp_path / "lu.safetensors"
    save_safetensors(src, path)
    model = load_model(path, device="cpu")
    assert model.cfg.flow.lu is True
    _assert_same_state(src, model)
    _assert_same_outputs(src, model)


def test_foreign_safetensors_rejected(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(CheckpointError, match="not an SRFlow Studio model"):
        load_model(path, device="cpu")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}......")
    with pytest.raises(CheckpointError):
        load_model(junk, device="cpu")


def test_safetensors_with_missing_tensor(tmp_path):
    from safetensors.torch import save_file

    src = make_model("tiny_4x")
    sd = {k: v.contiguous() for k, v in src.state_dict().items() if k != MISSING}
    path = tmp_path / "partial.safetensors"
    save_file(sd, str(path), metadata={"format": "srflow-studio/1", "config": src.cfg.to_json()})
    with pytest.raises(CheckpointError, match=MISSING.replace(".", r"\.")):
        load_model(path, device="cpu")


# ---------------------------------------------------------------------------
# official YAML -> ModelConfig
# ---------------------------------------------------------------------------

YAMLS = [  # preset, YAML fields
    ("srflow_df2k_4x", dict(model="SRFlow", scale=4, K=16, L=3, blocks=(1, 8, 15, 22))),
    ("srflow_df2k_8x", dict(model="SRFlow", scale=8, K=16, L=4, blocks=(1, 3, 5, 7))),
    ("srflow_celeba_8x", dict(model="SRFlow", scale=8, nb=8, K=16, L=4, blocks=(1, 3, 5, 7))),
    ("srflow_da_df2k_4x", dict(model="SRFlow-DA", scale=4, K=6, L=2, fea_up0=False)),
    ("srflow_da_df2k_8x", dict(model="SRFlow-DA", scale=8, K=6, L=3, fea_up0=False)),
    ("srflow_da_r_df2k_4x", dict(model="SRFlow-DA-R", scale=4, K=6, L=2, fea_up0=False)),
    ("srflow_da_r_df2k_8x", dict(model="SRFlow-DA-R", scale=8, K=6, L=3, fea_up0=False)),
    ("srflow_da_s_df2k_4x", dict(model="SRFlow-DA-S", scale=4, K=12, L=1, fea_up0=False)),
    ("srflow_da_s_df2k_8x", dict(model="SRFlow-DA-S", scale=8, K=18, L=1, fea_up0=False)),
    ("srflow_da_d_df2k_4x", dict(model="SRFlow-DA-D", scale=4, K=1, L=2, fea_up0=False)),
    ("srflow_da_d_df2k_8x", dict(model="SRFlow-DA-D", scale=8, K=1, L=3, fea_up0=False)),
]


def _no_name(cfg):
    d = cfg.to_dict()
    d.pop("name")
    return d


@pytest.mark.parametrize("name,fields", YAMLS, ids=[y[0] for y in YAMLS])
def test_from_official_yaml_matches_preset(tmp_path, name, fields):
    path = write_yaml(tmp_path / f"{name}.yml", **fields)
    cfg = from_official_yaml(path)
    assert _no_name(cfg) == _no_name(preset(name))
    assert cfg.name == name                              # named after the file
    assert _no_name(from_official_yaml(official_opt(**fields))) == _no_name(preset(name))


def test_from_official_yaml_tiny(tiny4_yaml, tiny8_yaml):
    assert _no_name(from_official_yaml(tiny4_yaml)) == _no_name(preset("tiny_4x"))
    assert _no_name(from_official_yaml(tiny8_yaml)) == _no_name(preset("tiny_8x"))


def test_from_official_yaml_split_options():
    base = dict(model="SRFlow", scale=4, K=2, L=3)
    assert from_official_yaml(official_opt(**base)).flow.split == "official"
    assert from_official_yaml(official_opt(**base, correct_splits=True)).flow.split == "every_level"
    assert from_official_yaml(official_opt(**base, split=False)).flow.split == "none"
    assert from_official_yaml(official_opt(**base, hidden=32)).flow.hidden_channels == 32
    assert from_official_yaml(official_opt(**base, n_trans=1)).flow.n_transition == 1
    assert from_official_yaml(official_opt(**base, nf=32, nb=4, blocks=(0, 3))).cond_channels == 32 * 3


def test_from_official_yaml_errors(tmp_path):
    with pytest.raises(ValueError, match="unsupported model"):
        from_official_yaml(official_opt(model="SRFlow-XL"))
    opt = official_opt()
    opt["network_G"]["flow"]["stackRRDB"]["concat"] = False
    with pytest.raises(ValueError, match="concat"):
        from_official_yaml(opt)
    with pytest.raises(ValueError, match="fea_up0"):
        from_official_yaml(official_opt(fea_up0=False))      # SRFlow 4x L=3 needs LR/2 features
    with pytest.raises(ValueError, match="not an SRFlow config"):
        from_official_yaml({"scale": 4})
    bad = tmp_path / "bad.yml"
    bad.write_text("network_G: [unclosed\n")
    with pytest.raises(ValueError, match="not a valid YAML"):
        from_official_yaml(bad)
    with pytest.raises(ValueError):
        from_official_yaml(official_opt(blocks=(1, 8, 15, 23)))   # block out of range for nb=23


def test_public_api_exports():
    for name in ("load_model", "save_safetensors", "CheckpointError", "from_official_yaml", "preset"):
        assert hasattr(flow, name)
    assert issubclass(CheckpointError, ValueError)


# -- core defects: nn.Module API on shipped models, strict configs, the RRDB tail field --------

SHIPPED = sorted((ROOT / "assets").glob("*.safetensors"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_models_support_module_api(path):
    """``model.apply`` (once shadowed by ActNorm), a state-dict round trip and ``.double()``."""
    model = load_model(path, device="cpu")
    seen = []
    model.apply(lambda m: seen.append(type(m).__name__))
    assert "ActNorm" in seen and len(seen) > 10
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    fresh = load_model(path, device="cpu")
    with torch.no_grad():
        for p in fresh.parameters():
            p.add_(1.0)
    fresh.load_state_dict(sd)
    assert all(torch.equal(a, fresh.state_dict()[k]) for k, a in sd.items())
    lr = torch.rand(1, 3, 8, 8)
    ref = model.sample(model.encode_condition(lr), temperature=0.0, seed=0)
    m64 = model.double()
    assert next(m64.parameters()).dtype == torch.float64
    out = m64.sample(m64.encode_condition(lr.double()), temperature=0.0, seed=0)
    assert out.dtype == torch.float64
    assert (out.float() - ref).abs().max() < 1e-3


def test_model_config_refuses_unknown_keys():
    good = preset("tiny_4x").to_dict()
    assert ModelConfig.from_dict(good).to_dict() == good
    for where, bad in (("model", {**good, "scael": 4}),
                       ("model.rrdb", {**good, "rrdb": {**good["rrdb"], "nbb": 3}}),
                       ("model.flow", {**good, "flow": {**good["flow"], "hiden_channels": 8}})):
        with pytest.raises(ValueError, match=where.replace(".", r"\.") + r".*key.*'(scael|nbb|hiden_channels)'"):
            ModelConfig.from_dict(bad)


def test_train_config_refuses_misspelled_model_keys(tmp_path):
    from flow.train import TrainConfig

    ok = TrainConfig.from_dict({"model": {"preset": "tiny_4x", "flow": {"K": 1}}})
    assert ok.model.flow.K == 1
    with pytest.raises(ValueError, match="'hidden_chanels'"):
        TrainConfig.from_dict({"model": {"preset": "tiny_4x", "flow": {"hidden_chanels": 8}}})
    with pytest.raises(ValueError, match="'tial'"):
        TrainConfig.from_dict({"model": {"preset": "tiny_4x", "rrdb": {"tial": "esrgan"}}})
    with pytest.raises(ValueError, match="unknown HCFlow config keys"):
        TrainConfig.from_dict({"model": {"preset": "hcflow_tiny_sr_4x", "KK": 2}})


def test_rrdb_tail_is_stored_and_old_files_read_as_esrgan(tmp_path):
    """New files store ``rrdb.tail``; files written before the field read as the ESRGAN tail
    (what they were trained with); official presets use the official tail."""
    import json as _json
    from safetensors.torch import load_file, save_file

    assert preset("srflow_df2k_4x").rrdb.tail == "official"
    assert preset("srflow_da_df2k_4x").rrdb.tail == "official"
    assert preset("studio_4x").rrdb.tail == "esrgan"
    m = SRFlow(preset("tiny_4x"))
    path = tmp_path / "new.safetensors"
    save_safetensors(m, path)
    assert load_model(path).cfg.rrdb.tail == "official"
    # an old file: same weights, config without the field
    meta = read_safetensors_meta(path)
    cfg = _json.loads(meta["config"])
    del cfg["rrdb"]["tail"]
    old = tmp_path / "old.safetensors"
    save_file(load_file(str(path)), str(old), metadata={**meta, "config": _json.dumps(cfg)})
    o = load_model(old)
    assert o.cfg.rrdb.tail == "esrgan" and o.RRDB.tail == "esrgan"
    # the two tails give different features from the same weights
    lr = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        a = load_model(path).encode_condition(lr).features
        b = o.encode_condition(lr).features
    assert any((a[k] - b[k]).abs().max() > 1e-3 for k in a)
    # the shipped SRFlow model is an old-format file: it reads as ESRGAN
    assert load_model(ROOT / "assets" / "studio_4x.safetensors").cfg.rrdb.tail == "esrgan"
