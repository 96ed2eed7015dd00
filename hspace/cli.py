"""The ``hspace`` command line: one subcommand per task, errors as one line naming the fix.

Building the parser imports no torch (``hspace --help`` is instant); each command imports what it needs.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from functools import partial
from pathlib import Path

# Commands that can continue after an interruption, and so may advise --resume.
RESUMABLE = ("discover", "train-dm")
NONE = "none"  # how a command line sets an optional setting to None (e.g. --shift-lr none)


class OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line naming the fix, exit 2 (argparse prints the whole usage block)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not valid JSON ({e.msg} at column {e.colno}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object like '{{\"image_size\": 64}}', got {text!r}")
    return value


def _int_at_least(minimum: int):
    """A whole number >= ``minimum``, as an argparse type."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, got {value}")
        return value

    return parse


_positive_int, _count = _int_at_least(1), _int_at_least(0)


def _optional(kind):
    """``kind``, or ``none`` for a setting whose value may be None."""

    def parse(text: str):
        return NONE if text.strip().lower() == NONE else kind(text)

    parse.__name__ = kind.__name__  # argparse names the type in its errors
    return parse


def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 5,10,20, got {text!r}") from None


def _float_list(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers like 0.5,1, got {text!r}") from None


def need_plots(command: str) -> None:
    """matplotlib is an extra: say how to get it before any computing."""
    from importlib.util import find_spec

    if find_spec("matplotlib") is None:
        raise ValueError(f"{command} draws plots with matplotlib: pip install 'hspace[plots]'")


def cmd_bench(args) -> int:
    from .bench import run_bench, write_results
    from .run import resolve_device

    device = resolve_device(args.device)
    if args.json is not None:
        need_plots("bench --json")
    records = run_bench(args.preset, args.M, args.batch_size, args.model, args.repeats, device, args.algorithms)
    if args.json:
        path, png = write_results(records, args.json)
        print(f"wrote {path} and {png}")
    return 0


def cmd_probe(args) -> int:
    from .artifacts import atomic_write
    from .models import load_model
    from .probe import probe_liveness
    from .run import resolve_device

    if args.json is not None and Path(args.json).is_dir():
        raise ValueError(f"--json {args.json} is a folder: give a file path, e.g. probe.json")
    device = resolve_device(args.device)
    model = load_model(args.model, args.model_flags).to(device)
    report = probe_liveness(
        model,
        M=args.M,
        t_stop=args.t_stop,
        batch=args.batch_size,
        sizes=args.sizes,
        skips=not args.quick,
        seed=args.seed,
    )
    print(
        f"gain = top singular value of d eps / d feature x |feature| / |eps| (mean over {args.batch_size} samples); "
        "x0 gain: the same for the predicted x0"
    )
    print(report.table())
    for name, table in (("random", report.delta_x0_random), ("top singular", report.delta_x0_top)):
        cells = ", ".join(f"{size} x |h|: {d:.4f}" for size, d in table.items())
        print(f"mean |delta x0| for {name} h directions, t >= {report.t_stop}: {cells}")
    for name, table in (("random", report.even_share_random), ("top singular", report.even_share_top)):
        cells = ", ".join(f"{size} x |h|: {share:.3f}" for size, share in table.items())
        print(f"even share of those changes for {name} h directions (the part -shift makes too; 0: linear): {cells}")
    print(report.verdict)
    if args.json:
        text = json.dumps(report.to_dict(), indent=2)
        atomic_write(args.json, lambda tmp: Path(tmp).write_text(text))
        print(f"wrote {args.json}")
    return 0


def cmd_train_dm(args) -> int:
    from . import presets
    from .data import load_dataset
    from .run import resolve_device
    from .train_dm import DMTrainConfig, DMTrainer, check_out

    if args.preset not in presets.DM_PRESETS:
        raise ValueError(f"unknown model preset {args.preset!r}: choose one of {', '.join(presets.DM_PRESETS)}")
    flags = presets.DM_PRESETS[args.preset]
    device = resolve_device(args.device)
    check_out(Path(args.out), args.resume)
    images, _ = load_dataset(args.data, flags["image_size"], flags["in_channels"], split="train")
    cfg = DMTrainConfig(
        flags=flags,
        batch_size=args.batch_size,
        lr=args.lr,
        train_steps=args.train_steps,
        sample_every=args.sample_every,
        checkpoint_every=args.checkpoint_every,
        seed=args.seed,
    )
    path = DMTrainer(cfg, args.out, device).train(images, resume=args.resume)
    print(f"EMA weights: {path}  (hspace.load_model({str(path)!r}))")
    return 0


def discover_settings(args) -> tuple[str, object, Path]:
    """The model, ``DiscoveryConfig`` and run folder a ``discover`` command line asks for."""
    from .config import RECIPES, DiscoveryConfig
    from .presets import run_preset

    out = Path(args.out or f"runs/{args.preset}")
    if args.resume and (out / "config.json").exists():  # continue with the run's own settings and model
        saved = json.loads((out / "config.json").read_text())
        dm, cfg = saved["model"]["source"], DiscoveryConfig.from_saved(saved["config"])
    else:
        dm, cfg = run_preset(args.preset)
        if args.recipe is not None:
            cfg = cfg.replace(**RECIPES[args.recipe])
    given = {f.name: getattr(args, f.name) for f in fields(DiscoveryConfig) if getattr(args, f.name) is not None}
    cfg = cfg.replace(**{name: None if value == NONE else value for name, value in given.items()})
    return args.model or dm, cfg, out


def discover_argv(model_source: str, cfg, out: str) -> list[str]:
    """A ``hspace discover`` command that trains ``cfg``: the nearest preset, then only the settings that differ."""
    from .config import DiscoveryConfig
    from .presets import RUN_PRESETS

    def differing(preset_cfg) -> list[str]:
        return [f.name for f in fields(DiscoveryConfig) if getattr(cfg, f.name) != getattr(preset_cfg, f.name)]

    default = build_parser().parse_args(["discover"]).preset
    preset = min(RUN_PRESETS, key=lambda name: (len(differing(RUN_PRESETS[name][1])), name != default))
    dm, preset_cfg = RUN_PRESETS[preset]
    argv = ["hspace", "discover", "--preset", preset]
    if str(model_source) != dm:
        argv += ["--model", str(model_source)]
    argv += ["--out", str(out)]
    for name in differing(preset_cfg):
        flag, value = "--" + name.replace("_", "-"), getattr(cfg, name)
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + name.replace("_", "-"))
        else:
            argv.append(f"{flag}={NONE if value is None else value}")
    return argv


