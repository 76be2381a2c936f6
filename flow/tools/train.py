"""Training entry point.

    python -m flow.train --config CONFIG.yaml [--resume] [--device auto|cpu|cuda]
    torchrun --nproc_per_node N -m flow.train --config CONFIG.yaml     # multi-GPU / multi-node

Stages (paper recipe): optional L1 pre-training of the RRDB encoder (or loading an
RRDB-only checkpoint), then NLL training of the flow with uniform dequantization,
the encoder frozen for the first ``freeze_encoder_fraction`` of flow steps.  Adam
uses the configured betas; the learning rate halves at the configured fractions of
the flow steps.  Non-finite losses/gradients skip the batch; gradients are clipped.
Checkpoints hold model, optimizer, scheduler, RNG and step, so ``--resume`` is exact.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from ..models import registry
from ..models.checkpoint import check_state_dict, normalize_official, read_pth, resolve_device, save_safetensors
from ..models.protocol import FlowModel
from ..ops.images import to_tensor, to_uint8
from ..ops.imresize import imresize, make_lr
from ..ops.metrics import lr_psnr, psnr
from .data import CropSampler, heldout_images
from .train_config import DataConfig, EncoderConfig, OptimConfig, RunConfig, TrainConfig

__all__ = ["DataConfig", "EncoderConfig", "OptimConfig", "RunConfig", "TrainConfig", "Trainer", "RunLog",
           "make_optimizer", "make_scheduler", "grads_finite", "init_actnorm", "validate",
           "validate_rescaling", "main"]


# ----------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------

def _is_main() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def _log(msg: str) -> None:
    if _is_main():
        print(msg, flush=True)


def make_optimizer(params, lr: float, betas, weight_decay: float = 0.0) -> torch.optim.Adam:
    """Adam with the betas really applied (the official code puts them in the wrong place)."""
    return torch.optim.Adam(params, lr=lr, betas=tuple(betas), weight_decay=weight_decay)


def make_scheduler(opt, steps: int, milestones, gamma, start: int = 0):
    """Step decay at the given fractions of ``steps``, fast-forwarded to step ``start``."""
    ms = sorted({max(1, int(round(m * steps))) for m in milestones})
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=ms, gamma=gamma)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step", category=UserWarning)
        for _ in range(start):
            sched.step()
    return sched


def grads_finite(params) -> bool:
    return all(p.grad is None or bool(torch.isfinite(p.grad).all()) for p in params)


@torch.no_grad()
def init_actnorm(model: FlowModel, hr, lr) -> None:
    """Data-dependent ActNorm initialisation on one batch (``model.data_init``); under
    torchrun rank 0's result is broadcast so that all replicas start identical."""
    model.data_init(hr, lr)
    if dist.is_initialized():
        for t in model.state_dict().values():
            dist.broadcast(t, 0)


@torch.no_grad()
def validate(model: FlowModel, images: dict, scale: int, device, seed: int = 0) -> dict:
    """PSNR at tau=0 (and bicubic), LR-PSNR at tau=0.9, NLL bits/dim on held-out crops."""
    model.eval()
    if model.kind == "rescaling":
        return validate_rescaling(model, images, scale, device)
    res = {"psnr_t0": [], "psnr_bicubic": [], "lr_psnr_t09": [], "psnr_t09": [], "nll_bpd": []}
    for i, (name, hr) in enumerate(images.items()):
        lr = make_lr(hr, scale)
        lr_t = to_tensor(lr)[None].to(device)
        hr_t = to_tensor(hr)[None].to(device)
        cond = model.encode_condition(lr_t)
        for tau, key in ((0.0, "t0"), (0.9, "t09")):
            sr = model.sample(cond, temperature=tau, seed=seed + i)
            sr8 = to_uint8(sr[0])
            res[f"psnr_{key}"].append(psnr(sr8, hr))
            if key == "t09":
                res["lr_psnr_t09"].append(min(lr_psnr(sr8, lr, scale), 100.0))
        bic = imresize(lr, float(scale))
        res["psnr_bicubic"].append(psnr(bic[: hr.shape[0], : hr.shape[1]], hr))
        res["nll_bpd"].append(float(model.nll(hr_t, lr_t, dequantize=True,
                                              generator=torch.Generator().manual_seed(seed)).bits_per_dim[0]))
    out = {k: float(np.mean(v)) for k, v in res.items()}
    out["psnr_gain_t0"] = out["psnr_t0"] - out["psnr_bicubic"]
    return out


