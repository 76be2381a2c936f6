"""The app's layout: the Gradio components of every tab and the events that connect them
to the handlers (:class:`app.ui.handlers.Studio`).

``build_demo(models, ...)`` returns a queued ``gr.Blocks``.  Components are created
tab by tab (``_input_tab`` ... ``_compare_tab``, top to bottom as on the page) into one
namespace ``c`` (``c.status``, ``c.editor``, ...); :func:`_wire` then connects them
(every public action with a stable ``api_name``).  Ranges of the controls come from
:mod:`app.limits`.
"""
from __future__ import annotations

from types import SimpleNamespace

import gradio as gr

from app.images import MAX_BYTES
from app.limits import HISTORY_MB, HISTORY_STEPS, MAX_ACTION_MB, MAX_DILATION, MAX_LR_SIDE, MAX_SAMPLES, MAX_TEMPERATURE

from .components import ImageEditor, Number, Slider
from .handlers import Studio
from .views import VIEW_NAMES

CSS = """
#status textarea {font-family: ui-monospace, monospace; font-size: 0.9em}
"""

TEMP_INFO = ("τ is the standard-deviation multiplier: latents z ~ N(0, τ²). 0 = deterministic (blurry), "
             "0.8–0.9 = sharp, >1 = artifacts.")


def launch_kwargs(max_file_size: str | int | None = "20mb") -> dict:
    """The ``demo.launch`` keyword arguments the app needs (besides host/port)."""
    return dict(max_file_size=max_file_size, show_error=False, run_history=False,
                ssr_mode=False, mcp_server=False, footer_links=["api", "settings"])


def build_demo(models: dict, max_side: int = MAX_LR_SIDE, queue_size: int = 16, concurrency: int = 1,
               max_upload_bytes: int = MAX_BYTES, history: int = HISTORY_STEPS, max_history_mb: int = HISTORY_MB,
               delete_cache: tuple[int, int] | None = None, max_action_mb: float = MAX_ACTION_MB) -> gr.Blocks:
    """Build the queued Gradio app around ``models`` ({name: FlowModel}, shared read-only).

    ``max_side``: largest LR side (larger inputs are downsized); ``queue_size`` /
    ``concurrency``: queued / simultaneous requests; ``history`` / ``max_history_mb``:
    undo steps and their memory per browser tab; ``max_action_mb``: the largest memory
    estimate of one action (:func:`app.limits.check_action`); ``delete_cache``: gradio's
    ``(frequency, age)`` clean-up of the files this app put in its cache, which also
    removes them all at shutdown: only use it with a cache directory of this app's own
    (``GRADIO_TEMP_DIR``, as ``launch.py`` does), never with a shared one."""
    st = Studio(models, max_side=max_side, max_upload_bytes=max_upload_bytes, history=history,
                max_history_mb=max_history_mb, max_action_mb=max_action_mb)
    img_kw = dict(format="png", interactive=False)
    c = SimpleNamespace()
    with gr.Blocks(title="SRFlow Studio", analytics_enabled=False, delete_cache=delete_cache) as demo:
        tab = gr.State(None, time_to_live=6 * 3600)
        gr.Markdown("# SRFlow Studio\nExplorable super-resolution: sample, brush, transfer and restore "
                    "in the latent space of SRFlow and HCFlow models; rescale with HCFlow. Every result stays "
                    "consistent with the LR input "
                    f"(LR-PSNR). Inputs are limited to {max_side} px on the LR's longest side.")
        _header(c)
        with gr.Tabs():
            for build in (_input_tab, _explore_tab, _brush_tab, _transfer_tab, _restore_tab, _rescale_tab,
                          _compare_tab):
                build(c, st, img_kw)
        _wire(c, st, tab)
    demo.queue(default_concurrency_limit=int(concurrency), max_size=int(queue_size))
    demo.studio = st
    return demo