def cmd_discover(args) -> int:
    from .discover import discover
    from .run import resolve_device

    model, cfg, out = discover_settings(args)
    device = resolve_device(args.device)
    folder = discover(
        model,
        cfg,
        out,
        flags=args.model_flags,
        resume=args.resume,
        grid_every=args.grid_every,
        checkpoint_every=args.checkpoint_every,
        rca_every=args.rca_every,
        rca_pairs=args.rca_pairs,
        device=device,
    )
    print(f"run folder: {folder}  (look at it: hspace show {folder})")
    return 0


def cmd_polish(args) -> int:
    from .polish import PolishConfig, polish
    from .run import resolve_device

    pcfg = PolishConfig(
        steps=args.steps,
        lr=args.lr,
        batch_size=args.batch_size,
        warmdown=args.warmdown,
        rca_every=args.rca_every,
        rca_pairs=args.rca_pairs,
        seed=args.seed,
    )
    pcfg.check()
    device = resolve_device(args.device)
    figures = polish(args.run, args.out, pcfg, device=device)
    print(
        f"held-out RCA {figures['rca_heldout_before']:.3f} -> {figures['rca_heldout_after']:.3f} on "
        f"{figures['rca_pairs']} fixed pairs; run folder: {args.out}  (score it: hspace evaluate {args.out})"
    )
    return 0


