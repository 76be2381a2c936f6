"""Style transfer through the app's API (issue #17): launches the app in-process with the
shipped ``studio_4x`` and ``hcflow_sr_4x`` models, loads the ``chelsea`` photo as a
512x512 HR image (128x128 LR, "downscale first"), generates a sample and calls
``/style_transfer`` (style: ``assets/examples/coffee_cup.png``, whole image) with
gradio_client: one first call (the style is encoded), then the median of ``--repeats``
warm calls (each after ``/undo``; the session's cached style statistics).  Prints the
times and the status lines (which carry any non-finite guard warning, ⚠).

    OMP_WAIT_POLICY=PASSIVE python scripts/bench_style_api.py --threads 2 --repeats 5
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from app_testing import client, example_photo, running_app, save_png  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--models", default="studio_4x,hcflow_sr_4x")
    args = ap.parse_args(argv)
    import torch
    from gradio_client import handle_file

    import flow
    from flow import editing as E
    from flow.tools.data import heldout_images

    torch.set_num_threads(args.threads)
    names = [n for n in args.models.split(",") if (ROOT / "assets" / f"{n}.safetensors").is_file()]
    models = {n: flow.load_model(ROOT / "assets" / f"{n}.safetensors", device="cpu") for n in names}
    tmp = Path(tempfile.mkdtemp())
    photo = save_png(E.fit_image(heldout_images(("chelsea",), crop=None)["chelsea"], 512, 512), tmp / "chelsea.png")
    style = handle_file(str(example_photo("coffee_cup")))
    print(f"threads {torch.get_num_threads()}; 128x128 LR (512x512 HR); style coffee_cup.png; "
          f"median of {args.repeats} warm calls")
    with running_app(models) as demo:
        c = client(demo)
        for n in names:
            c.predict(handle_file(photo), True, n, api_name="/load_image")
            c.predict(0.8, 0, 1, api_name="/generate")
            t0 = time.perf_counter()
            _, _, first_status = c.predict(style, False, None, api_name="/style_transfer")
            t_first = time.perf_counter() - t0
            times, statuses = [], []
            for _ in range(args.repeats):
                c.predict(api_name="/undo")
                t0 = time.perf_counter()
                _, _, st = c.predict(style, False, None, api_name="/style_transfer")
                times.append(time.perf_counter() - t0)
                statuses.append(st)
            warn = sum("⚠" in s for s in [first_status] + statuses)
            print(f"{n}: first call {t_first:.2f} s; warm median {statistics.median(times):.2f} s "
                  f"(all {', '.join(f'{t:.2f}' for t in times)}); calls with a guard warning: {warn} of "
                  f"{args.repeats + 1}")
            print(f"  first: {first_status.splitlines()[0]}")
            print(f"  warm:  {statuses[-1].splitlines()[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
