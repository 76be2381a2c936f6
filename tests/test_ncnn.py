"""The ncnn RRDBNet importer (``flow.ncnn``) on small synthetic .param/.bin pairs of the real format."""
from __future__ import annotations

import struct

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from flow.ncnn import TAG_FP16, TAG_FP32, NcnnError, main, read_ncnn, rrdb_state_dict
from flow.models.rrdb import RRDBNet


def _write_pair(tmp_path, net: RRDBNet, fp16=True, extra=b""):
    """Write ``net`` as an ncnn model the way ncnn's converter lays it out: Convolution lines
    (with other layers between them) in execution order, and for each conv a tagged weight
    blob padded to 4 bytes, then its float32 bias."""
    convs = [net.conv_first]
    for blk in net.RRDB_trunk:
        for rdb in (blk.RDB1, blk.RDB2, blk.RDB3):
            convs += [rdb.conv1, rdb.conv2, rdb.conv3, rdb.conv4, rdb.conv5]
    convs += [net.trunk_conv, net.upconv1, net.upconv2, net.HRconv, net.conv_last]
    lines = ["7767517", f"{2 * len(convs) + 1} {2 * len(convs) + 1}",
             "Input            input.1      0 1 data"]
    blob = b""
    prev = "data"
    for i, c in enumerate(convs):
        w = c.weight.detach().numpy()
        lines.append(f"Convolution      Conv_{i}       1 1 {prev} c{i} 0={w.shape[0]} 1=3 4=1 5=1 6={w.size}"
                     + (" 9=2 -23310=1,2.000000e-01" if i % 3 == 1 else ""))
        lines.append(f"Split            split_{i}      1 1 c{i} s{i}")     # weightless layers in between
        prev = f"s{i}"
        if fp16:
            data = w.astype("<f2").tobytes()
            blob += struct.pack("<I", TAG_FP16) + data + b"\0" * ((-len(data)) % 4)
        else:
            blob += struct.pack("<I", TAG_FP32) + w.astype("<f4").tobytes()
        blob += c.bias.detach().numpy().astype("<f4").tobytes()
    param, binf = tmp_path / "m.param", tmp_path / "m.bin"
    param.write_text("\n".join(lines) + "\n")
    binf.write_bytes(blob + extra)
    return param, binf


@pytest.fixture
def small_net():
    torch.manual_seed(0)
    net = RRDBNet(nf=8, nb=3, gc=5, scale=4, tail="esrgan")   # odd sizes exercise the 4-byte padding
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn_like(p) * 0.1)
    return net.eval()


@pytest.mark.parametrize("fp16", [True, False])
def test_import_reproduces_the_network(tmp_path, small_net, fp16):
    param, binf = _write_pair(tmp_path, small_net, fp16=fp16)
    convs = read_ncnn(param, binf)
    assert len(convs) == 6 + 15 * 3
    sd, info = rrdb_state_dict(convs, prefix="")
    assert info == {"nf": 8, "gc": 5, "nb": 3}
    net = RRDBNet(nf=8, nb=3, gc=5, scale=4, tail="esrgan").eval()
    net.load_state_dict(sd)          # strict: every key matched
    x = torch.rand(1, 3, 7, 9)
    with torch.no_grad():
        a, b = net(x), small_net(x)
    tol = 2e-3 if fp16 else 1e-6     # float16 storage rounds the weights
    assert (a - b).abs().max() < tol
    # fp16 weights are exactly the rounded originals
    w = small_net.RRDB_trunk[1].RDB2.conv3.weight
    want = w.half().float() if fp16 else w
    assert torch.equal(net.RRDB_trunk[1].RDB2.conv3.weight, want)


def test_keep_first_blocks_and_cli(tmp_path, small_net):
    param, binf = _write_pair(tmp_path, small_net)
    sd, _ = rrdb_state_dict(read_ncnn(param, binf), keep_blocks=2)
    assert not any(k.startswith("RRDB.RRDB_trunk.2.") for k in sd)
    assert torch.equal(sd["RRDB.trunk_conv.weight"], small_net.trunk_conv.weight.half().float())
    out = tmp_path / "enc.safetensors"
    main([str(param), str(binf), "--out", str(out), "--nb", "2"])
    from safetensors.torch import load_file
    got = load_file(str(out))
    assert set(got) == set(sd) and all(torch.equal(got[k], sd[k]) for k in sd)
    net2 = RRDBNet(nf=8, nb=2, gc=5, tail="esrgan")
    net2.load_state_dict({k[5:]: v for k, v in got.items()})


def test_bad_files_are_refused(tmp_path, small_net):
    param, binf = _write_pair(tmp_path, small_net, extra=b"\0\0\0\0")
    with pytest.raises(NcnnError, match="bytes left"):
        read_ncnn(param, binf)
    param, binf = _write_pair(tmp_path, small_net)
    binf.write_bytes(binf.read_bytes()[:-100])
    with pytest.raises(NcnnError, match="truncated|ends before"):
        read_ncnn(param, binf)
    param.write_text("not ncnn\n")
    with pytest.raises(NcnnError, match="magic"):
        read_ncnn(param, binf)


def test_trainer_starts_l1_stage_from_imported_weights(tmp_path, small_net):
    """``encoder.init`` loads the weights but keeps the L1 stage (``encoder.checkpoint`` skips it)."""
    from flow.train import TrainConfig, Trainer
    from safetensors.torch import save_file

    torch.manual_seed(1)
    enc = RRDBNet(nf=16, nb=2, gc=8, tail="official")
    sd = {"RRDB." + k: v.detach().clone() for k, v in enc.state_dict().items()}
    path = tmp_path / "enc.safetensors"
    save_file(sd, str(path))
    base = {"model": "tiny_4x", "run": {"dir": str(tmp_path / "r"), "val_every": 0}}
    tr = Trainer(TrainConfig.from_dict({**base, "encoder": {"init": str(path), "pretrain_steps": 5}}), device="cpu")
    assert tr.stage == "encoder"
    assert torch.equal(tr.model.RRDB.conv_first.weight, enc.conv_first.weight)
    tr2 = Trainer(TrainConfig.from_dict({**base, "encoder": {"checkpoint": str(path), "pretrain_steps": 5}}),
                  device="cpu")
    assert tr2.stage == "flow"