def cmd_show(args) -> int:
    from .run import resolve_device
    from .show import show

    device = resolve_device(args.device)
    out = show(
        args.run, args.out, args.directions, args.seeds, args.magnitudes, gif=args.gif, device=device, scale=args.scale
    )
    print(f"open {out / 'index.html'}  (grids: {out}/direction-*.png, overview: {out / 'overview.png'})")
    return 0


def cmd_edit(args) -> int:
    from .edit import edit_command
    from .run import resolve_device

    device = resolve_device(args.device)
    out, report = edit_command(
        args.run,
        args.image,
        args.edit,
        args.sweep,
        args.out,
        args.inversion_steps,
        global_directions=args.global_directions,
        device=device,
        t_stop=args.t_stop,
        scale_to_chain=not args.per_step_shifts,
    )
    err = report["reconstruction_error"]
    if err is None:
        print(f"generated {args.image} with {args.inversion_steps} DDIM steps (no inversion)")
    else:
        errors = f"MAE {err['mae']:.4f}, MSE {err['mse']:.5f}, PSNR {err['psnr_db']:.1f} dB"
        print(f"inversion ({args.inversion_steps} DDIM steps) reconstruction error: {errors}")
    print(f"wrote {', '.join(report['files'])} and report.json in {out}")
    return 0


def cmd_label(args) -> int:
    from .run import load_run, write_label

    run = load_run(args.run)
    path = write_label(run.folder, args.k, args.name, run.config.K)
    print(f"direction {args.k} is now {args.name!r} ({path})")
    return 0


def cmd_export(args) -> int:
    from .export import export_directions
    from .run import check_run_folder, load_run, resolve_device

    device = resolve_device(args.device)
    check_run_folder(args.run)
    if args.out is not None and Path(args.out).is_dir():
        raise ValueError(f"--out {args.out} is a folder: give a file path, e.g. directions.safetensors")
    run = load_run(args.run, device=device)
    default = (
        Path(f"global-directions-{run.name}.safetensors")
        if run.shipped
        else run.folder / "global_directions.safetensors"
    )
    path = export_directions(run, args.out or default, args.num_samples, args.seed)
    print(f"wrote {path}: per-timestep mean shifts and their time-invariant mean for K={run.config.K} directions")
    return 0


def cmd_mos(args) -> int:
    from .mos import build_mos_page, format_scores, score_marks

    if args.score:
        print(format_scores(score_marks(args.score)))
        return 0
    if not args.run:
        raise ValueError(
            "give a run to build the study page (hspace mos RUN), or --score MARKS.json ... to score marks"
        )
    from .mos import page_path
    from .run import check_run_folder, load_run, parse_indices, resolve_device, shipped_run_folder

    device = resolve_device(args.device)
    directions = parse_indices(args.directions) if args.directions else None
    folder = check_run_folder(args.run)
    out = args.out or (f"mos-{args.run}" if shipped_run_folder(args.run) else folder)
    page_path(out)  # refuses a file where the folder should be, before anything is sampled
    run = load_run(args.run, device=device)
    path = build_mos_page(run, out, directions=directions)
    print(f"open {path} in a browser, mark each direction, press 'Save marks'; then: hspace mos --score mos-*.json")
    return 0


def cmd_evaluate(args) -> int:
    from .artifacts import atomic_write
    from .evaluate import check_counts, evaluate, load_feature_extractor, summary_line, to_json
    from .run import check_run_folder, load_run, resolve_device

    device = resolve_device(args.device)
    need_plots("evaluate")
    check_counts(args.num_pairs, args.recalibrate_pairs)
    if args.json not in (None, "-") and Path(args.json).is_dir():
        raise ValueError(f"--json {args.json} is a folder: give a file path, e.g. eval.json")
    check_run_folder(args.run)
    if args.features is not None:
        load_feature_extractor(args.features)  # a bad MODULE:ATTR fails before the run is loaded
    if args.out is not None and Path(args.out).exists() and not Path(args.out).is_dir():
        raise ValueError(f"--out {args.out} is a file: give a folder for the report")
    run = load_run(args.run, device=device)
    out = Path(args.out or (f"eval-{run.name}" if run.shipped else run.folder / "eval"))
    r = evaluate(
        run, out, args.num_pairs, args.features, args.real, args.seed, recalibrate_pairs=args.recalibrate_pairs
    )
    to_stdout = args.json == "-"
    say = partial(print, file=sys.stderr) if to_stdout else print  # stdout holds only the JSON then
    say(summary_line(r))
    if to_stdout:
        print(to_json(r))
    elif args.json:
        text = to_json(r)
        atomic_write(args.json, lambda tmp: Path(tmp).write_text(text))
        say(f"wrote {args.json}")
    say(f"report: {out / 'report.md'}")
    return 0


