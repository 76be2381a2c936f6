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
#: style images whose latent statistics a session keeps (repeat style transfers skip the encoder)
STYLE_CACHE = 4