@torch.no_grad()
def validate_rescaling(model: FlowModel, images: dict, scale: int, device) -> dict:
    """Rescaling: PSNR of the round trip (flow LR -> flow upscale at tau=0) against the HR,
    of bicubic down -> up for reference, and of the flow LR against the bicubic LR."""
    res = {"psnr_rescale": [], "psnr_bicubic": [], "psnr_lr_vs_bicubic": []}
    for name, hr in images.items():
        hr_t = to_tensor(hr)[None].to(device)
        lr_flow, rec = model.rescale_roundtrip(hr_t)
        rec8, lr8 = to_uint8(rec[0]), to_uint8(lr_flow[0])
        lr = make_lr(hr, scale)
        res["psnr_rescale"].append(psnr(rec8, hr))
        res["psnr_lr_vs_bicubic"].append(psnr(lr8, lr))
        bic = imresize(lr, float(scale))
        res["psnr_bicubic"].append(psnr(bic[: hr.shape[0], : hr.shape[1]], hr))
    out = {k: float(np.mean(v)) for k, v in res.items()}
    out["psnr_gain_rescale"] = out["psnr_rescale"] - out["psnr_bicubic"]
    return out


class RunLog:
    """Appends JSON lines (and a CSV mirror) of training/validation records."""

    def __init__(self, run_dir: Path):
        self.jsonl = run_dir / "log.jsonl"
        self.csv = run_dir / "log.csv"

    COLS = ["kind", "stage", "step", "loss", "lr", "step_time", "skipped", "psnr_t0", "psnr_bicubic",
            "lr_psnr_t09", "nll_bpd", "elapsed"]

    def write(self, rec: dict) -> None:
        if not _is_main():
            return
        with open(self.jsonl, "a") as f:
            f.write(json.dumps(rec) + "\n")
        new = not self.csv.exists()
        with open(self.csv, "a") as f:
            if new:
                f.write(",".join(self.COLS) + "\n")
            f.write(",".join(str(rec.get(c, "")) for c in self.COLS) + "\n")

    def truncate(self, stage: str, step: int) -> None:
        """Drop records written after the checkpoint being resumed (stage, step)."""
        if not _is_main() or not self.jsonl.exists():
            return
        order = {"encoder": 0, "flow": 1}
        keep = [r for r in map(json.loads, self.jsonl.read_text().splitlines())
                if (order[r["stage"]], r["step"]) <= (order[stage], step)]
        self.jsonl.write_text("".join(json.dumps(r) + "\n" for r in keep))
        self.csv.unlink(missing_ok=True)
        csv_rows = [",".join(self.COLS)] + [",".join(str(r.get(c, "")) for c in self.COLS) for r in keep]
        self.csv.write_text("\n".join(csv_rows) + "\n")


# ----------------------------------------------------------------------------
# the trainer
# ----------------------------------------------------------------------------