def cmd_app(args) -> int:
    from .app import serve  # Gradio and torch load only here: the parser stays import-light
    from .run import resolve_device

    serve(args.run, args.host, args.port, resolve_device(args.device))
    return 0


def cmd_train_classifier(args) -> int:
    import torch

    from .classifier import CLASSIFIER_PATH, make_shipped_classifier

    out = args.out or CLASSIFIER_PATH
    if Path(out).is_dir():
        raise ValueError(f"--out {out} is a folder: give a .safetensors file")
    torch.set_num_threads(args.threads)
    r = make_shipped_classifier(out, args.train_steps, args.batch_size, args.lr, args.seed, progress=True)
    accuracy = (
        f"held-out accuracy {r['heldout_accuracy_fp32']:.4f} (fp32), {r['heldout_accuracy_fp16']:.4f} (fp16, as saved)"
    )
    print(f"{r['parameters']:,} parameters, {args.train_steps} steps in {r['seconds']:.0f}s; {accuracy} -> {r['out']}")
    return 0


def add_config_overrides(p: argparse.ArgumentParser) -> None:
    """One option per DiscoveryConfig field (--K, --t-stop, ...), typed and documented from the dataclass.

    Unset keeps the preset's value; the help shows the field's meaning and its default in ``DiscoveryConfig``.
    """
    from .config import DiscoveryConfig

    group = p.add_argument_group(
        "settings", "each overrides the preset's value (the default shown is DiscoveryConfig's)"
    )
    for f in fields(DiscoveryConfig):
        flag = f"--{f.name.replace('_', '-')}"
        default = NONE if f.default is None else f.default
        help = f"{f.metadata['doc']} (default: {default})".replace("%", "%%")
        if f.type == "bool":
            group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help)
            continue
        optional = f.type.endswith(" | None")
        kind = {"int": int, "float": float, "str": str}[f.type.removesuffix(" | None")]
        kind = _optional(kind) if optional else kind
        choices = f.metadata["choices"]
        group.add_argument(flag, dest=f.name, type=kind, default=None, choices=choices, help=help)