def _header(c) -> None:
    """The status line, undo/redo and downloads (above the tabs)."""
    with gr.Row():
        c.status = gr.Textbox(label="Status", lines=3, max_lines=8, interactive=False, elem_id="status",
                              value="Load an image (Input tab) to start.", scale=4)
        with gr.Column(scale=2, min_width=260):
            with gr.Row():
                c.undo_btn = gr.Button("↶ Undo", size="sm", interactive=False, elem_id="undo")
                c.redo_btn = gr.Button("↷ Redo", size="sm", interactive=False, elem_id="redo")
            with gr.Row():
                c.png_btn = gr.Button("Download PNG", size="sm", elem_id="download_png")
                c.sess_btn = gr.Button("Download session", size="sm", elem_id="download_session")
            c.dl_file = gr.File(label="Download", interactive=False, height=60, visible=False, elem_id="dl_file")
    # rendered but hidden: "<refresh count> <file name of the current image>", set by every view refresh
    c.shown = gr.Textbox(value="", visible="hidden", interactive=False, elem_id="shown", container=False)


def _input_tab(c, st, img_kw) -> None:
    """Upload, examples, model choice, session upload."""
    with gr.Tab("1 · Input", id="input"):
        with gr.Row():
            with gr.Column():
                c.upload = gr.File(label="Image (PNG, JPEG, WebP, BMP, GIF, TIFF)", file_types=["image"],
                                   type="filepath", elem_id="upload")
                c.downscale = gr.Checkbox(label="Downscale first: the upload is an HR photo; its MATLAB-"
                                          "bicubic downscale becomes the LR and the photo the ground truth",
                                          value=False, elem_id="downscale")
                c.model_dd = gr.Dropdown(choices=st.catalog.choices(), value=st.catalog.default,
                                         label="Model (family · scale)", elem_id="model",
                                         info="SRFlow and HCFlow models work in every tab; with HCFlow, "
                                              "region edits re-decode the whole image")
                c.load_btn = gr.Button("Load", variant="primary", elem_id="load")
            with gr.Column():
                c.lr_view = gr.Image(label="LR input", height=256, elem_id="lr_view", **img_kw)
        c.ex_gallery = gr.Gallery(value=[(st.files.png(img), name) for name, img in st.examples],
                                  label="Examples (public domain / CC0, see assets/examples/LICENSE.md) — "
                                        "click to load", columns=len(st.examples) or 1, height=170,
                                  allow_preview=False, format="png", interactive=False,
                                  elem_id="examples")
        c.ex_index = Number(value=0, precision=0, visible=False)
        c.session_up = gr.File(label="Upload a session file (.srflow)", type="filepath", height=110,
                               elem_id="session_upload")


def _explore_tab(c, st, img_kw) -> None:
    """Temperature, seed, samples, the gallery and the current result."""
    with gr.Tab("2 · Explore", id="explore"):
        with gr.Row():
            c.temp = Slider(0, MAX_TEMPERATURE, value=0.8, step=0.05, label="Temperature τ", info=TEMP_INFO,
                               elem_id="temperature")
            with gr.Row():
                c.seed = Number(value=0, precision=0, minimum=0, label="Seed", elem_id="seed")
                c.dice = gr.Button("⚄ Random seed", size="sm", min_width=60, elem_id="dice")
            c.n_samples = Slider(1, MAX_SAMPLES, value=4, step=1, label="Number of samples",
                                    elem_id="n_samples")
        with gr.Accordion("Exact LR consistency", open=False):
            c.proj = Slider(0, 1, value=0, step=0.05, label="LR projection strength α",
                               info="0 = off. 1 = project every new result exactly onto the images whose "
                                    "bicubic downscale is the LR (Y + α·correction); watch for ringing.",
                               elem_id="lr_projection")
        c.gen_btn = gr.Button("Generate", variant="primary", elem_id="generate")
        gr.Markdown("Click a sample to make it the current result.")
        c.gallery = gr.Gallery(label="Samples", columns=4, height=300,
                               format="png", allow_preview=False, interactive=False, elem_id="gallery")
        with gr.Row():
            c.current = gr.Image(label="Current result", elem_id="current", **img_kw)
            with gr.Column():
                c.slider = gr.ImageSlider(label="bicubic ⟷ current", format="png", interactive=False,
                                          elem_id="compare")
                c.use_gt = gr.Checkbox(label="Compare with the ground truth instead of bicubic",
                                       value=False, interactive=False, elem_id="use_gt")
            c.uncert = gr.Image(label="Uncertainty (generate ≥ 2 samples)", elem_id="uncertainty",
                                **img_kw)


