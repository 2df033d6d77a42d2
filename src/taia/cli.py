"""The `taia` command: parse, validate into the command's config, call one library function.

    taia apply --base B (--adapter A | --finetuned F) --out O [--spec taia] [--format adapter|merged]
    taia apply CONFIG.yaml [key=value ...]
    taia inspect (--model M | --base B --adapter A | --base B --finetuned F) [--json]
    taia inspect --base B (--adapter A | --finetuned F) --hidden-states --tasks T1,T2 [--limit N] [--out O]
    taia train [CONFIG.yaml] [--model M] [--data FILE ...] [--method lora|full|toa|tof|molora] --out O
    taia eval [CONFIG.yaml] [--model M] [--adapter A | --finetuned F] --tasks T1,T2 [--variants ...] --out O
    taia search --base B (--adapter A | --finetuned F) --dev-task T --test-tasks T1,T2 --out O
    taia run EXPERIMENT.yaml [key=value ...]
    taia report RUN_DIR [--no-html]

Flags and `key=value` overrides may come in any order. User errors — bad flags, bad configs, bad inputs,
and file-system errors such as a full disk — print one line (`taia: error: …`) and exit 2. Exercised by
tests/test_cli.py and tests/test_refusals.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from taia.errors import TaiaError


class _Parser(argparse.ArgumentParser):
    """argparse's own errors as the one line every other error is (sub-commands inherit the class)."""

    def error(self, message: str) -> NoReturn:
        verb = self.prog.removeprefix("taia").strip()
        self.exit(2, f"taia: error: {verb + ': ' if verb else ''}{message}\n")


def _limit(text: str) -> int | dict[str, Any]:
    """`--limit 300`, or a limit per task as a YAML mapping (`--limit '{persona: 100, csqa: 300}'`)."""
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = None
    if isinstance(value, (int, dict)) and not isinstance(value, bool):
        return value
    raise argparse.ArgumentTypeError(f"expected N or {{task: N, ...}}, got {text!r}")


_DATA_DIR_HELP = "root of local data files (default: $TAIA_DATA_DIR, else ../shared/data when it exists)"


def _split_positionals(items: list[str]) -> tuple[str | None, list[str]]:
    """Positionals are an optional config file followed by key=value overrides."""
    files = [x for x in items if "=" not in x]
    if len(files) > 1:
        raise TaiaError(f"expected at most one config file, got {files}")
    return (files[0] if files else None), [x for x in items if "=" in x]


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("args", nargs="*", metavar="[CONFIG.yaml] [key=value]", help="config file and overrides")
    p.add_argument("--allow-pickle", action="store_true", help="load .bin weights (with weights_only=True)")
    p.add_argument("--trust-remote-code", action="store_true")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="taia", description="Train all, infer with the fine-tuned attention.")
    sub = parser.add_subparsers(dest="command", required=True)
    _apply_parser(sub)
    ip = sub.add_parser("inspect", help="parameter counts and update norms per group and layer")
    ip.add_argument("--model")
    ip.add_argument("--base")
    ip.add_argument("--adapter")
    ip.add_argument("--finetuned")
    ip.add_argument("--json", dest="json_output", action="store_true", help="print JSON instead of a table")
    _hidden_args(ip)
    _common(ip)
    _train_parser(sub)
    _eval_parser(sub)
    _search_parser(sub)
    xp = sub.add_parser(
        "run", help="a whole experiment: train → variants → eval → report (cached, resumable)"
    )
    xp.add_argument(
        "args", nargs="*", metavar="EXPERIMENT.yaml [key=value]", help="experiment file and overrides"
    )
    qp = sub.add_parser(
        "quickstart",
        help="the method made visible on SmolLM2-135M in ~6 min on 2 CPU cores: identity-shift LoRA, then "
        "base/vanilla/TAIA/TAIF on persona adoption and CommonsenseQA",
    )
    qp.add_argument(
        "args", nargs="*", metavar="key=value", help="overrides of the packaged quickstart experiment"
    )
    for p in (xp, qp):
        p.add_argument("--data-dir", help=_DATA_DIR_HELP + " (training and test data)")
    rp = sub.add_parser("report", help="(re-)render a run's report: Markdown, CSV/JSON, HTML, plots")
    rp.add_argument("run_dir", help="a run dir (RUN/eval/results.json) or a `taia eval --out` dir")
    rp.add_argument("--no-html", action="store_true", help="skip report.html")
    return parser


