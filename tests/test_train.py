"""Training entry point: loss goes down, exact resume, freeze, betas, NaN guard, DDP, export."""
import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from flow import load_model
from flow.data import CropSampler, DataError
from flow.ops.imresize import imresize
from flow.train import TrainConfig, Trainer, main as train_main

ROOT = Path(__file__).resolve().parents[1]


def _photos(tmp: Path, n=3, size=96, seed=0) -> Path:
    """Smooth random colour images (a learnable distribution)."""
    rng = np.random.default_rng(seed)
    d = tmp / "photos"
    d.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(n):
        img = np.zeros((size, size, 3))
        for c in range(3):
            a, b, p = rng.uniform(1, 6, 3)
            img[..., c] = 0.5 + 0.4 * np.sin(a * xx * 6 + p) * np.cos(b * yy * 6)
        Image.fromarray((img * 255).round().astype(np.uint8)).save(d / f"img{i}.png")
    return d


def _cfg(tmp: Path, **optim) -> TrainConfig:
    d = {
        "model": {"preset": "tiny_4x"},
        "data": {"train_dirs": [str(_photos(tmp))], "crop": 32, "batch": 2},
        "encoder": {"pretrain_steps": 0},
        "optim": {"steps": 40, "lr": 1e-3, "betas": [0.9, 0.99], **optim},
        "run": {"dir": str(tmp / "run"), "ckpt_every": 1000, "val_every": 0, "log_every": 1, "seed": 3},
    }
    return TrainConfig.from_dict(d)


def _trainer(cfg, **kw):
    s = CropSampler.from_dirs(cfg.data.train_dirs, cfg.data.crop, cfg.model.scale)
    return Trainer(cfg, device="cpu", sampler=s, **kw)


def test_loss_decreases(tmp_path):
    torch.manual_seed(0)
    cfg = _cfg(tmp_path, steps=30, freeze_encoder_fraction=0.0)
    tr = _trainer(cfg)
    tr.run()
    losses = [json.loads(l)["loss"] for l in open(tmp_path / "run" / "log.jsonl") if '"train"' in l]
    assert len(losses) == 30
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.3, losses


def test_resume_is_bit_exact(tmp_path):
    cfg = _cfg(tmp_path, steps=20, weight_l1=0.5, l1_batch=1)
    cfg.run.ckpt_every = 5
    a = _trainer(cfg)
    a.run(max_steps=12)            # checkpoints after steps 5, 10 and 12 (the last two kept)
    # resume from step 10, as after a crash: the log's steps 11-12 must be dropped
    (tmp_path / "run" / "latest.txt").write_text("ckpt_flow_0000010.pt")
    b = _trainer(cfg, resume=True)
    assert b.step == 10
    b.run(max_steps=5)
    steps = [json.loads(l)["step"] for l in open(tmp_path / "run" / "log.jsonl")]
    assert steps == list(range(1, 16))      # resumed log has no duplicated steps
    c_cfg = _cfg(tmp_path, steps=20, weight_l1=0.5, l1_batch=1)
    c_cfg.run.dir = str(tmp_path / "run_straight")
    c = _trainer(c_cfg)
    c.run(max_steps=15)
    for (k, v1), v2 in zip(b.model.state_dict().items(), c.model.state_dict().values()):
        assert torch.equal(v1, v2), k
    s1, s2 = b.opt.state_dict()["state"], c.opt.state_dict()["state"]
    assert all(torch.equal(s1[i]["exp_avg_sq"], s2[i]["exp_avg_sq"]) for i in s1)
    assert b.sched.state_dict()["last_epoch"] == c.sched.state_dict()["last_epoch"] == 15


def test_resume_with_new_schedule_keeps_moments(tmp_path):
    """Resuming under a shorter plan keeps the Adam state but re-plans the LR decay."""
    cfg = _cfg(tmp_path, steps=40)
    cfg.run.ckpt_every = 6
    a = _trainer(cfg)
    a.run(max_steps=6)
    assert a.opt.param_groups[0]["lr"] == cfg.optim.lr          # 6 < 0.5 * 40
    short = _cfg(tmp_path, steps=10)                             # milestones 5, 8 (rounded), 9, 10
    b = _trainer(short, resume=True)
    assert b.step == 6
    assert b.opt.param_groups[0]["lr"] == pytest.approx(short.optim.lr * short.optim.gamma)
    s1, s2 = a.opt.state_dict()["state"], b.opt.state_dict()["state"]
    assert all(torch.equal(s1[i]["exp_avg"], s2[i]["exp_avg"]) for i in s1)
    b.run(max_steps=3)                                           # steps 7-9 cross milestones 8 and 9
    assert b.opt.param_groups[0]["lr"] == pytest.approx(short.optim.lr * short.optim.gamma ** 3)