def _brush_tab(c, st, img_kw) -> None:
    """The brush editor, region resample / take, latent normalization."""
    with gr.Tab("3 · Brush", id="brush"):
        gr.Markdown("Paint over the region to change, then **Resample region** (each click draws a "
                    "new variant) or **Take region from sample k** (k = position in the gallery, "
                    "0 = first; clicking a gallery sample sets it). With an **HCFlow** model every "
                    "region edit re-decodes the whole image: only its finest latent level is local, "
                    "the coarser latents under the brush also change pixels around it (in principle "
                    "anywhere); SRFlow decodes a window and leaves the rest untouched.", elem_id="brush_info")
        with gr.Row():
            c.editor = ImageEditor(type="numpy", image_mode="RGBA", label="Brush",
                                      brush=gr.Brush(default_size=12, colors=[("#ff3b6b", 0.5)],
                                                     color_mode="fixed"),
                                      eraser=gr.Eraser(default_size=12), sources=(), transforms=(),
                                      layers=False, format="png", elem_id="editor", height=520)
            with gr.Column(scale=0, min_width=260):
                c.r_temp = Slider(0, MAX_TEMPERATURE, value=0.8, step=0.05, label="Region temperature τ",
                                     info=TEMP_INFO, elem_id="region_temperature")
                c.r_seed = Number(value=1, precision=0, minimum=0, label="Region seed",
                                     info="increments after each click",
                                     elem_id="region_seed")
                c.dilation = Slider(0, MAX_DILATION, value=1, step=1, label="Mask dilation (latent cells)",
                                       elem_id="dilation")
                c.resample_btn = gr.Button("Resample region", variant="primary", elem_id="resample")
                c.take_k = Number(value=0, precision=0, minimum=0, label="Sample k",
                                     elem_id="take_k")
                c.take_btn = gr.Button("Take region from sample k", elem_id="take")
                with gr.Accordion("Latent normalization", open=False):
                    c.n_mode = gr.Radio(["local", "spatial", "global"], value="local", label="Mode")
                    c.n_temp = Slider(0, MAX_TEMPERATURE, value=0.8, step=0.05, label="Target τ")
                    c.n_seed = Number(value=0, precision=0, minimum=0, label="Seed")
                    c.n_mask = gr.Checkbox(value=False, label="Only where brushed")
                    c.norm_btn = gr.Button("Normalize", elem_id="normalize")