def _apply_parser(sub: Any) -> None:
    ap = sub.add_parser("apply", help="build a TAIA adapter or checkpoint from base + fine-tune")
    ap.add_argument("--base", help="base model dir or hub id")
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--adapter", help="PEFT LoRA adapter dir")
    src.add_argument("--finetuned", help="fully fine-tuned checkpoint dir")
    ap.add_argument("--out", help="output dir (written atomically)")
    ap.add_argument("--spec", help="preset (taia, taia-ref, taif, vanilla, base) or a YAML file")
    ap.add_argument("--format", choices=["adapter", "merged"], help="output for adapters (default: adapter)")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing output dir")
    ap.add_argument("--max-shard-size", help="merged output shard size, e.g. 5GB")
    ap.add_argument(
        "--skip-finite-check", action="store_true",
        help="full checkpoints: do not scan the written tensors for NaN/Inf (inputs you trust)",
    )  # fmt: skip
    _common(ap)


def _hidden_args(ip: argparse.ArgumentParser) -> None:
    ip.add_argument(
        "--hidden-states", action="store_true",
        help="per-layer cosine to base and rank ratio after attention, per variant, on task prompts",
    )  # fmt: skip
    ip.add_argument("--tasks", help="comma-separated tasks whose prompts are the inputs")
    ip.add_argument("--limit", type=int, help="a seeded subset of at most N prompts per task")
    ip.add_argument("--variants", help="comma-separated presets or spec files (default vanilla,taia,taif)")
    ip.add_argument("--protocol", choices=["paper", "standard"], help="prompt protocol (default standard)")
    ip.add_argument("--batch-size", type=int)
    ip.add_argument("--data-dir", help=_DATA_DIR_HELP)
    ip.add_argument("--out", help="dir for hidden_states.json / .csv and plots (created; other files kept)")


def _model_args(p: argparse.ArgumentParser, flag: str) -> None:
    """The base model and at most one fine-tune of it (eval and search take the same)."""
    p.add_argument(flag, help="base model: named, local dir or hub id")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--adapter", help="PEFT LoRA (or MoLoRA) adapter dir")
    src.add_argument("--finetuned", help="fully fine-tuned checkpoint dir")


def _eval_parser(sub: Any) -> None:
    ep = sub.add_parser("eval", help="evaluate variants (base, vanilla, taia, taif, specs) on tasks")
    _model_args(ep, "--model")
    ep.add_argument(
        "--variants", help="comma-separated presets or spec YAML files (default base,vanilla,taia)"
    )
    ep.add_argument(
        "--tasks",
        help="comma-separated task names (gsm8k, csqa, mmlu, persona, ...) or task YAML files",
    )
    ep.add_argument(
        "--limit",
        type=_limit,
        help="a seeded subset of at most N samples per task, or '{persona: 100, csqa: 300}'",
    )
    ep.add_argument("--protocol", choices=["paper", "standard"])
    ep.add_argument("--metric-mode", choices=["strict", "flexible", "lenient"])
    ep.add_argument("--backend", choices=["hf", "vllm"])
    ep.add_argument("--harness", choices=["taia", "lm-eval"])
    ep.add_argument("--batch-size", type=int)
    ep.add_argument("--data-dir", help=_DATA_DIR_HELP)
    ep.add_argument("--out", help="results dir (re-running resumes)")
    ep.add_argument("--overwrite", action="store_true", help="delete --out first")
    _common(ep)