def test_encoder_freeze_and_betas(tmp_path):
    cfg = _cfg(tmp_path, steps=10, freeze_encoder_fraction=0.5)
    tr = _trainer(cfg)
    assert tr.opt.param_groups[0]["betas"] == (0.9, 0.99)
    assert tr.enc_opt.param_groups[0]["betas"] == (0.9, 0.99)
    enc0 = {k: v.clone() for k, v in tr.model.RRDB.state_dict().items()}
    flow0 = {k: v.clone() for k, v in tr.model.flowUpsamplerNet.state_dict().items()}
    tr.run(max_steps=5)            # steps 0..4: frozen
    assert all(torch.equal(enc0[k], v) for k, v in tr.model.RRDB.state_dict().items())
    assert any(not torch.equal(flow0[k], v) for k, v in tr.model.flowUpsamplerNet.state_dict().items())
    tr.run(max_steps=3)            # now past 50 %: encoder trains
    assert any(not torch.equal(enc0[k], v) for k, v in tr.model.RRDB.state_dict().items())


def test_trainer_applies_the_configured_betas(tmp_path):
    """After the trainer's first step every parameter's Adam moments are (1 - beta1) g and
    (1 - beta2) g^2 of the gradient it applied (the clipped one, left in .grad): the
    configured betas reach the optimiser (the official code puts them where Adam ignores them)."""
    for betas in ([0.9, 0.99], [0.5, 0.8]):
        cfg = _cfg(tmp_path / str(betas[1]), steps=4, freeze_encoder_fraction=0.0, betas=betas)
        tr = _trainer(cfg)
        tr.run(max_steps=1)
        assert tr.skipped == 0
        stepped = [p for p in tr.model.parameters() if p in tr.opt.state]
        assert len(stepped) > 10
        for p in stepped:
            st = tr.opt.state[p]
            torch.testing.assert_close(st["exp_avg"], (1 - betas[0]) * p.grad, rtol=1e-5, atol=1e-12)
            torch.testing.assert_close(st["exp_avg_sq"], (1 - betas[1]) * p.grad ** 2, rtol=1e-5, atol=1e-12)


def test_nonfinite_batch_is_skipped(tmp_path):
    cfg = _cfg(tmp_path, steps=5)
    tr = _trainer(cfg)
    tr.run(max_steps=1)
    before = {k: v.clone() for k, v in tr.model.state_dict().items()}
    real = tr.sampler.batch

    def poisoned(n, g, crop=None):
        hr, lr = real(n, g, crop)
        hr[0, 0, 0, 0] = float("nan")
        return hr, lr
    tr.sampler.batch = poisoned
    tr.run(max_steps=1)
    assert tr.skipped == 1
    assert all(torch.equal(before[k], v) for k, v in tr.model.state_dict().items())
    tr.sampler.batch = real
    tr.run(max_steps=1)
    assert any(not torch.equal(before[k], v) for k, v in tr.model.state_dict().items())


def test_export_reproduces_model(tmp_path):
    cfg = _cfg(tmp_path, steps=3)
    cfg.run.export = str(tmp_path / "m.safetensors")
    tr = _trainer(cfg)
    tr.run()
    m = load_model(cfg.run.export, device="cpu")
    lr = torch.rand(1, 3, 8, 8)
    tr.model.eval()
    with torch.no_grad():
        a = tr.model.sample(lr, 0.7, seed=5)
        b = m.sample(lr, 0.7, seed=5)
    assert torch.equal(a, b)
    assert json.loads(m.meta["train_step"]) == 3