def _transfer_tab(c, st, img_kw) -> None:
    """Paste + harmonize, ground truth as target, style transfer."""
    with gr.Tab("4 · Transfer & style", id="transfer"):
        with gr.Row():
            with gr.Column():
                c.src_up = gr.File(label="Source image", file_types=["image"], type="filepath",
                                   elem_id="source", height=110)
                c.src_view = gr.Image(label="Source preview", height=200, elem_id="source_preview", **img_kw)
                gr.Markdown("Source box (pixels of the source image) and destination (HR pixels of "
                            "the current result; size 0 × 0 = box size).")
                with gr.Row():
                    c.by0 = Number(value=0, precision=0, label="box y0", minimum=0, min_width=70)
                    c.bx0 = Number(value=0, precision=0, label="box x0", minimum=0, min_width=70)
                    c.by1 = Number(value=32, precision=0, label="box y1", minimum=0, min_width=70)
                    c.bx1 = Number(value=32, precision=0, label="box x1", minimum=0, min_width=70)
                with gr.Row():
                    c.dy = Number(value=0, precision=0, label="dest y", minimum=0, min_width=70)
                    c.dx = Number(value=0, precision=0, label="dest x", minimum=0, min_width=70)
                    c.dh = Number(value=0, precision=0, label="dest height", minimum=0, min_width=70)
                    c.dw = Number(value=0, precision=0, label="dest width", minimum=0, min_width=70)
                c.t_mode = gr.Radio(["local", "spatial", "global"], value="local",
                                    label="Normalization (local = only the latents under the paste)")
                with gr.Row():
                    c.t_temp = Slider(0, MAX_TEMPERATURE, value=0.8, step=0.05, label="Temperature τ", info=TEMP_INFO)
                    c.t_seed = Number(value=0, precision=0, minimum=0, label="Seed")
                with gr.Row():
                    c.harm_btn = gr.Button("Harmonize", variant="primary", elem_id="harmonize")
                    c.use_hr_btn = gr.Button("Target: ground truth", elem_id="use_hr")
            with gr.Column():
                with gr.Row():
                    c.raw_view = gr.Image(label="Raw paste", elem_id="raw_paste", **img_kw)
                    c.harm_view = gr.Image(label="Harmonized", elem_id="harmonized", **img_kw)
        with gr.Row():
            with gr.Column():
                gr.Markdown("Style transfer moves the per-level statistics of this image's latents (how "
                            "strongly and in which patterns the flow adds detail) to the style image's: its "
                            "texture, not its content; the LR is kept. The style is encoded once per session.")
                c.style_up = gr.File(label="Style reference image", file_types=["image"], type="filepath",
                                     elem_id="style", height=110)
                c.style_mask = gr.Checkbox(value=False, label="Only where brushed (Brush tab)")
                c.style_btn = gr.Button("Style transfer", elem_id="style_transfer")
            c.style_view = gr.Image(label="Style image (at the target size)", elem_id="style_hr", **img_kw)


def _restore_tab(c, st, img_kw) -> None:
    """Restoration of a degraded photo."""
    with gr.Tab("5 · Restore", id="restore"):
        with gr.Row():
            with gr.Column():
                c.deg_up = gr.File(label="Degraded HR photo (noise, JPEG artifacts)", file_types=["image"],
                                   type="filepath", elem_id="degraded")
                with gr.Row():
                    c.rs_temp = Slider(0, MAX_TEMPERATURE, value=0.8, step=0.05, label="Temperature τ", info=TEMP_INFO)
                    c.rs_seed = Number(value=0, precision=0, minimum=0, label="Seed")
                c.restore_btn = gr.Button("Restore", variant="primary", elem_id="restore_btn")
            c.restore_view = gr.ImageSlider(label="degraded input ⟷ restored", format="png",
                                            interactive=False, elem_id="restore_compare")
            c.sr_lr_view = gr.Image(label="Plain SR of its LR (for comparison)", **img_kw)


