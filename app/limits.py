"""Every limit of the app, in one place.  The editing session (:mod:`app.session`) and the
engine (:mod:`app.engine`) enforce them; the UI reads them for its controls and its
argument checks; uploads are decoded within them (:mod:`app.images`); ``launch.py``
takes its defaults from them."""

#: smallest LR side (px) a session works on; an HR photo needs ``MIN_LR_SIDE * scale``
MIN_LR_SIDE = 8
#: largest LR side (px) by default: larger inputs are downsized (``launch.py --max-side``)
MAX_LR_SIDE = 256
#: samples per "generate"
MAX_SAMPLES = 16
#: mask dilation, in latent positions of each level
MAX_DILATION = 8
#: temperature tau of every operation (a standard-deviation multiplier, >= 0)
MAX_TEMPERATURE = 1.2
#: seeds are integers 0..MAX_SEED
MAX_SEED = 2**63 - 1
#: PSNR values are capped here (an exactly LR-consistent image has infinite LR-PSNR)
PSNR_CAP = 100.0
#: undo steps and their memory per session (``launch.py --history-mb``)
HISTORY_STEPS = 20
HISTORY_MB = 256
#: uploads: file size, decoded pixels, smallest side
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_UPLOAD_PIXELS = 16_000_000
MIN_UPLOAD_SIDE = 8
#: largest gallery a session file may hold (as many as one "generate" makes)
MAX_SESSION_GALLERY = MAX_SAMPLES
#: memory estimate of one action: bytes per HR pixel of the working image (the encoder
#: condition with its per-layer caches and one full decode; derived from the studio model's
#: measurements: a 320² LR session, 1.64 MP HR, took +1.5 GB) plus, per image the action
#: keeps (gallery samples, undo snapshots), its uint8 image, float raw decode and latents
BYTES_PER_HR_PIXEL = 1024
KEPT_BYTES_PER_HR_PIXEL = 3 + 12 + 12
#: largest memory estimate of one action (``launch.py --max-action-mb``)
MAX_ACTION_MB = 2048
#: style images whose latent statistics a session keeps (repeat style transfers skip the encoder)
STYLE_CACHE = 4


def action_bytes(hr_h: int, hr_w: int, kept: int = 1) -> int:
    """Estimated memory (bytes) of an action on an ``hr_h`` x ``hr_w`` HR image that keeps
    ``kept`` images (e.g. the samples of a "generate")."""
    px = int(hr_h) * int(hr_w)
    return px * BYTES_PER_HR_PIXEL + max(int(kept), 1) * px * KEPT_BYTES_PER_HR_PIXEL


def check_action(what: str, hr_h: int, hr_w: int, kept: int = 1, max_mb: float = MAX_ACTION_MB) -> None:
    """``ValueError`` naming the size and the limit when :func:`action_bytes` exceeds
    ``max_mb`` megabytes; nothing happens otherwise (checked before the action runs)."""
    need = action_bytes(hr_h, hr_w, kept)
    if need > max_mb * 2**20:
        many = f", {kept} images" if kept > 1 else ""
        raise ValueError(f"{what} on a {int(hr_w)}×{int(hr_h)} result{many} needs about {need / 2**20:.0f} MB; "
                         f"this server allows {max_mb:g} MB per action. Use a smaller image"
                         + (" or fewer samples." if kept > 1 else "."))


def check_lr_side(what: str, lr_h: int, lr_w: int, max_side: int | None) -> None:
    """``ValueError`` when an LR of ``lr_w`` x ``lr_h`` exceeds ``max_side`` (None: no limit)."""
    if max_side is not None and max(int(lr_h), int(lr_w)) > int(max_side):
        raise ValueError(f"{what} has an LR of {int(lr_w)}×{int(lr_h)}; this server allows at most {int(max_side)} px "
                         f"on the LR's longest side (--max-side). Open it on a server with a larger limit, or "
                         f"load a smaller image.")