def test_export_best_only_on_improvement(tmp_path, monkeypatch):
    """``run.export_best`` is written exactly when the validation metric beats the best so
    far; a run that finds the file already there first scores it (the bar it must beat);
    the best value survives --resume."""
    import flow.train as T

    scores = iter([0.5, 0.3, 0.7, 0.6, 0.9, 0.2, 0.8, 1.0])
    monkeypatch.setattr(T, "validate", lambda *a, **k: {"psnr_gain_t0": next(scores)})
    cfg = _cfg(tmp_path, steps=8)
    cfg.run.val_every, cfg.run.val_images, cfg.run.val_crop = 2, ["astronaut"], 32
    cfg.run.ckpt_every = 2
    best = tmp_path / "best.safetensors"
    cfg.run.export_best = str(best)
    tr = _trainer(cfg)
    tr.run(max_steps=4)                          # vals at 2 (0.5: first, exported), 4 (0.3: not)
    assert json.loads(load_model(best, device="cpu").meta["train_step"]) == 2 and tr.best == 0.5
    tr2 = _trainer(cfg, resume=True)             # resumed: the best (0.5) comes from the checkpoint
    assert tr2.best == 0.5
    tr2.run()                                    # vals at 6 (0.7: exported), 8 (0.6: not)
    assert json.loads(load_model(best, device="cpu").meta["train_step"]) == 6 and tr2.best == 0.7
    vals = [json.loads(l) for l in open(tmp_path / "run" / "log.jsonl") if '"val"' in l]
    assert [v["step"] for v in vals if v.get("exported_best")] == [2, 6]
    # a new run (here --init-from it) finds the file: its score (0.9) is the bar, so 0.2 and 0.8 are not exported
    cfg2 = _cfg(tmp_path, steps=12)
    cfg2.run.dir = str(tmp_path / "run2")
    cfg2.run.val_every, cfg2.run.val_images, cfg2.run.val_crop = 2, ["astronaut"], 32
    cfg2.run.export_best = str(best)
    tr3 = _trainer(cfg2, init_from=str(best))
    tr3.run(max_steps=4)
    assert tr3.best == 0.9 and json.loads(load_model(best, device="cpu").meta["train_step"]) == 6
    tr3.run(max_steps=2)                         # 1.0 at step 12 beats it
    assert json.loads(load_model(best, device="cpu").meta["train_step"]) == 12
    base = [json.loads(l) for l in open(tmp_path / "run2" / "log.jsonl") if '"val"' in l][0]
    assert base["baseline"] == str(best) and base["step"] == 6