class Trainer:
    """Owns model, optimizers, data RNG and checkpoints; ``run()`` trains to the end."""

    def __init__(self, cfg: TrainConfig, device="auto", resume: bool = False, sampler=None,
                 init_from: str | None = None):
        self.cfg = cfg
        self.ddp = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self.ddp else 0
        self.world = dist.get_world_size() if self.ddp else 1
        if self.ddp and torch.cuda.is_available() and str(device) != "cpu":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
        self.device = resolve_device(device)
        self.run_dir = Path(cfg.run.dir)
        if _is_main():
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1, default=list))
        torch.manual_seed(cfg.run.seed)
        random.seed(cfg.run.seed)
        self.model = registry.build(cfg.model).to(self.device)
        self.model.prepare_training()
        self.sampler = sampler
        self.gen = torch.Generator().manual_seed(cfg.run.seed * 1000 + self.rank)
        self.noise_gen = torch.Generator().manual_seed(cfg.run.seed * 1000 + 500 + self.rank)
        self.stage = "encoder" if cfg.encoder.pretrain_steps > 0 and not cfg.encoder.checkpoint else "flow"
        self.step = 0
        self.enc_step = 0
        self.skipped = 0
        self.elapsed = 0.0
        self.best: float | None = None    # best validation value of run.best_metric so far
        self.log = RunLog(self.run_dir)
        self._build_optimizers()
        if cfg.encoder.checkpoint and not resume:
            self.load_encoder(cfg.encoder.checkpoint)
        elif cfg.encoder.init and not resume and not init_from:
            self.load_encoder(cfg.encoder.init, finished=False)
        if init_from and not resume:
            self.init_from(init_from)
        if resume:
            self.resume()

    # -- optimizers --------------------------------------------------------
    def _build_optimizers(self):
        c = self.cfg
        encoder = self.model.encoder
        enc = encoder.parameters() if encoder is not None else [torch.zeros(1, requires_grad=True)]
        self.enc_opt = make_optimizer(enc, c.encoder.lr, c.optim.betas)
        self.opt = make_optimizer(self.model.parameters(), c.optim.lr, c.optim.betas, c.optim.weight_decay)
        self.sched = make_scheduler(self.opt, c.optim.steps, c.optim.milestones, c.optim.gamma)

    def load_encoder(self, path, finished: bool = True):
        """Load encoder (RRDB) weights; ``finished``: skip the L1 stage (else it starts from them)."""
        path = Path(path)
        prefix = self.model.encoder_prefix
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            sd = {k: v for k, v in load_file(str(path)).items() if k.startswith(prefix)}
        else:
            sd, _ = normalize_official(read_pth(path))
            sd = {k: v for k, v in sd.items() if k.startswith(prefix)}
        check_state_dict(self.model, sd, subset=prefix, source=str(path))
        self.model.load_state_dict(sd, strict=False)
        if finished:
            self.stage = "flow"
        _log(f"loaded encoder weights from {path}" + ("" if finished else " (start of the L1 stage)"))

    def _read_export(self, path, device="cpu"):
        """An exported model of this run's architecture, and the flow step it records."""
        from ..models.checkpoint import load_model

        m = load_model(path, device=device)
        if m.cfg.to_dict() != self.cfg.model.to_dict():
            raise ValueError(f"{path}: architecture differs from the training config")
        return m, int(json.loads(getattr(m, "meta", {}).get("train_step", "0")))

    def init_from(self, path):
        """Start from exported weights (e.g. a committed model) with fresh optimizers;
        the flow step recorded in the file continues the schedule."""
        m, self.step = self._read_export(path)
        self.model.load_state_dict(m.state_dict())
        self.elapsed = float(json.loads(getattr(m, "meta", {}).get("train_seconds", "0")))
        self.stage = "flow"
        o = self.cfg.optim
        self.sched = make_scheduler(self.opt, o.steps, o.milestones, o.gamma, start=self.step)
        _log(f"initialised from {path} at flow step {self.step}")

    # -- checkpoints -------------------------------------------------------
    def state(self) -> dict:
        return {
            "model": self.model.state_dict(), "opt": self.opt.state_dict(), "sched": self.sched.state_dict(),
            "enc_opt": self.enc_opt.state_dict(), "stage": self.stage, "step": self.step,
            "enc_step": self.enc_step, "skipped": self.skipped, "elapsed": self.elapsed, "best": self.best,
            "gen": self.gen.get_state(), "noise_gen": self.noise_gen.get_state(),
            "torch_rng": torch.get_rng_state(), "config": json.dumps(self.cfg.to_dict(), default=list),
        }

    def save(self):
        if not _is_main():
            return
        tag = f"{self.stage}_{self.enc_step if self.stage == 'encoder' else self.step:07d}"
        path = self.run_dir / f"ckpt_{tag}.pt"
        tmp = path.with_suffix(".tmp")
        torch.save(self.state(), tmp)
        os.replace(tmp, path)
        (self.run_dir / "latest.txt").write_text(path.name)
        ckpts = sorted(self.run_dir.glob("ckpt_*.pt"), key=lambda p: p.stat().st_mtime)
        for old in ckpts[: -self.cfg.run.keep]:
            old.unlink()
        if self.cfg.run.export and self.stage == "flow":
            self.export(self.cfg.run.export)

    def export(self, path):
        save_safetensors(self.model, path, extra={
            "train_step": self.step, "train_seconds": round(self.elapsed, 1),
            "train_config": json.dumps(self.cfg.to_dict(), default=list)})

    @property
    def best_metric(self) -> str:
        if self.cfg.run.best_metric:
            return self.cfg.run.best_metric
        return "psnr_gain_rescale" if self.model.kind == "rescaling" else "psnr_gain_t0"

    def validate_and_log(self, images: dict) -> dict:
        """Validate on the held-out crops, log it, and export to ``run.export_best`` when
        ``run.best_metric`` beats the best so far."""
        v = validate(self.model, images, self.cfg.model.scale, self.device)
        v.update(kind="val", stage="flow", step=self.step, elapsed=round(self.elapsed, 1))
        value = self._metric(v)
        if self.cfg.run.export_best and (self.best is None or value > self.best):
            self.export(self.cfg.run.export_best)
            v["exported_best"] = True
            self.best = value
        self.log.write(v)
        _log(f"[val {self.step}] " + ", ".join(f"{k}={v[k]:.3f}" for k in v if isinstance(v[k], float)))
        return v

    @torch.no_grad()
    def validate_encoder(self, images: dict) -> dict:
        """The RRDB's own SR image on the held-out crops: PSNR and gain over bicubic."""
        encoder = self.model.encoder
        encoder.eval()
        ours, bic = [], []
        for hr in images.values():
            lr = make_lr(hr, self.cfg.model.scale)
            sr = encoder(to_tensor(lr)[None].to(self.device)).clamp(0, 1)[0]
            ours.append(psnr(to_uint8(sr), hr))
            bic.append(psnr(imresize(lr, self.cfg.model.scale), hr))
        v = {"kind": "val", "stage": "encoder", "step": self.enc_step, "rrdb_psnr": float(np.mean(ours)),
             "psnr_bicubic": float(np.mean(bic))}
        v["rrdb_gain"] = v["rrdb_psnr"] - v["psnr_bicubic"]
        self.log.write(v)
        _log(f"[val encoder {self.enc_step}] RRDB gain over bicubic {v['rrdb_gain']:+.3f} dB")
        return v

    def _metric(self, v: dict) -> float:
        if self.best_metric not in v:
            raise KeyError(f"run.best_metric {self.best_metric!r} is not a validation key: {sorted(v)}")
        return v[self.best_metric]

    def best_baseline(self, images: dict) -> None:
        """The bar for ``run.export_best`` when no best is known yet (a new run, or a
        checkpoint from before): the score of the file already there, so that it is only
        ever replaced by a better model."""
        path = Path(self.cfg.run.export_best)
        if self.best is not None or not path.exists():
            return
        m, step = self._read_export(path, self.device)
        v = validate(m, images, self.cfg.model.scale, self.device)
        v.update(kind="val", stage="flow", step=step, baseline=str(path))
        self.best = self._metric(v)
        self.log.write(v)
        _log(f"[val baseline {path}] {self.best_metric}={self.best:.3f}")

    def resume(self):
        latest = self.run_dir / "latest.txt"
        if not latest.exists():
            _log(f"--resume: no checkpoint in {self.run_dir}, starting fresh")
            return
        st = torch.load(self.run_dir / latest.read_text().strip(), map_location="cpu", weights_only=True)
        self.model.load_state_dict(st["model"])
        self.opt.load_state_dict(st["opt"])
        self.enc_opt.load_state_dict(st["enc_opt"])
        self.stage, self.step, self.enc_step = st["stage"], st["step"], st["enc_step"]
        old = json.loads(st["config"])["optim"]
        new = self.cfg.optim
        if (old["steps"], list(old["milestones"]), old["gamma"], old["lr"]) == \
                (new.steps, list(new.milestones), new.gamma, new.lr):
            self.sched.load_state_dict(st["sched"])
        else:
            # The plan changed (e.g. a shorter run than first planned): keep the Adam
            # moments, rebuild the learning-rate schedule and fast-forward it.
            for g in self.opt.param_groups:
                g["lr"] = g["initial_lr"] = new.lr
            self.sched = make_scheduler(self.opt, new.steps, new.milestones, new.gamma, start=self.step)
            _log(f"--resume: schedule changed ({old['steps']} -> {new.steps} steps); "
                 f"learning rate now {self.opt.param_groups[0]['lr']:g}")
        self.skipped, self.elapsed = st["skipped"], st["elapsed"]
        self.best = st.get("best")
        self.gen.set_state(st["gen"])
        self.noise_gen.set_state(st["noise_gen"])
        torch.set_rng_state(st["torch_rng"])
        self.log.truncate(self.stage, self.enc_step if self.stage == "encoder" else self.step)
        _log(f"resumed {self.stage} stage at step {self.enc_step if self.stage == 'encoder' else self.step}")

    # -- steps -------------------------------------------------------------
    def _batch(self, n, crop=None):
        hr, lr = self.sampler.batch(n, self.gen) if crop is None else self.sampler.batch(n, self.gen, crop)
        return hr.to(self.device), lr.to(self.device)

    def _wrapped(self, trainable_encoder: bool):
        """The module to call for the flow loss: DDP-wrapped under torchrun.  The
        wrapper is rebuilt when the encoder is (un)frozen, since DDP fixes its
        parameter set at construction."""
        if not self.ddp:
            return self.model
        if getattr(self, "_ddp_key", None) != trainable_encoder:
            from torch.nn.parallel import DistributedDataParallel as DDP
            ids = [self.device.index] if self.device.type == "cuda" else None
            self._ddp_model = DDP(self.model, device_ids=ids, find_unused_parameters=True)
            self._ddp_key = trainable_encoder
        return self._ddp_model

    def _apply(self, loss, opt, params, allreduce: bool = False) -> bool:
        """Backward + clip + step; returns False (and skips) on non-finite values.
        ``allreduce`` averages gradients across ranks (for steps outside DDP)."""
        opt.zero_grad(set_to_none=True)
        ok = torch.isfinite(loss).all()
        if self.ddp:
            flag = torch.tensor(float(ok), device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MIN)
            ok = bool(flag > 0)
        if not ok:
            return False
        loss.backward()
        if allreduce:
            for p in params:
                if p.grad is not None:
                    dist.all_reduce(p.grad)
                    p.grad /= self.world
        ok = grads_finite(params)
        if self.ddp:
            flag = torch.tensor(float(ok), device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MIN)
            ok = bool(flag > 0)
        if not ok:
            opt.zero_grad(set_to_none=True)
            return False
        if self.cfg.optim.grad_clip:
            torch.nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], self.cfg.optim.grad_clip)
        opt.step()
        return True

    def encoder_step(self) -> dict:
        """One L1 step of the RRDB alone (gradients averaged across ranks by hand)."""
        hr, lr = self._batch(self.cfg.encoder.batch, self.cfg.encoder.crop)
        encoder = self.model.encoder
        encoder.train()
        loss = F.l1_loss(encoder(lr), hr)
        params = list(encoder.parameters())
        ok = self._apply(loss, self.enc_opt, params, allreduce=self.ddp)
        return {"loss": float(loss.detach()), "ok": ok}

    def flow_step(self) -> dict:
        c = self.cfg.optim
        frozen = self.step < int(c.freeze_encoder_fraction * c.steps)
        self.model.set_encoder_trainable(not frozen)
        hr, lr = self._batch(self.cfg.data.batch)
        self.model.train()
        # an objective outside the module's forward is invisible to DDP: its gradients are
        # averaged by hand, as the encoder's
        by_hand = not self.model.loss_in_forward
        module = self.model if by_hand else self._wrapped(not frozen or self.model.encoder is None)
        out = self.model.training_loss(hr, lr, c, generator=self.noise_gen, module=module)
        params = [p for p in self.model.parameters() if p.requires_grad]
        ok = self._apply(out.loss, self.opt, params, allreduce=self.ddp and by_hand)
        self.sched.step()
        extra = {k: float(v.detach()) for k, v in out.parts.items()}
        return {"loss": float(out.reported.detach()), "l1": None if out.l1 is None else float(out.l1.detach()),
                "ok": ok, "frozen": frozen, **extra}

    # -- main loop ---------------------------------------------------------
    def run(self, max_seconds: float | None = None, max_steps: int | None = None) -> None:
        from tqdm import tqdm

        c = self.cfg
        images = heldout_images(c.run.val_images, crop=c.run.val_crop) if _is_main() and c.run.val_every else {}
        if self.stage == "flow" and self.step == 0 and not all(
                bool(m.inited) for m in self.model.modules() if hasattr(m, "inited")):
            hr, lr = self._batch(c.data.batch)
            init_actnorm(self.model, hr, lr)
        if images and c.run.export_best:
            self.best_baseline(images)
        t_start = time.time()
        done = 0
        enc_steps = c.encoder.pretrain_steps * (c.encoder.checkpoint is None)
        bar = tqdm(total=enc_steps + c.optim.steps,
                   initial=self.enc_step if self.stage == "encoder" else enc_steps + self.step,
                   disable=not _is_main(), dynamic_ncols=True, mininterval=5)
        while True:
            if self.stage == "encoder" and self.enc_step >= c.encoder.pretrain_steps:
                self.stage = "flow"
                hr, lr = self._batch(c.data.batch)
                init_actnorm(self.model, hr, lr)
                self.save()
            if self.stage == "flow" and self.step >= c.optim.steps:
                break
            if max_steps is not None and done >= max_steps:
                break
            if max_seconds is not None and time.time() - t_start > max_seconds:
                break
            t0 = time.time()
            if self.stage == "encoder":
                r = self.encoder_step()
                self.enc_step += 1
                step, lr_now = self.enc_step, self.enc_opt.param_groups[0]["lr"]
            else:
                r = self.flow_step()
                self.step += 1
                step, lr_now = self.step, self.opt.param_groups[0]["lr"]
            dt = time.time() - t0
            self.elapsed += dt
            done += 1
            bar.update(1)
            if not r["ok"]:
                self.skipped += 1
                _log(f"[{self.stage} {step}] non-finite loss or gradient: batch skipped "
                     f"({self.skipped} skipped so far)")
            if step % c.run.log_every == 0 or not r["ok"]:
                rec = {"kind": "train", "stage": self.stage, "step": step, "loss": r["loss"], "lr": lr_now,
                       "step_time": round(dt, 3), "skipped": self.skipped, "elapsed": round(self.elapsed, 1)}
                for k in ("l1", "lr_l2", "z_l2", "hr_l1"):
                    if r.get(k) is not None:
                        rec[k] = r[k]
                self.log.write(rec)
                bar.set_postfix(stage=self.stage, loss=f"{r['loss']:.3f}")
            if images and self.stage == "flow" and step % c.run.val_every == 0:
                self.validate_and_log(images)       # before the checkpoint, which stores the best
            elif images and self.stage == "encoder" and step % c.run.val_every == 0:
                self.validate_encoder(images)
            if step % c.run.ckpt_every == 0:
                self.save()
        bar.close()
        self.save()


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m flow.train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="training YAML (see configs/)")
    ap.add_argument("--resume", action="store_true", help="continue from the run folder's latest checkpoint")
    ap.add_argument("--init-from", help="start from exported weights (.safetensors) with fresh optimizers")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda")
    ap.add_argument("--max-minutes", type=float, help="stop (with a checkpoint) after this wall time")
    ap.add_argument("--threads", type=int, help="torch CPU threads")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and a.device != "cpu" else "gloo"
        dist.init_process_group(backend)
    cfg = TrainConfig.load(a.config)
    sampler = CropSampler.from_dirs(cfg.data.train_dirs, cfg.data.crop, cfg.model.scale, cfg.data.zooms,
                                    cfg.data.synthetic)
    _log(f"{len(sampler.images)} training images (photos x zooms {cfg.data.zooms}) from {cfg.data.train_dirs}")
    tr = Trainer(cfg, device=a.device, resume=a.resume, sampler=sampler, init_from=a.init_from)
    _log(f"model {cfg.model.name}: {sum(p.numel() for p in tr.model.parameters()):,} parameters on {tr.device}")
    tr.run(max_seconds=a.max_minutes * 60 if a.max_minutes else None)
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
