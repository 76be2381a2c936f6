"""Every official SRFlow / SRFlow-DA preset builds exactly the state-dict keys and
shapes of the official checkpoint (key lists in tests/data/keys), minus the unused
``flowUpsamplerNet.f.0.*`` conv, and the same layer layout (issue #3)."""
import re
from pathlib import Path

import pytest
import torch

from flow import PRESETS, SRFlow, preset
from flow.layers import FlowStep, Split, Squeeze

KEYS = Path(__file__).parent / "data" / "keys"
FILES = {
    "srflow_df2k_4x": "srflow_df2k4x_keys.txt",
    "srflow_df2k_8x": "srflow_df2k8x_keys.txt",
    "srflow_celeba_8x": "srflow_celeba8x_keys.txt",
    **{f"srflow_{v}_df2k_{s}x": f"srflow_{v}_df2k{s}x.txt" for v in ("da", "da_r", "da_s", "da_d") for s in (4, 8)},
}
UNUSED = "flowUpsamplerNet.f.0."
F0_PARAMS = 96 * 320 * 3 * 3 + 96          # 276,576


def _int(s):
    return int(s.replace(",", ""))


def parse(path):
    header, keys, layers = {}, {}, {}
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            m = re.search(r"total tensors: ([\d,]+), total params: ([\d,]+), RRDB params: ([\d,]+), "
                          r"flow params: ([\d,]+)", line)
            if m:
                header.update(zip(("tensors", "params", "rrdb", "flow"), map(_int, m.groups())))
            m = re.search(r"final C=(\d+)", line)
            if m:
                header["C"] = int(m.group(1))
            m = re.match(r"#\s+layers\.(\d+): (\w+)(?:\((.*)\))? -> \[-1, (\d+), (\d+), (\d+)\]", line)
            if m:
                layers[int(m.group(1))] = (m.group(2), m.group(3) or "", int(m.group(4)), int(m.group(5)))
            continue
        if not line.strip():
            continue
        k, shape = line.split("\t")
        keys[k] = tuple(int(x) for x in re.findall(r"\d+", shape))
    return header, keys, layers


def test_every_official_preset_has_a_key_file():
    official = {k for k in PRESETS if k.startswith("srflow_")}
    assert official == set(FILES)
    assert all((KEYS / f).is_file() for f in FILES.values())


def _layout(model):
    """(type, feature position, out channels, nominal out size) per flow layer."""
    fn = model.flowUpsamplerNet
    out, C = [], 3
    for m, stride in zip(fn.layers, fn.strides):
        if isinstance(m, Squeeze):
            C *= m.factor ** 2
            kind, pos = "SqueezeLayer", m.factor
        elif isinstance(m, Split):
            C = m.c_pass
            kind, pos = "Split2d", (m.c_out, m.c_pass)
        else:
            assert isinstance(m, FlowStep)
            kind = "FlowStep"
            if m.conditional:
                r = fn.feature_key(stride)
                pos = "fea_up%s" % (0.5 if r == 0 else float(r))
            else:
                pos = None
        out.append((kind, pos, C, 160 // stride))
    return out


def _expected_layout(layers):
    out = []
    for i in range(len(layers)):
        kind, args, C, size = layers[i]
        if kind == "SqueezeLayer":
            m = re.search(r"factor=(\d+)", args)
            pos = int(m.group(1)) if m else 2
        elif kind == "Split2d":
            m = re.search(r"consume=(\d+), pass=(\d+)", args)
            pos = (int(m.group(1)), int(m.group(2)))
        else:
            if "noCoupling" in args:
                pos = None
            else:
                assert "CondAffineSeparatedAndCond" in args
                pos = re.search(r"position=(fea_up[\d.]+)", args).group(1)
        out.append((kind, pos, C, size))
    return out


@pytest.mark.parametrize("name", sorted(FILES))
def test_preset_matches_official_keys_and_layout(name):
    header, keys, layers = parse(KEYS / FILES[name])
    assert len(keys) == header["tensors"]
    # the key file is self-consistent: shapes add up to the header totals
    numel = lambda shape: int(torch.Size(shape).numel())  # noqa: E731
    assert sum(numel(s) for s in keys.values()) == header["params"]
    assert sum(numel(s) for k, s in keys.items() if k.startswith("RRDB.")) == header["rrdb"]
    f0 = {k: s for k, s in keys.items() if k.startswith(UNUSED)}
    assert sorted(f0) == [UNUSED + "bias", UNUSED + "weight"]
    assert sum(numel(s) for s in f0.values()) == F0_PARAMS

    torch.manual_seed(0)
    model = SRFlow(preset(name))
    sd = model.state_dict()
    got = {k: tuple(v.shape) for k, v in sd.items()}
    want = {k: s for k, s in keys.items() if not k.startswith(UNUSED)}
    missing = sorted(set(want) - set(got))
    unexpected = sorted(set(got) - set(want))
    assert not missing, missing[:10]
    assert not unexpected, unexpected[:10]
    bad = sorted(k for k in want if got[k] != want[k])
    assert not bad, [(k, got[k], want[k]) for k in bad[:10]]

    # parameter totals = header totals minus the unused conv; no extra buffers saved
    params = dict(model.named_parameters())
    assert set(params) == set(sd)
    assert sum(p.numel() for p in params.values()) == header["params"] - F0_PARAMS
    assert sum(p.numel() for p in model.RRDB.parameters()) == header["rrdb"]
    assert sum(p.numel() for p in model.flowUpsamplerNet.parameters()) == header["flow"] - F0_PARAMS

    # same layer layout: types, conditioning feature per step, channels and nominal sizes
    assert model.flowUpsamplerNet.out_channels == header["C"]
    assert _layout(model) == _expected_layout(layers)


def test_official_4x_totals_literal():
    """The official DF2K 4x numbers quoted in the spec, as literals, against the model we
    build (not against the key file): 39,541,811 parameters in 1,733 tensors, minus the
    unused 96x320x3x3 ``flowUpsamplerNet.f.0`` conv and its bias."""
    model = SRFlow(preset("srflow_df2k_4x"))
    sd = model.state_dict()
    assert len(sd) == 1733 - 2
    assert sum(v.numel() for v in sd.values()) == 39_541_811 - (96 * 320 * 9 + 96) == 39_265_235
    assert tuple(sd["flowUpsamplerNet.layers.3.affine.fAffine.0.weight"].shape) == (64, 6 + 320, 3, 3)
    assert tuple(sd["flowUpsamplerNet.layers.19.conv.weight"].shape) == (12, 6, 3, 3)
    assert model.cfg.cond_channels == 320 and not any(k.startswith(UNUSED) for k in sd)