def _rescale_tab(c, st, img_kw) -> None:
    """HCFlow rescaling round trip."""
    r_default, r_sr_default = st.catalog.rescale_defaults()
    with gr.Tab("6 · Rescale", id="rescale"):
        gr.Markdown("Image **rescaling** with an HCFlow rescaling model: the flow downscales the HR "
                    "photo to its own 8-bit LR and upscales that LR back (τ = 0). PSNRs compare it "
                    "with the bicubic route: the flow LR vs the MATLAB-bicubic LR, the "
                    "reconstruction vs the photo, and the bicubic LR super-resolved by an SR model "
                    "(τ = 0) vs the photo. Sides are cropped to a multiple of the scale."
                    + ("" if r_default else "\n\n**No rescaling model is loaded** (add "
                       "`assets/hcflow_rescaling_4x.safetensors` or pass `--model`)."),
                    elem_id="rescale_info")
        with gr.Row():
            with gr.Column():
                c.rsc_up = gr.File(label="HR photo", file_types=["image"], type="filepath",
                                   elem_id="rescale_upload")
                c.rsc_model = gr.Dropdown(choices=st.catalog.choices(kind="rescaling"), value=r_default,
                                          label="Rescaling model", elem_id="rescale_model")
                c.rsc_sr = gr.Dropdown(choices=st.catalog.choices(kind="sr"), value=r_sr_default,
                                       label="SR model for the bicubic comparison", elem_id="rescale_sr")
                c.rsc_btn = gr.Button("Rescale", variant="primary", elem_id="rescale_btn")
                c.rsc_file = gr.File(label="Flow LR (PNG)", interactive=False, height=60,
                                     elem_id="rescale_lr_file")
            with gr.Column():
                c.rsc_lr = gr.Image(label="Flow LR (8-bit)", elem_id="rescale_lr", **img_kw)
                c.rsc_metrics = gr.JSON(label="Metrics", elem_id="rescale_metrics")
        with gr.Row():
            c.rsc_rec = gr.Image(label="Reconstruction (flow LR → flow upscale, τ = 0)",
                                 elem_id="rescale_rec", **img_kw)
            c.rsc_srb = gr.Image(label="Bicubic LR → SR model (τ = 0)", elem_id="rescale_sr_img", **img_kw)


def _compare_tab(c, st, img_kw) -> None:
    """Two models side by side."""
    c_a, c_b = st.catalog.compare_defaults()
    with gr.Tab("7 · Compare", id="compare_tab"):
        gr.Markdown("Side by side: one sample of each model for the loaded LR, with the same seed "
                    "and temperature (each model draws its own latents from the seed).")
        with gr.Row():
            c.cmp_a = gr.Dropdown(choices=st.catalog.choices(), value=c_a, label="Model A", elem_id="compare_a")
            c.cmp_b = gr.Dropdown(choices=st.catalog.choices(), value=c_b, label="Model B", elem_id="compare_b")
            c.cmp_temp = Slider(0, MAX_TEMPERATURE, value=0.8, step=0.05, label="Temperature τ", info=TEMP_INFO,
                                   elem_id="compare_temperature")
            c.cmp_seed = Number(value=0, precision=0, minimum=0, label="Seed", elem_id="compare_seed")
        c.cmp_btn = gr.Button("Compare", variant="primary", elem_id="compare_btn")
        with gr.Row():
            c.cmp_img_a = gr.Image(label="A", elem_id="compare_img_a", **img_kw)
            c.cmp_img_b = gr.Image(label="B", elem_id="compare_img_b", **img_kw)
        c.cmp_status = gr.Textbox(label="Comparison", lines=3, interactive=False, elem_id="compare_status")




