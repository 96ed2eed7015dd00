"""``hspace app``: edit with a run's directions live in the browser (Gradio glue around ``app_state.Editor``).

Gradio is an optional extra (``pip install 'hspace[app]'``), imported only here and only when the app
starts. Uploads and every file the page is served land in one temporary folder (Gradio's upload and
cache folder points there), removed when the app stops; the page names no other path.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import signal
import tempfile
from pathlib import Path

from .app_state import MAX_UPLOAD_BYTES, SOURCE_KINDS, Editor, PageState, PageView, Source

INSTALL_HINT = "pip install 'hspace[app]'"
SOURCE_LABELS = {"seed": "generated (seed)", "digit": "shipped digit", "upload": "your image"}
CSS = "img { image-rendering: pixelated; } #edited img, #original img { min-height: 256px; }"


def require_gradio(import_it: bool = True):
    """The gradio module (or, with ``import_it=False``, only the check that it is installed); else a one-line
    error naming the extra that installs it."""
    try:
        if not import_it and importlib.util.find_spec("gradio") is not None:
            return None
        import gradio
    except (ImportError, ValueError):  # ValueError: find_spec of a module blocked in sys.modules
        raise ValueError(f"the app needs Gradio, an optional extra: {INSTALL_HINT}") from None
    return gradio


# ---------------------------------------------------------------- page values -> state


def source_from_page(kind_label: str, seed, digit, upload: str | None) -> Source:
    """The page's source widgets as a ``Source`` (labels to kinds; numbers to ints)."""
    kind = {label: kind for kind, label in SOURCE_LABELS.items()}.get(kind_label, "seed")
    name = Path(upload).name if upload else None
    return Source(kind=kind, seed=int(seed or 0), digit=int(digit or 0), path=upload, name=name)


def state_from_page(values: tuple, last_moved: int | None) -> PageState:
    """``(kind, seed, digit, upload, steps, t_stop, *sliders)`` as the page sends them."""
    kind, seed, digit, upload, steps, t_stop, *sliders = values
    source = source_from_page(kind, seed, digit, upload)
    # Magnitudes to 6 decimals: the slider's float noise (2.7000000000000002) stays out of the edit and its command.
    magnitudes = tuple(round(float(v or 0.0), 6) for v in sliders)
    return PageState(source, int(steps or 1), int(t_stop or 0), magnitudes, last_moved)


def page_view(editor: Editor, values: tuple, last_moved: int | None, with_sweep: bool = False) -> PageView:
    """What the page shows for the values it sent; values no widget would send give a message too."""
    try:
        state = state_from_page(values, last_moved)
    except (TypeError, ValueError, OverflowError) as e:
        return PageView(message=f"**Cannot edit:** {e}")
    return editor.update(state, with_sweep)


# ---------------------------------------------------------------- the page