def _search_parser(sub: Any) -> None:
    sp = sub.add_parser("search", help="pick the best spec on a dev split, test it on held-out tasks")
    _model_args(sp, "--base")
    sp.add_argument("--dev-task", help="task whose seeded subset scores the grid")
    sp.add_argument("--dev-limit", type=int, help="dev samples (default 100)")
    sp.add_argument("--test-tasks", help="comma-separated held-out tasks (the dev task's rest allowed)")
    sp.add_argument("--test-limit", type=int, help="at most N test samples per task")
    sp.add_argument("--batch-size", type=int)
    sp.add_argument("--data-dir", help=_DATA_DIR_HELP)
    sp.add_argument("--out", help="output dir (re-running resumes)")
    sp.add_argument("--overwrite", action="store_true", help="delete --out first")
    _common(sp)


def _train_parser(sub: Any) -> None:
    tp = sub.add_parser("train", help="fine-tune (LoRA, full, TOA/TOF, MoLoRA) with TRL + PEFT")
    tp.add_argument("--model", help="named model (smollm2-135m-instruct), local dir or hub id")
    tp.add_argument("--data", action="append", help="data file or hub dataset id (repeatable)")
    tp.add_argument("--data-dir", help=_DATA_DIR_HELP)
    tp.add_argument("--method", help="lora (default), full, toa, tof or molora")
    tp.add_argument("--out", help="output dir")
    tp.add_argument("--max-steps", type=int, help="stop after this many optimizer steps")
    tp.add_argument("--limit", type=int, help="use at most this many training rows")
    tp.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    tp.add_argument("--overwrite", action="store_true", help="delete --out and train from scratch")
    _common(tp)


def _flags(ns: argparse.Namespace) -> dict[str, Any]:
    return {k: v for k, v in vars(ns).items() if k not in ("command", "args")}


def _run_apply(ns: argparse.Namespace) -> None:
    from taia.apply import apply
    from taia.config import ApplyConfig, build_config

    file, overrides = _split_positionals(ns.args)
    cfg = build_config(ApplyConfig, file, _flags(ns), overrides)
    report = apply(cfg)
    print(summary_table(report))
    print(f"wrote {cfg.out}")


def summary_table(report: dict[str, Any]) -> str:
    """One line per group: tensors and parameters kept / reverted / scaled."""
    lines = [f"{'group':8} {'action':9} {'tensors':>8} {'params':>14}"]
    for group, actions in report["groups"].items():
        for action, c in actions.items():
            lines.append(f"{group:8} {action:9} {c['tensors']:>8} {c['params']:>14,}")
    if report.get("dropped_modules"):
        lines.append(f"dropped {len(report['dropped_modules'])} adapter modules (listed in taia_report.json)")
    if report.get("extrapolated"):
        lams = ", ".join(f"{k}={v:g}" for k, v in report["extrapolated"].items())
        lines.append(f"note: λ outside [0, 1] (extrapolation, recorded in taia_report.json): {lams}")
    return "\n".join(lines)


def _run_inspect(ns: argparse.Namespace) -> None:
    from taia.config import InspectConfig, build_config
    from taia.inspect import inspect, render

    file, overrides = _split_positionals(ns.args)
    cfg = build_config(InspectConfig, file, _flags(ns), overrides)
    if cfg.hidden_states:
        from taia.analysis import hidden, hidden_outputs

        result = hidden.inspect_hidden(cfg)
        print(json.dumps(result, indent=2) if cfg.json_output else hidden_outputs.render(result))
        if cfg.out and not cfg.json_output:  # --json keeps stdout pure JSON
            print(f"wrote {cfg.out}")
        return
    result = inspect(cfg)
    print(json.dumps(result, indent=2) if cfg.json_output else render(result))


def _run_train(ns: argparse.Namespace) -> None:
    from taia.config import build_config
    from taia.train import TrainConfig, train

    file, overrides = _split_positionals(ns.args)
    flags = _flags(ns)
    flags["data"] = [{"path": d} for d in flags["data"]] if flags["data"] else None
    cfg = build_config(TrainConfig, file, flags, overrides)
    report = train(cfg)
    if report:  # empty on the non-main processes of a multi-process run
        loss = f"mean loss {report['train_loss']:.4f}"
        if report["first_loss"] is not None:
            loss += f" (logged {report['first_loss']:.4f} → {report['last_loss']:.4f})"
        print(f"trained {report['variant']}: {report['steps']} steps, {loss}, {report['seconds']} s")
        print(f"wrote {cfg.out}")