def _wire(c, st, tab) -> None:
    """The events: every handler with its inputs, outputs and API name (the API of docs/API.md)."""
    view_out = [getattr(c, n) for n in VIEW_NAMES]      # every view, from the session (views.py)

    def then_views(dep):
        """After a successful action: every view from the session (private, unqueued).  Every
        event that outputs the tab's state goes through here (tests/test_app_views.py checks)."""
        return dep.success(st.views, [tab, c.editor, c.use_gt], view_out, api_visibility="private",
                           queue=False, show_progress="hidden")

    loaded = [tab, c.lr_view, c.current, c.status]
    edited = [tab, c.current, c.status]
    then_views(c.load_btn.click(st.load_image, [tab, c.upload, c.downscale, c.model_dd], loaded,
                                api_name="load_image"))
    then_views(c.ex_gallery.select(st.select_sample, None, c.ex_index, api_visibility="private", queue=False)
               .success(st.load_example, [tab, c.ex_index, c.downscale, c.model_dd], loaded,
                        api_name="load_example"))
    then_views(c.model_dd.input(st.set_model, [tab, c.model_dd], loaded, api_name="set_model"))

    c.dice.click(None, None, c.seed, js="() => Math.floor(Math.random() * 2147483647)",
                 api_visibility="private")
    then_views(c.gen_btn.click(st.generate, [tab, c.temp, c.seed, c.n_samples],
                               [tab, c.gallery, c.current, c.status], api_name="generate"))
    then_views(c.proj.release(st.set_lr_projection, [tab, c.proj], [tab, c.status], api_name="set_lr_projection"))
    then_views(c.gallery.select(st.select_sample, None, c.take_k, api_visibility="private", queue=False)
               .success(st.pick, [tab, c.take_k], edited, api_name="pick"))
    c.use_gt.input(st.views, [tab, c.editor, c.use_gt], view_out, api_visibility="private", queue=False,
                   show_progress="hidden")

    then_views(c.resample_btn.click(st.resample_region, [tab, c.editor, c.r_temp, c.r_seed, c.dilation],
                                    [tab, c.current, c.status, c.r_seed], api_name="resample_region"))
    then_views(c.take_btn.click(st.take_region, [tab, c.editor, c.take_k, c.dilation], edited,
                                api_name="take_region"))
    then_views(c.norm_btn.click(st.normalize, [tab, c.n_mode, c.n_temp, c.n_seed, c.n_mask, c.editor], edited,
                                api_name="normalize"))

    then_views(c.harm_btn.click(st.transfer, [tab, c.src_up, c.by0, c.bx0, c.by1, c.bx1, c.dy, c.dx, c.dh, c.dw,
                                              c.t_mode, c.t_temp, c.t_seed],
                                [tab, c.raw_view, c.harm_view, c.status], api_name="transfer"))
    then_views(c.use_hr_btn.click(st.use_hr, [tab], edited, api_name="use_hr"))
    c.src_up.change(st.preview_source, [c.src_up], [c.src_view], api_visibility="private", show_progress="hidden")
    then_views(c.style_btn.click(st.style_transfer, [tab, c.style_up, c.style_mask, c.editor],
                                 [tab, c.style_view, c.current, c.status], api_name="style_transfer"))
    then_views(c.restore_btn.click(st.restore, [tab, c.deg_up, c.rs_temp, c.rs_seed, c.model_dd],
                                   [tab, c.restore_view, c.sr_lr_view, c.status], api_name="restore"))

    c.rsc_btn.click(st.rescale, [c.rsc_up, c.rsc_model, c.rsc_sr],
                    [c.rsc_lr, c.rsc_rec, c.rsc_srb, c.rsc_file, c.rsc_metrics, c.status], api_name="rescale")
    c.cmp_btn.click(st.compare, [tab, c.cmp_a, c.cmp_b, c.cmp_temp, c.cmp_seed],
                    [c.cmp_img_a, c.cmp_img_b, c.cmp_status], api_name="compare")

    then_views(c.undo_btn.click(st.undo, [tab], edited, api_name="undo"))
    then_views(c.redo_btn.click(st.redo, [tab], edited, api_name="redo"))
    for btn, fn, name in ((c.png_btn, st.download_png, "download_png"),
                          (c.sess_btn, st.download_session, "download_session")):
        btn.click(lambda: gr.update(visible=True), None, c.dl_file, api_visibility="private", queue=False,
                  show_progress="hidden").then(fn, [tab], c.dl_file, api_name=name)
    then_views(c.session_up.upload(st.upload_session, [tab, c.session_up, c.model_dd],
                                   [tab, c.lr_view, c.current, c.model_dd, c.status], api_name="upload_session"))
    c.info_json = gr.JSON(visible=False, label="info")
    c.info_btn = gr.Button(visible=False)
    c.info_btn.click(st.info, [tab], c.info_json, api_name="info", queue=False)