def build_page(editor: Editor):
    """The Gradio Blocks of the app for one editor."""
    gr = require_gradio()
    run = editor.run
    T = run.model.num_train_steps
    order = (
        "ordered by `hspace evaluate`'s ranking"
        if editor.ranked
        else "in index order (no `hspace evaluate` ranking in the run)"
    )
    with gr.Blocks(title=f"hspace app: {editor.run_ref}", analytics_enabled=False) as page:
        gr.Markdown(
            f"## hspace: edit with the directions of `{editor.run_ref}`\n"
            f"K = {editor.K} directions, {order}; each slider is a magnitude s in [-{editor.S:g}, {editor.S:g}]. "
            "Several at once give h_hat = h + sum_i s_i f(h, k_i). The image updates when a slider is released."
        )
        with gr.Row():
            with gr.Column(scale=1, min_width=260):
                kind = gr.Radio(
                    [SOURCE_LABELS[k] for k in SOURCE_KINDS],
                    value=SOURCE_LABELS["seed"],
                    label="source",
                    elem_id="source-kind",
                )
                seed = gr.Number(value=0, precision=0, minimum=0, label="seed (generated sample)", elem_id="seed")
                digit = gr.Number(
                    value=0,
                    precision=0,
                    minimum=0,
                    maximum=editor.num_digits - 1,
                    label=f"shipped held-out digit (0..{editor.num_digits - 1})",
                    elem_id="digit",
                )
                upload = gr.File(
                    label="your image (inverted with DDIM)", type="filepath", file_count="single", elem_id="upload"
                )
                with gr.Accordion("advanced", open=False):
                    steps = gr.Slider(
                        1, T, value=editor.default_steps("seed"), step=1, label="DDIM steps", elem_id="steps"
                    )
                    t_stop = gr.Slider(
                        0,
                        T - 1,
                        value=run.config.t_stop,
                        step=1,
                        label="t_stop (shift while t >= t_stop)",
                        elem_id="t-stop",
                    )
                reset = gr.Button("reset sliders", elem_id="reset")
            with gr.Column(scale=2):
                with gr.Row():
                    original = gr.Image(
                        label="original", format="png", type="numpy", interactive=False, elem_id="original"
                    )
                    edited = gr.Image(label="edited", format="png", type="numpy", interactive=False, elem_id="edited")
                gr.Markdown(
                    f"**sweep** of the last moved direction alone, s from -{editor.S:g} to {editor.S:g} (drawn after the edit)"
                )
                sweep = gr.Image(show_label=False, format="png", type="numpy", interactive=False, elem_id="sweep")
                message = gr.Markdown(elem_id="message")
                download = gr.DownloadButton("download the edited image (PNG)", elem_id="download")
            with gr.Column(scale=1, min_width=260, elem_id="directions"):
                sliders = [slider(gr, editor, k) for k in editor.order]
        by_index = [sliders[editor.order.index(k)] for k in range(editor.K)]  # state wants slider values by k
        command = gr.Code(label="the same with `hspace edit`", language="shell", interactive=False, elem_id="command")
        python = gr.Code(label="the same in Python (`edited`)", language="python", interactive=False, elem_id="python")
        last_moved = gr.State(None)

        inputs = [kind, seed, digit, upload, steps, t_stop, *by_index]
        shown = [original, edited, message, command, python, download]

        def show(view: PageView) -> list:
            return [view.original, view.edited, view.message, view.command, view.python, view.download]

        def render(last, *values):
            return show(page_view(editor, values, last))

        def render_moved(k: int, *values):
            return [k, *show(page_view(editor, values, k))]

        def render_sweep(last, *values):
            if last is None:
                return None
            return page_view(editor, values, last, with_sweep=True).sweep

        def pick_kind(kind_label: str):
            return editor.default_steps(source_from_page(kind_label, 0, 0, None).kind)

        def uploaded(_path):
            return SOURCE_LABELS["upload"]

        def zero_sliders():
            return [0.0] * len(sliders) + [None, None]

        # Every event that renders queues behind the others in order (one queue), and a change made while one
        # is pending is kept, not dropped (Gradio's default drops it): the last image always shows the last state.
        queued = {"trigger_mode": "always_last", "concurrency_id": "render", "concurrency_limit": 1}
        rendered = {"fn": render, "inputs": [last_moved, *inputs], "outputs": shown, "concurrency_id": "render"}
        after = {"fn": render_sweep, "inputs": [last_moved, *inputs], "outputs": [sweep], "concurrency_id": "render"}
        for k in range(editor.K):
            moved_k = functools.partial(render_moved, k)
            by_index[k].release(moved_k, inputs=inputs, outputs=[last_moved, *shown], **queued).then(**after)
        # Numbers count when typed out (Enter or leaving the box), settings when released.
        settled = [seed.submit, seed.blur, digit.submit, digit.blur, steps.release, t_stop.release]
        gr.on(settled, **rendered, trigger_mode="always_last", concurrency_limit=1).then(**after)
        kind.input(pick_kind, inputs=[kind], outputs=[steps], **queued).then(**rendered).then(**after)
        upload.upload(uploaded, inputs=[upload], outputs=[kind], **queued).then(
            pick_kind, inputs=[kind], outputs=[steps]
        ).then(**rendered)
        reset.click(zero_sliders, outputs=[*sliders, last_moved, sweep], **queued).then(**rendered)
        page.load(render, inputs=[last_moved, *inputs], outputs=shown)
    return page


def slider(gr, editor: Editor, k: int):
    """Direction k's magnitude s in [-S, S], 100 stops."""
    return gr.Slider(
        -editor.S, editor.S, value=0.0, step=editor.S / 50, label=editor.slider_label(k), elem_id=f"slider-{k}"
    )


# ---------------------------------------------------------------- serving


def serve(run_ref: str, host: str = "127.0.0.1", port: int | None = None, device: str = "cpu") -> None:
    """Serve the app until Ctrl-C or SIGTERM; prints its address first. Everything is checked before the run loads."""
    require_gradio(import_it=False)  # imported below, once GRADIO_TEMP_DIR points at our folder
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"--port {port}: choose a port from 1 to 65535")
    from .run import check_run_folder, load_run

    check_run_folder(run_ref)
    temp_dir = Path(tempfile.mkdtemp(prefix="hspace-app-"))
    # Gradio keeps uploads and the files it serves under GRADIO_TEMP_DIR: one folder, ours, removed at exit.
    os.environ["GRADIO_TEMP_DIR"] = str(temp_dir / "gradio")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    signal.signal(signal.SIGTERM, _interrupt)  # a polite stop cleans up as Ctrl-C does
    try:
        gr = require_gradio()
        editor = Editor(load_run(run_ref, device=device), temp_dir, run_ref)
        page = build_page(editor)
        try:
            _, url, _ = page.launch(
                server_name=host,
                server_port=port,
                prevent_thread_lock=True,
                quiet=True,
                share=False,
                max_file_size=MAX_UPLOAD_BYTES,
                theme=gr.themes.Default(),
                css=CSS,
            )
        except OSError:
            raise ValueError(
                f"cannot serve on {host}:{port} (taken, or not this machine's address): choose another --port or --host"
            ) from None
        print(f"hspace app: {url}  (run {editor.run_ref}; Ctrl-C stops it)", flush=True)
        page.block_thread()  # returns after closing the server on Ctrl-C
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)


def _interrupt(_signum, _frame) -> None:
    raise KeyboardInterrupt
