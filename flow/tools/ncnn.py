"""Import RRDBNet weights from an ncnn model (``.param`` + ``.bin``), e.g. Real-ESRGAN x4plus.

The ncnn ``.param`` text lists layers in execution order; every ``Convolution`` line carries
``0=num_output 1=kernel_w 5=bias_term 6=weight_data_size`` (input channels follow from
``weight_data_size / (num_output * k * k)``).  The ``.bin`` holds, for each convolution in
that order, its weight blob (a 4-byte storage tag, then the values in OIHW order, padded to
4 bytes) and then, for ``bias_term = 1``, ``num_output`` float32 biases with no tag.  Tags:
``0x01306B47`` float16, ``0`` float32.  Other layer types in such a file carry no weights.

Real-ESRGAN's ``RRDBNet`` (nf 64, nb 23, gc 32) runs its convolutions in exactly our module
order: ``conv_first``, then for each trunk block ``RDB1..3 x conv1..conv5``, then
``trunk_conv``, ``upconv1``, ``upconv2``, ``HRconv``, ``conv_last``.  It uses the ESRGAN
tail, so a model built on these weights should use ``RRDBConfig(tail="esrgan")``.

Command line (writes an RRDB-only safetensors file for ``encoder.checkpoint`` of a training
config, keys ``RRDB.*``)::

    python -m flow.ncnn REALESRGAN_X4PLUS_UP4X.param REALESRGAN_X4PLUS_UP4X.bin \\
        --out runs/realesrgan_x4plus_rrdb.safetensors [--nb 8]
"""
from __future__ import annotations

import argparse
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

TAG_FP16 = 0x01306B47
TAG_FP32 = 0


class NcnnError(ValueError):
    pass


@dataclass
class NcnnConv:
    name: str
    out_ch: int
    in_ch: int
    k: int
    weight: np.ndarray        # (out, in, k, k) float32
    bias: np.ndarray | None   # (out,) float32


def parse_param(text: str) -> list[dict]:
    """The ``Convolution`` layers of an ncnn ``.param`` file, in order:
    ``{'name', 'out', 'k', 'bias', 'size'}``."""
    lines = [l.split() for l in text.splitlines() if l.strip()]
    if not lines or lines[0] != ["7767517"]:
        raise NcnnError("not an ncnn .param file (missing the 7767517 magic)")
    convs = []
    for parts in lines[2:]:
        if parts[0] != "Convolution":
            continue
        n_in, n_out = int(parts[2]), int(parts[3])
        kv = {}
        for item in parts[4 + n_in + n_out:]:
            k, _, v = item.partition("=")
            kv[k] = v
        try:
            k = int(kv.get("1", "1"))
            conv = {"name": parts[1], "out": int(kv["0"]), "k": k, "bias": int(kv.get("5", "0")),
                    "size": int(kv["6"])}
        except (KeyError, ValueError):
            raise NcnnError(f"Convolution {parts[1]}: missing num_output/weight_data_size") from None
        if kv.get("11", str(k)) != str(k):
            raise NcnnError(f"Convolution {parts[1]}: non-square kernels are not supported")
        if conv["size"] % (conv["out"] * k * k):
            raise NcnnError(f"Convolution {parts[1]}: weight size {conv['size']} is not out*in*k*k")
        convs.append(conv)
    return convs


def read_ncnn(param_path, bin_path) -> list[NcnnConv]:
    """Every convolution's weights and bias; the ``.bin`` must be consumed exactly."""
    specs = parse_param(Path(param_path).read_text())
    data = Path(bin_path).read_bytes()
    pos, out = 0, []
    for s in specs:
        if pos + 4 > len(data):
            raise NcnnError(f"{bin_path}: ends before the weights of {s['name']}")
        (tag,) = struct.unpack_from("<I", data, pos)
        pos += 4
        n = s["size"]
        need = {TAG_FP16: 2 * n, TAG_FP32: 4 * n}.get(tag, 0) + 4 * s["out"] * s["bias"]
        if pos + need > len(data):
            raise NcnnError(f"{bin_path}: truncated at {s['name']}")
        if tag == TAG_FP16:
            w = np.frombuffer(data, "<f2", n, pos).astype(np.float32)
            pos += 2 * n
            pos += (-pos) % 4
        elif tag == TAG_FP32:
            w = np.frombuffer(data, "<f4", n, pos).copy()
            pos += 4 * n
        else:
            raise NcnnError(f"{bin_path}: unsupported storage tag {tag:#010x} at {s['name']}")
        b = None
        if s["bias"]:
            b = np.frombuffer(data, "<f4", s["out"], pos).copy()
            pos += 4 * s["out"]
        cin = n // (s["out"] * s["k"] ** 2)
        out.append(NcnnConv(s["name"], s["out"], cin, s["k"], w.reshape(s["out"], cin, s["k"], s["k"]), b))
    if pos != len(data):
        raise NcnnError(f"{bin_path}: {len(data) - pos} bytes left after the last convolution "
                        "(not the file that goes with this .param?)")
    return out