def _run_eval(ns: argparse.Namespace) -> None:
    from taia.config import build_config
    from taia.eval import EvalConfig, evaluate

    file, overrides = _split_positionals(ns.args)
    cfg = build_config(EvalConfig, file, _flags(ns), overrides)
    evaluate(cfg)
    print(f"wrote {cfg.out}")


def _run_search(ns: argparse.Namespace) -> None:
    from taia.config import build_config
    from taia.search import SearchConfig, search

    file, overrides = _split_positionals(ns.args)
    cfg = build_config(SearchConfig, file, _flags(ns), overrides)
    result = search(cfg)
    print((Path(cfg.out) / "search.md").read_text())
    print(f"chose {result['best']}; wrote {cfg.out}")


def _with_data_dir(cfg: Any, data_dir: str | None) -> Any:
    """An experiment whose training and test data are read under `data_dir` (the `--data-dir` flag)."""
    if data_dir is None:
        return cfg
    update: dict[str, Any] = {"eval": {**cfg.eval, "data_dir": data_dir}}
    if cfg.train is not None:
        update["train"] = {**cfg.train, "data_dir": data_dir}
    return type(cfg).model_validate({**cfg.model_dump(), **update})


def _run_run(ns: argparse.Namespace) -> None:
    from taia.config import build_config
    from taia.run import ExperimentConfig, run

    file, overrides = _split_positionals(ns.args)
    if file is None:
        raise TaiaError("give an experiment file: taia run EXPERIMENT.yaml [key=value ...]")
    run(_with_data_dir(build_config(ExperimentConfig, file, {}, overrides), ns.data_dir))


def _run_quickstart(ns: argparse.Namespace) -> None:
    import time
    from importlib import resources

    from taia.config import build_config
    from taia.run import ExperimentConfig, run

    file, overrides = _split_positionals(ns.args)
    if file is not None:
        raise TaiaError(f"quickstart takes only key=value overrides, got {file!r}; use `taia run {file}`")
    with resources.as_file(resources.files("taia.run") / "quickstart.yaml") as path:
        cfg = _with_data_dir(build_config(ExperimentConfig, str(path), {}, overrides), ns.data_dir)
    from taia.run.evidence import summary_text
    from taia.run.rundata import load_run

    start = time.perf_counter()
    result = run(cfg)
    print(f"taia quickstart: done in {time.perf_counter() - start:.0f} s; report in {result['report']['md']}")
    print(summary_text(load_run(cfg.run_dir)))  # last: what the numbers above mean, in plain words


def _run_report(ns: argparse.Namespace) -> None:
    from taia.run.render import write_report

    paths = write_report(Path(ns.run_dir), html=not ns.no_html)
    print(Path(paths["md"]).read_text())
    print(f"wrote {', '.join(str(p) for p in paths.values())}")


_COMMANDS = {
    "apply": _run_apply, "inspect": _run_inspect, "train": _run_train,
    "eval": _run_eval, "search": _run_search, "run": _run_run, "quickstart": _run_quickstart,
    "report": _run_report,
}  # fmt: skip


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Flags and positionals intermixed: argparse hands back the positionals (overrides) that follow a
    flag as extras; they join the others in order. An unknown flag is still an error."""
    parser = _parser()
    ns, extra = parser.parse_known_args(argv)
    flags = [x for x in extra if x.startswith("-")]
    if flags or (extra and not isinstance(getattr(ns, "args", None), list)):
        parser.error(f"unrecognized arguments: {' '.join(flags or extra)}")
    if extra:
        ns.args = [*ns.args, *extra]
    return ns


def _one_line(text: str) -> str:
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def main(argv: Sequence[str] | None = None) -> int:
    ns = parse(argv)
    try:
        _COMMANDS[ns.command](ns)
    except TaiaError as e:
        print(f"taia: error: {_one_line(str(e))}", file=sys.stderr)
        return 2
    except OSError as e:  # a full disk or a read-only mount anywhere outside the atomic writers
        where = f" ({e.filename})" if e.filename else ""
        print(f"taia: error: {_one_line(str(e.strerror or e))}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("taia: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
