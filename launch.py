"""Launch SRFlow Studio (the Gradio app).

    python launch.py                                   # the shipped models in assets/ (see below)
    python launch.py --model a.safetensors,b.safetensors
    python launch.py --model SRFlow_DF2K_4X.pth --config SRFlow_DF2K_4X.yml
    python launch.py --host 0.0.0.0 --port 7860 --max-side 256 --queue-size 16 --concurrency 1

Without ``--model`` the app serves the shipped models of ``app.models.SHIPPED``:
``assets/studio_4x.safetensors`` (SRFlow, required) and, when present,
``assets/hcflow_sr_4x.safetensors`` and ``assets/hcflow_rescaling_4x.safetensors``
(HCFlow SR and rescaling).  ``--model`` may be given several times and/or as a
comma-separated list; SRFlow and HCFlow files can be mixed (the family is read from
the file).  Our own
``.safetensors`` files describe their architecture; official ``.pth`` files need
their YAML: one ``--config`` for all of them, or one ``--config`` per ``.pth`` in
the order the ``.pth`` files are given.

The app works offline: no CDN assets, analytics off, nothing fetched at run time.
"""
from __future__ import annotations

import argparse
import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

# Before gradio (or huggingface_hub) is imported anywhere: no analytics, no telemetry.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_MODEL = ROOT / "assets" / "studio_4x.safetensors"     # required when no --model is given

from app import limits  # noqa: E402  (constants only: nothing heavy is imported)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="launch.py", description="SRFlow Studio: explorable super-resolution "
                                "with latent-space editing (Gradio app).")
    p.add_argument("--model", action="append", default=None, metavar="PATH",
                   help="model file: our .safetensors (SRFlow or HCFlow), or an official SRFlow/HCFlow .pth "
                        "(with --config); repeat or comma-separate for several (default: the shipped "
                        "assets/studio_4x.safetensors plus the HCFlow files in assets/ that exist)")
    p.add_argument("--config", action="append", default=None, metavar="YAML",
                   help="official YAML for the .pth model(s): once for all, or once per .pth in order")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="inference device (default: auto = cuda if available)")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--share", action="store_true",
                   help="create a public gradio.live link (needs outside network; off by default)")
    p.add_argument("--max-side", type=int, default=limits.MAX_LR_SIDE,
                   help=f"largest LR side in pixels; larger inputs are downsized (default {limits.MAX_LR_SIDE})")
    p.add_argument("--queue-size", type=int, default=16, help="max queued requests (default 16)")
    p.add_argument("--concurrency", type=int, default=1,
                   help="requests processed at the same time (default 1)")
    p.add_argument("--max-file-size", default="20mb", help="upload size limit (default 20mb)")
    p.add_argument("--history-mb", type=int, default=limits.HISTORY_MB,
                   help=f"memory of the undo history per browser tab, in MB (default {limits.HISTORY_MB})")
    p.add_argument("--max-action-mb", type=int, default=limits.MAX_ACTION_MB,
                   help="largest memory estimate of one action, in MB; larger ones are refused before they "
                        f"run (default {limits.MAX_ACTION_MB})")
    a = p.parse_args(argv)
    for name in ("max_side", "queue_size", "concurrency", "port", "history_mb", "max_action_mb"):
        if getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be positive")
    return a


def model_paths(args) -> list[Path]:
    if not args.model:
        from app.models import shipped_paths

        return shipped_paths(DEFAULT_MODEL)
    out = []
    for item in args.model:
        out += [Path(s.strip()) for s in item.split(",") if s.strip()]
    return out


def load_models(paths: list[Path], configs: list[str] | None, device: str = "auto") -> dict:
    """``{display name: model}``; raises ``SystemExit`` with a clear message on any problem."""
    import flow

    configs = list(configs or [])
    pth = [p for p in paths if p.suffix != ".safetensors"]
    if pth and not configs:
        raise SystemExit(f"error: {pth[0]} is an official checkpoint: pass its YAML with --config")
    if len(configs) not in (0, 1, len(pth)):
        raise SystemExit(f"error: {len(configs)} --config for {len(pth)} .pth model(s): "
                         "give one for all, or one per .pth")
    models: dict = {}
    k = 0
    for path in paths:
        cfg = None
        if path.suffix != ".safetensors":
            cfg = configs[0] if len(configs) == 1 else configs[k]
            k += 1
        if not path.is_file():
            hint = (" (the shipped model is produced by training: see configs/studio_4x.yaml, "
                    "or pass --model PATH)") if path == DEFAULT_MODEL else ""
            raise SystemExit(f"error: model file not found: {path}{hint}")
        try:
            model = flow.load_model(path, config=cfg, device=device)
        except (flow.CheckpointError, ValueError, KeyError, RuntimeError) as e:
            raise SystemExit(f"error: cannot load {path}: {e}") from None
        name = path.stem
        i = 2
        while name in models:
            name, i = f"{path.stem}-{i}", i + 1
        models[name] = model
    return models


def _install_signal_handlers() -> None:
    """Ctrl-C and SIGTERM end the server through normal interpreter exit, so the
    temp/cache directories registered with atexit are removed.  (A process started in
    the background by a non-interactive shell inherits SIGINT as *ignored*; restore it.)"""
    import signal

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))


def main(argv=None) -> None:
    _install_signal_handlers()
    args = parse_args(argv)
    models = load_models(model_paths(args), args.config, args.device)
    from app.models import describe

    for name, m in models.items():
        i = describe(name, m)
        print(f"model {name}: {i.family} {i.kind} ({m.cfg.name}), {m.scale}x, on {m.device}", flush=True)

    # gradio's file cache: a directory of this server's own (unless GRADIO_TEMP_DIR is set),
    # cleaned every 30 min of files older than 2 h, and removed at exit
    if not os.environ.get("GRADIO_TEMP_DIR"):
        cache = tempfile.mkdtemp(prefix="srflow-studio-cache-")
        os.environ["GRADIO_TEMP_DIR"] = cache
        atexit.register(shutil.rmtree, cache, ignore_errors=True)

    from app.ui import build_demo, launch_kwargs

    demo = build_demo(models, max_side=args.max_side, queue_size=args.queue_size,
                      concurrency=args.concurrency, max_history_mb=args.history_mb,
                      max_action_mb=args.max_action_mb,
                      delete_cache=(1800, 7200))
    demo.launch(server_name=args.host, server_port=args.port, share=args.share,
                **launch_kwargs(args.max_file_size))


if __name__ == "__main__":
    main()