def rrdb_conv_names(nb: int) -> list[str]:
    """Our RRDBNet's convolution names in ESRGAN execution order."""
    names = ["conv_first"]
    for b in range(nb):
        for r in (1, 2, 3):
            names += [f"RRDB_trunk.{b}.RDB{r}.conv{c}" for c in range(1, 6)]
    return names + ["trunk_conv", "upconv1", "upconv2", "HRconv", "conv_last"]


def rrdb_state_dict(convs: list[NcnnConv], keep_blocks: int | None = None,
                    prefix: str = "RRDB.") -> tuple[dict[str, torch.Tensor], dict]:
    """Map an ncnn RRDBNet (4x, two upconvs) onto our keys.  ``keep_blocks``: keep only the
    first trunk blocks (the tail convs still come from the full model).  Returns the state
    dict and ``{'nf', 'gc', 'nb'}`` of the source."""
    if (len(convs) - 6) % 15 or len(convs) < 21:
        raise NcnnError(f"{len(convs)} convolutions: not an RRDBNet (6 + 15 per trunk block)")
    nb = (len(convs) - 6) // 15
    names = rrdb_conv_names(nb)
    nf, gc = convs[0].out_ch, convs[1].out_ch
    for name, c in zip(names, convs):
        want_out = gc if name.endswith(("conv1", "conv2", "conv3", "conv4")) and "RDB" in name else nf
        if name == "conv_last":
            want_out = c.out_ch
        if c.out_ch != want_out or c.k != 3 or c.bias is None:
            raise NcnnError(f"{c.name} -> {name}: shape {c.out_ch}x{c.in_ch}x{c.k} does not fit an RRDBNet "
                            f"with nf {nf}, gc {gc}")
    keep = nb if keep_blocks is None else int(keep_blocks)
    if not 1 <= keep <= nb:
        raise NcnnError(f"keep_blocks must be in 1..{nb}, got {keep_blocks}")
    sd = {}
    for name, c in zip(names, convs):
        if name.startswith("RRDB_trunk.") and int(name.split(".")[1]) >= keep:
            continue
        sd[prefix + name + ".weight"] = torch.from_numpy(np.ascontiguousarray(c.weight))
        sd[prefix + name + ".bias"] = torch.from_numpy(c.bias)
    return sd, {"nf": nf, "gc": gc, "nb": nb}


def main(argv=None):
    ap = argparse.ArgumentParser(description="Convert an ncnn RRDBNet (e.g. Real-ESRGAN x4plus) "
                                             "to an RRDB-only safetensors file (keys RRDB.*).")
    ap.add_argument("param")
    ap.add_argument("bin")
    ap.add_argument("--out", required=True)
    ap.add_argument("--nb", type=int, default=None, help="keep only the first NB trunk blocks")
    a = ap.parse_args(argv)
    from safetensors.torch import save_file

    sd, info = rrdb_state_dict(read_ncnn(a.param, a.bin), a.nb)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    meta = {"source": Path(a.bin).name, "nf": str(info["nf"]), "gc": str(info["gc"]),
            "nb_source": str(info["nb"]), "nb": str(a.nb or info["nb"]), "tail": "esrgan"}
    save_file(sd, a.out, metadata=meta)
    print(f"wrote {a.out}: {len(sd)} tensors, nf {info['nf']}, gc {info['gc']}, "
          f"trunk {a.nb or info['nb']} of {info['nb']} blocks (ESRGAN tail)")


if __name__ == "__main__":
    main()