DEVICE_HELP = "cpu, cuda, cuda:N or auto (default: auto, which is cuda when available)"


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .config import RECIPES  # no torch: the parser stays import-light
    from .presets import DM_PRESETS, RUN_PRESETS

    description = "Discover editing directions in a diffusion model's h-space, look at them, score and edit with them."
    parser = OneLineParser(prog="hspace", description=description)
    parser.add_argument("--version", action="version", version=f"hspace {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    p = sub.add_parser("bench", help="memory, throughput and gradient agreement of the training algorithms")
    p.add_argument("--preset", default="tiny", choices=list(RUN_PRESETS), help="discovery preset (default: tiny)")
    p.add_argument("--model", default=None, help="model to train on (default: the preset's architecture, untrained)")
    p.add_argument(
        "--M", type=_int_list, default=[5, 10, 20, 40], help="chain lengths M to measure (default: 5,10,20,40)"
    )
    p.add_argument("--steps", dest="M", type=_int_list, help=argparse.SUPPRESS)  # the name before --M
    p.add_argument("--batch-size", type=_positive_int, default=None, help="default: the preset's")
    p.add_argument("--repeats", type=_positive_int, default=2, help="timed training steps per case (default: 2)")
    p.add_argument(
        "--algorithms",
        type=lambda s: s.split(","),
        default=None,
        help="default: vanilla,checkpointed,optimised (also: optimised-compiled)",
    )
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--json", default=None, metavar="PATH", help="write records to PATH and a plot beside it")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("discover", help="discover K directions in a model's h-space")
    p.add_argument(
        "--model",
        default=None,
        help="'default', a model preset, a .safetensors/.pt file or a diffusers folder (default: the preset's)",
    )
    p.add_argument(
        "--model-flags",
        type=_json_object,
        default=None,
        help="JSON of guided-diffusion flags, for a .pt checkpoint only",
    )
    p.add_argument(
        "--preset", default="mnist-demo", choices=list(RUN_PRESETS), help="discovery preset (default: mnist-demo)"
    )
    p.add_argument("--out", default=None, help="run folder (default: runs/<preset>)")
    p.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its last checkpoint, with its settings"
    )
    p.add_argument("--grid-every", type=_count, default=200, help="write a direction grid every N steps (0: never)")
    p.add_argument("--checkpoint-every", type=_positive_int, default=25, help="checkpoint every N steps (default: 25)")
    p.add_argument(
        "--recipe",
        choices=list(RECIPES),
        default=None,
        help="hspace's recipe (the default) or the paper's (one lr, lambda1 = lambda2 = 0.1, no minimum shift) "
        "over the preset; single settings below override it",
    )
    p.add_argument(
        "--rca-every", type=_count, default=50, help="held-out RCA on fixed pairs every N steps (0: never; default 50)"
    )
    p.add_argument(
        "--rca-pairs",
        type=_positive_int,
        help="held-out pairs for that RCA (default 256; with --resume, the run's own)",
    )
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    add_config_overrides(p)
    p.set_defaults(func=cmd_discover)

    p = sub.add_parser("show", help="grids, an overview and a web page of a run's directions")
    p.add_argument("run", help="a run folder made by `hspace discover`, or a shipped run's name (e.g. default)")
    p.add_argument("--out", default=None, help="output folder (default: <run>/show; ./show-<name> for a shipped run)")
    p.add_argument("--directions", default=None, help="e.g. 0,3,5 or 0-7 or 0-3,8 (default: all K)")
    p.add_argument("--seeds", default="0-7", help="one grid row per seed, e.g. 0-7 or 0,3,5 (default: 0-7)")
    p.add_argument(
        "--magnitudes",
        default="9",
        help="a count of columns from -S to S (default 9), or values: --magnitudes=-5,-2.5,0,2.5,5",
    )
    p.add_argument("--gif", action="store_true", help="also an animated GIF per direction, s from -S to S and back")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--scale", type=int, default=None, help="enlarge images N times (default: cells of at least 64 px)")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("edit", help="edit real images: DDIM inversion, then the run's directions")
    p.add_argument("run", help="a run folder or shipped run name")
    p.add_argument(
        "--image",
        required=True,
        help="an image file, a folder of images, mnist:INDEX (held-out digits) or seed:N (a generated sample, x_T from seed N)",
    )
    p.add_argument(
        "--edit",
        action="append",
        default=[],
        metavar="K:S",
        help="direction (index or label) and magnitude; repeat to combine",
    )
    p.add_argument(
        "--sweep", action="append", default=[], metavar="K", help="a row of s from -S to S for this direction"
    )
    p.add_argument(
        "--inversion-steps",
        type=int,
        default=100,
        help="DDIM steps for inversion and editing; for seed:N, of the sampling chain (default and paper: 100)",
    )
    p.add_argument("--t-stop", type=int, default=None, help="shift while t >= T (default: the run's t_stop)")
    p.add_argument(
        "--per-step-shifts",
        action="store_true",
        help="apply each S as given on every step; by default a step applies S * M / --inversion-steps (M: the "
        "run's chain), so an edit looks as it does on the run's own chain",
    )
    p.add_argument("--steps", dest="inversion_steps", type=int, help=argparse.SUPPRESS)  # the name before
    p.add_argument(
        "--global-directions",
        default=None,
        metavar="PATH",
        help="use exported directions (hspace export) instead of the shift block",
    )
    p.add_argument("--out", default=None, help="output folder (default: edits/<image name>)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.set_defaults(func=cmd_edit)

    p = sub.add_parser("polish", help="train a run's reconstructor on with its directions fixed: RCA of what was found")
    p.add_argument("run", help="a run folder or shipped run name (left unchanged)")
    p.add_argument("--out", required=True, help="a new run folder: the run with the polished reconstructor")
    p.add_argument("--steps", type=_positive_int, default=300, help="steps, each on fresh pairs (default: 300)")
    p.add_argument("--lr", type=float, default=3e-4, help="Adam learning rate, falling to 0 (default: 3e-4)")
    p.add_argument("--batch-size", type=_int_at_least(2), default=64, help="pairs a step (default: 64)")
    p.add_argument(
        "--warmdown", type=float, default=1.0, help="share of the steps over which the rate falls to 0 (default: 1)"
    )
    p.add_argument("--rca-every", type=_count, default=50, help="held-out RCA every N steps (0: at the end only)")
    p.add_argument("--rca-pairs", type=_positive_int, default=512, help="fixed held-out pairs (default: 512)")
    p.add_argument("--seed", type=int, default=0, help="seed of the training pairs (default: 0)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.set_defaults(func=cmd_polish)

    p = sub.add_parser("label", help="name a direction, so that --edit NAME:S works")
    p.add_argument("run", help="a run folder (labels are written to its labels.json)")
    p.add_argument("k", type=int, help="the direction's index, 0..K-1")
    p.add_argument("name", help="a word such as thickness (not a number, no ':')")
    p.set_defaults(func=cmd_label)

    p = sub.add_parser("export", help="write time-invariant global directions usable without the shift block")
    p.add_argument("run", help="a run folder or shipped run name")
    p.add_argument(
        "--out",
        default=None,
        help="a .safetensors file (default: <run>/global_directions.safetensors; "
        "./global-directions-<name>.safetensors for a shipped run)",
    )
    p.add_argument("--num-samples", type=_positive_int, default=20, help="samples averaged per direction (paper: 20)")
    p.add_argument("--seed", type=int, default=0, help="seed of those samples (default: 0)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("mos", help="the paper's MOS study: a page to mark directions, and scoring of the marks")
    p.add_argument("run", nargs="?", help="a run folder or shipped run name")
    p.add_argument(
        "--out", default=None, help="folder for mos.html (default: the run folder; ./mos-<name> for a shipped run)"
    )
    p.add_argument("--directions", default=None, help="e.g. 0-15 (default: all)")
    p.add_argument(
        "--score",
        nargs="+",
        metavar="MARKS",
        help="marks files saved from the page: print MOS per direction and overall",
    )
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.set_defaults(func=cmd_mos)

    p = sub.add_parser("evaluate", help="RCA, FID, L_G, h-space properties and a ranking of the directions")
    p.add_argument("run", help="a run folder or shipped run name")
    p.add_argument("--num-pairs", type=int, default=5000, help="(x_T, k, s) draws for RCA and FID (paper: 5000)")
    p.add_argument(
        "--recalibrate-pairs",
        type=int,
        default=1000,
        help="also the RCA with the reconstructor's BatchNorm statistics recalibrated on N fresh pairs (0: not)",
    )
    p.add_argument(
        "--features",
        default=None,
        metavar="MODULE:ATTR",
        help="FID feature extractor (default: the shipped MNIST classifier)",
    )
    p.add_argument(
        "--real", default="mnist", help="real images for FID: 'mnist' (held-out split), an image folder, IDX or .npz"
    )
    p.add_argument("--out", default=None, help="report folder (default: <run>/eval; ./eval-<name> for a shipped run)")
    p.add_argument(
        "--json",
        nargs="?",
        const="-",
        default=None,
        metavar="PATH",
        help="also write the figures as JSON to PATH (no PATH or -: to standard output, the rest to standard error)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the pairs (default: 0)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("probe", help="how strongly a model's decoder reads h: run it before any discovery")
    p.add_argument("model", help="'default', a model preset, a .safetensors/.pt file or a diffusers folder")
    p.add_argument(
        "--model-flags",
        type=_json_object,
        default=None,
        help="JSON of guided-diffusion flags, for a .pt checkpoint only",
    )
    p.add_argument("--M", type=_positive_int, default=10, help="DDIM steps of the probed chain (default 10)")
    p.add_argument("--t-stop", type=int, default=400, help="shifts apply for t >= t_stop (default 400)")
    p.add_argument("--batch-size", type=_positive_int, default=8, help="samples probed (default 8)")
    p.add_argument(
        "--sizes", type=_float_list, default=[0.25, 0.5, 1.0], help="shift sizes relative to |h| (default 0.25,0.5,1)"
    )
    p.add_argument("--quick", action="store_true", help="leave out the skips' gains (the slowest part)")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the figures as JSON")
    p.add_argument("--seed", type=int, default=0, help="seed of the probed samples (default: 0)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.set_defaults(func=cmd_probe)

    p = sub.add_parser("train-dm", help="train a diffusion model (ADM UNet) on a dataset")
    p.add_argument(
        "--preset",
        default="MNIST32-live",
        choices=list(DM_PRESETS),
        help="model architecture preset (default: MNIST32-live)",
    )
    p.add_argument("--data", default="mnist", help="'mnist' (shipped), an IDX folder, an .npz or an image folder")
    p.add_argument("--out", required=True, help="run folder: checkpoints, sample grids, ema.safetensors")
    p.add_argument("--train-steps", type=_count, default=20000, help="training steps (default: 20000)")
    p.add_argument("--steps", dest="train_steps", type=_count, help=argparse.SUPPRESS)  # the name before
    p.add_argument("--batch-size", type=_positive_int, default=64, help="default: 64")
    p.add_argument("--lr", type=float, default=5e-4, help="Adam learning rate (default: 5e-4)")
    p.add_argument("--sample-every", type=_count, default=1000, help="a grid of samples every N steps (0: never)")
    p.add_argument(
        "--checkpoint-every", type=_positive_int, default=250, help="checkpoint every N steps (default: 250)"
    )
    p.add_argument("--seed", type=int, default=0, help="default: 0")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--resume", action="store_true", help="continue the training in --out from its last checkpoint")
    p.set_defaults(func=cmd_train_dm)

    p = sub.add_parser("train-classifier", help="train the MNIST digit classifier that evaluate uses for FID")
    p.add_argument("--out", default=None, help="a .safetensors file (default: the shipped classifier's path)")
    p.add_argument("--train-steps", type=_positive_int, default=1000, help="training steps (default: 1000, as shipped)")
    p.add_argument("--batch-size", type=_positive_int, default=128, help="default: 128, as shipped")
    p.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate (default: 3e-3, as shipped)")
    p.add_argument("--seed", type=int, default=0, help="default: 0, as shipped")
    p.add_argument(
        "--threads", type=_positive_int, default=1, help="CPU threads (default 1: the shipped file was made with one)"
    )
    p.set_defaults(func=cmd_train_classifier)

    p = sub.add_parser(
        "app", help="edit with a run's directions live in the browser (needs: pip install 'hspace[app]')"
    )
    p.add_argument("run", help="a run folder or shipped run name (e.g. default)")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=None, help="port (default: the first free one from 7860)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.set_defaults(func=cmd_app)
    return parser


def error_line(e: Exception) -> str:
    """An exception as one line; for a file the command was pointed at (missing, a folder, not writable,
    disk full), what went wrong and which file."""
    if isinstance(e, OSError) and e.filename:
        return f"{e.strerror or type(e).__name__}: {e.filename}"
    return " ".join(str(e).split())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError) as e:
        print(f"hspace {args.command}: error: {error_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        advice = "; continue with --resume" if args.command in RESUMABLE else ""
        print(f"hspace {args.command}: interrupted: files written so far are whole{advice}", file=sys.stderr)
        return 130