def test_bad_data_folders(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        CropSampler.from_dirs([tmp_path / "nope"], 32, 4)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        CropSampler.from_dirs([tmp_path / "empty"], 32, 4)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot read"):
        CropSampler.from_dirs([tmp_path / "bad"], 32, 4)


def test_zooms_add_downscaled_copies(tmp_path):
    d = _photos(tmp_path, n=2, size=96)
    plain = CropSampler.from_dirs([d], 32, 4)
    zoomed = CropSampler.from_dirs([d], 32, 4, zooms=(1.0, 0.5, 0.25))
    # 0.25 x 96 = 24 px is below the 32 px crop, so those copies are left out
    assert [im.shape[:2] for im in zoomed.images] == [(96, 96), (48, 48)] * 2
    assert all(np.array_equal(a, b) for a, b in zip(plain.images, zoomed.images[::2]))
    assert np.array_equal(zoomed.images[1], imresize(plain.images[0], 0.5))
    # the default is the old sampler: same images, so the same batches for a seed
    hr_a, _ = plain.batch(4, torch.Generator().manual_seed(5))
    hr_b, _ = CropSampler.from_dirs([d], 32, 4, zooms=[1.0]).batch(4, torch.Generator().manual_seed(5))
    assert torch.equal(hr_a, hr_b)
    cfg = TrainConfig.from_dict({"model": "tiny_4x", "data": {"zooms": [1.0, 0.5]}})
    assert cfg.data.zooms == [1.0, 0.5] and TrainConfig.from_dict({"model": "tiny_4x"}).data.zooms == [1.0]
    for bad in ([], [0.0], [1.5]):
        with pytest.raises(DataError, match="zooms"):
            CropSampler.from_dirs([d], 32, 4, zooms=bad)


def test_encoder_pretrain_stage(tmp_path):
    d = {"model": "tiny_4x", "data": {"train_dirs": [str(_photos(tmp_path))], "crop": 32, "batch": 2},
         "encoder": {"pretrain_steps": 4, "batch": 2}, "optim": {"steps": 2},
         "run": {"dir": str(tmp_path / "run"), "val_every": 0, "log_every": 1}}
    cfg = TrainConfig.from_dict(d)
    tr = _trainer(cfg)
    assert tr.stage == "encoder"
    tr.run()
    assert tr.stage == "flow" and tr.enc_step == 4 and tr.step == 2
    recs = [json.loads(l) for l in open(tmp_path / "run" / "log.jsonl")]
    assert [r["stage"] for r in recs if r["kind"] == "train"] == ["encoder"] * 4 + ["flow"] * 2


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


@pytest.mark.parametrize("preset_name", ["tiny_4x", "hcflow_tiny_rescaling_4x"])
def test_ddp_two_cpu_processes(tmp_path, preset_name):
    """torchrun-style launch with 2 gloo ranks (different batches per rank): a few steps,
    replicas stay identical, so gradients were averaged (SRFlow and HCFlow rescaling)."""
    cfg = {"model": {"preset": preset_name},
           "data": {"train_dirs": [str(_photos(tmp_path))], "crop": 32, "batch": 2},
           "optim": {"steps": 4, "freeze_encoder_fraction": 0.5},
           "run": {"dir": str(tmp_path / "run"), "val_every": 0, "log_every": 1, "ckpt_every": 1000}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    script = tmp_path / "worker.py"
    script.write_text(
        "import sys, torch, torch.distributed as dist\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from flow.train import TrainConfig, Trainer\n"
        "from flow.data import CropSampler\n"
        "dist.init_process_group('gloo')\n"
        f"cfg = TrainConfig.load({str(tmp_path / 'c.yaml')!r})\n"
        "s = CropSampler.from_dirs(cfg.data.train_dirs, cfg.data.crop, cfg.model.scale)\n"
        "tr = Trainer(cfg, device='cpu', sampler=s)\n"
        "tr.run()\n"
        "flat = torch.cat([p.detach().flatten() for p in tr.model.parameters()])\n"
        "ref = flat.clone(); dist.broadcast(ref, 0)\n"
        "assert tr.step == 4\n"
        "print('RANK', dist.get_rank(), 'MAXDIFF', float((flat - ref).abs().max()), 'NORM', float(flat.norm()))\n"
        "dist.destroy_process_group()\n")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    port = _free_port()
    procs = []
    for rank in range(2):
        e = dict(env, RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                 MASTER_PORT=str(port))
        procs.append(subprocess.Popen([sys.executable, str(script)], env=e, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    outs = [p.communicate(timeout=300)[0] for p in procs]
    for p, o in zip(procs, outs):
        assert p.returncode == 0, o[-3000:]
    diffs = [float(o.split("MAXDIFF")[1].split()[0]) for o in outs]
    assert diffs == [0.0, 0.0], outs
    norms = {o.split("NORM")[1].split()[0] for o in outs}
    assert len(norms) == 1


def test_cli_smoke(tmp_path):
    cfg = {"model": "tiny_4x", "data": {"train_dirs": [str(_photos(tmp_path))], "crop": 32, "batch": 2},
           "optim": {"steps": 2}, "run": {"dir": str(tmp_path / "run"), "val_every": 2, "log_every": 1,
                                          "val_crop": 32, "val_images": ["astronaut"],
                                          "export": str(tmp_path / "out.safetensors")}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    train_main(["--config", str(tmp_path / "c.yaml"), "--device", "cpu"])
    recs = [json.loads(l) for l in open(tmp_path / "run" / "log.jsonl")]
    val = [r for r in recs if r["kind"] == "val"]
    assert val and math.isfinite(val[0]["psnr_t0"]) and "lr_psnr_t09" in val[0]
    assert (tmp_path / "out.safetensors").exists()
    assert (tmp_path / "run" / "log.csv").read_text().startswith("kind,stage,step,loss")


@pytest.mark.parametrize("preset", ["hcflow_tiny_sr_4x", "hcflow_tiny_rescaling_4x"])
def test_hcflow_training_lowers_loss_and_exports(tmp_path, preset):
    torch.manual_seed(0)
    cfg = _cfg(tmp_path, steps=25, quant=64, weight_l1=1.0)
    cfg.model = TrainConfig.from_dict({"model": {"preset": preset}}).model
    cfg.run.export = str(tmp_path / "hc.safetensors")
    tr = _trainer(cfg)
    tr.run()
    recs = [json.loads(l) for l in open(tmp_path / "run" / "log.jsonl") if '"train"' in l]
    losses = [r["loss"] for r in recs]
    assert len(losses) == 25 and all(math.isfinite(v) for v in losses)
    assert np.mean(losses[-5:]) < np.mean(losses[:5]), losses
    if "rescaling" in preset:
        assert {"lr_l2", "z_l2", "hr_l1"} <= set(recs[-1])
    m = load_model(tmp_path / "hc.safetensors", device="cpu")
    lr = torch.rand(1, 3, 6, 6)
    with torch.no_grad():
        assert torch.equal(m.sample(lr, 0.5, seed=1), tr.model.eval().sample(lr, 0.5, seed=1))


def test_hcflow_plus_plus_losses_refused_offline(tmp_path):
    d = {"model": {"preset": "hcflow_tiny_sr_4x"}, "optim": {"weight_gan": 0.5}}
    with pytest.raises(ValueError, match="VGG19"):
        TrainConfig.from_dict(d)
    with pytest.raises(ValueError, match="no separate RRDB encoder"):
        TrainConfig.from_dict({"model": "hcflow_tiny_sr_4x", "encoder": {"pretrain_steps": 10}})


def test_synthetic_patterns_reach_the_lr_and_are_reproducible():
    """``data.synthetic``: the share of synthetic crops, each kind's LR as described
    (noise stays noise, a 1-LR-pixel checkerboard stays one), same batches for the same seed."""
    from flow.data import SYNTHETIC_KINDS, CropSampler, make_lr, synthetic_crop

    g = torch.Generator().manual_seed(0)
    for kind in SYNTHETIC_KINDS:
        p = synthetic_crop(64, g, 4, kind)
        assert p.shape == (64, 64, 3) and p.dtype == np.uint8
    lr = make_lr(synthetic_crop(64, torch.Generator().manual_seed(1), 4, "noise"), 4).astype(float)
    assert np.abs(np.diff(lr, axis=1)).mean() > 20            # neighbouring LR pixels independent
    found_1px = False
    for seed in range(12):
        lr = make_lr(synthetic_crop(64, torch.Generator().manual_seed(seed), 4, "checker"), 4).astype(float)
        found_1px |= np.abs(np.diff(lr, axis=1)).min() > 100   # alternates at every LR pixel
    assert found_1px
    photo = (np.random.default_rng(0).random((80, 80, 3)) * 255).astype(np.uint8)
    s = CropSampler([photo], 32, 4, synthetic=0.5)
    a = s.batch(64, torch.Generator().manual_seed(3))
    b = s.batch(64, torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    # synthetic crops are piecewise constant in 4x4 HR blocks or smooth; photo crops here are iid noise
    hr = a[0]
    blocky = (hr[..., ::4, ::4] == hr[..., 1::4, 1::4]).float().mean(dim=(1, 2, 3)) > 0.5
    assert 16 <= int(blocky.sum()) <= 48


def test_rescaling_nonfinite_term_skips_the_batch(tmp_path):
    """A non-finite term of the rescaling loss (here the LR-L2, from a NaN in the bicubic
    LR target) makes the loss non-finite, so the guard skips the batch: no term is dropped."""
    d = {"model": {"preset": "hcflow_tiny_rescaling_4x"},
         "data": {"train_dirs": [str(_photos(tmp_path))], "crop": 32, "batch": 2},
         "optim": {"steps": 5, "lr": 1e-3},
         "run": {"dir": str(tmp_path / "run"), "ckpt_every": 1000, "val_every": 0, "log_every": 1}}
    tr = _trainer(TrainConfig.from_dict(d))
    tr.run(max_steps=1)
    before = {k: v.clone() for k, v in tr.model.state_dict().items()}
    real = tr.sampler.batch

    def poisoned(n, g):
        hr, lr = real(n, g)
        lr[0, 0, 0, 0] = float("nan")
        return hr, lr
    tr.sampler.batch = poisoned
    hr, lr = poisoned(2, torch.Generator().manual_seed(0))
    loss, parts = tr.model.rescaling_loss(hr, lr)
    assert torch.isfinite(parts["hr_l1"]) and not torch.isfinite(parts["lr_l2"]) and not torch.isfinite(loss)
    tr.run(max_steps=1)
    assert tr.skipped == 1
    assert all(torch.equal(before[k], v) for k, v in tr.model.state_dict().items())
