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
    taia score RUN_OR_EVAL_DIR [--mode strict|flexible|…]

Each verb's flags are its config model's fields (`taia.cliargs`: `taia VERB --help` lists them all);
a YAML file and `key=value` overrides set the same fields. Flags and overrides may come in any order
(file < flags < overrides). User errors — bad flags, bad configs, bad inputs,
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

from taia.cliargs import FINE_TUNE, HELP, Verb, add_options
from taia.errors import TaiaError
from taia.io.atomic import os_error


class _Parser(argparse.ArgumentParser):
    """argparse's own errors as the one line every other error is (sub-commands inherit the class)."""

    def error(self, message: str) -> NoReturn:
        verb = self.prog.removeprefix("taia").strip()
        self.exit(2, f"taia: error: {verb + ': ' if verb else ''}{message}\n")


VERBS = {
    "apply": Verb(
        "build a TAIA adapter or checkpoint from base + fine-tune",
        "taia.config:ApplyConfig",
        exclusive=FINE_TUNE,
    ),
    "inspect": Verb("parameter counts and update norms per group and layer", "taia.config:InspectConfig"),
    "train": Verb("fine-tune (LoRA, full, TOA/TOF, MoLoRA) with TRL + PEFT", "taia.train.config:TrainConfig"),
    "eval": Verb(
        "evaluate variants (base, vanilla, taia, taif, specs) on tasks",
        "taia.eval.config:EvalConfig",
        exclusive=FINE_TUNE,
    ),
    "search": Verb(
        "pick the best spec on a dev split, test it on held-out tasks",
        "taia.search.config:SearchConfig",
        exclusive=FINE_TUNE,
    ),
    "run": Verb(
        "a whole experiment: train → variants → eval → report (cached, resumable)",
        "taia.run.experiment:ExperimentConfig",
        positional=("EXPERIMENT.yaml [key=value]", "experiment file and overrides"),
    ),
    "quickstart": Verb(
        "the method made visible on SmolLM2-135M in ~6 min on 2 CPU cores: identity-shift LoRA, then "
        "base/vanilla/TAIA/TAIF on persona adoption and CommonsenseQA",
        "taia.run.experiment:ExperimentConfig",
        positional=("key=value", "overrides of the packaged quickstart experiment"),
    ),
    "report": Verb(
        "(re-)render a run's report: Markdown, CSV/JSON, HTML, plots",
        "taia.config:ReportConfig",
        positional=("", ""),
        arguments=("run_dir",),
    ),
    "score": Verb(
        "re-score a run's or eval's stored answers under another scoring mode (nothing generated)",
        "taia.eval.rescore:ScoreConfig",
        positional=("", ""),
        arguments=("run_dir",),
    ),
}
_EXPERIMENTS = ("run", "quickstart")  # their --data-dir is not a field: it sets both sections' data_dir


def _split_positionals(items: list[str]) -> tuple[str | None, list[str]]:
    """Positionals are an optional config file followed by key=value overrides."""
    files = [x for x in items if "=" not in x]
    if len(files) > 1:
        raise TaiaError(f"expected at most one config file, got {files}")
    return (files[0] if files else None), [x for x in items if "=" in x]


def _parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    """Every verb; only the one named in `argv` gets its options, so only its config model is imported
    (`taia --help` imports none)."""
    parser = _Parser(prog="taia", description="Train all, infer with the fine-tuned attention.")
    sub = parser.add_subparsers(dest="command", required=True)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, verb in VERBS.items():
        p = sub.add_parser(name, help=verb.help)
        if name == chosen:
            add_options(p, verb)
        if name == chosen and name in _EXPERIMENTS:
            p.add_argument("--data-dir", help=HELP["data_dir"] + " (training and test data)")
    return parser


def _flags(ns: argparse.Namespace, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    return {k: v for k, v in vars(ns).items() if k not in ("command", "args", *skip)}


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
    cfg = build_config(TrainConfig, file, _flags(ns), overrides)  # a bare --data path is one source
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


def _data_dir_overrides(data_dir: str | None, file: str | None, overrides: list[str]) -> list[str]:
    """`--data-dir D` as the overrides it stands for — `eval.data_dir=D`, and `train.data_dir=D` when the
    experiment trains — to go before the user's, so theirs win (file < flags < overrides)."""
    if data_dir is None:
        return []
    from taia.config import load_mapping, parse_overrides

    value = json.dumps(data_dir, ensure_ascii=False)  # quoted: a path stays a string, whatever it looks like
    given = parse_overrides(overrides)
    if "train" in given:  # `train=null` drops the file's section; `train.lr=…` makes one
        train = given["train"]
    else:
        train = load_mapping(Path(file), "config file").get("train") if file else None
    return [f"eval.data_dir={value}", *([f"train.data_dir={value}"] if train is not None else [])]


def _run_run(ns: argparse.Namespace) -> None:
    from taia.config import build_config
    from taia.run import ExperimentConfig, run

    file, overrides = _split_positionals(ns.args)
    if file is None:
        raise TaiaError("give an experiment file: taia run EXPERIMENT.yaml [key=value ...]")
    overrides = [*_data_dir_overrides(ns.data_dir, file, overrides), *overrides]
    run(build_config(ExperimentConfig, file, _flags(ns, ("data_dir",)), overrides))


def _run_quickstart(ns: argparse.Namespace) -> None:
    import time
    from importlib import resources

    from taia.config import build_config
    from taia.run import ExperimentConfig, run

    file, overrides = _split_positionals(ns.args)
    if file is not None:
        raise TaiaError(f"quickstart takes only key=value overrides, got {file!r}; use `taia run {file}`")
    with resources.as_file(resources.files("taia.run") / "quickstart.yaml") as path:
        overrides = [*_data_dir_overrides(ns.data_dir, str(path), overrides), *overrides]
        cfg = build_config(ExperimentConfig, str(path), _flags(ns, ("data_dir",)), overrides)
    from taia.run.evidence import summary_text
    from taia.run.rundata import load_run

    start = time.perf_counter()
    result = run(cfg)
    print(f"taia quickstart: done in {time.perf_counter() - start:.0f} s; report in {result['report']['md']}")
    print(summary_text(load_run(cfg.run_dir)))  # last: what the numbers above mean, in plain words


def _run_report(ns: argparse.Namespace) -> None:
    from taia.config import ReportConfig, build_config
    from taia.run.render import write_report

    cfg = build_config(ReportConfig, None, _flags(ns))
    paths = write_report(Path(cfg.run_dir), html=cfg.html)
    print(Path(paths["md"]).read_text())
    print(f"wrote {', '.join(str(p) for p in paths.values())}")


def _run_score(ns: argparse.Namespace) -> None:
    from taia.config import build_config
    from taia.eval.rescore import ScoreConfig, rescore

    cfg = build_config(ScoreConfig, None, _flags(ns))
    done = rescore(cfg)
    print(f"wrote {', '.join(str(p) for p in done['written'])}")


_COMMANDS = {
    "apply": _run_apply, "inspect": _run_inspect, "train": _run_train,
    "eval": _run_eval, "search": _run_search, "run": _run_run, "quickstart": _run_quickstart,
    "report": _run_report, "score": _run_score,
}  # fmt: skip


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Flags and positionals intermixed: argparse hands back the positionals (overrides) that follow a
    flag as extras; they join the others in order. An unknown flag is still an error."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = _parser(argv)
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
    except KeyboardInterrupt:
        print("taia: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a full disk or a read-only mount anywhere outside the atomic writers
        failed = os_error(e)  # however the writer raised it (safetensors, torch.save)
        if failed is None:
            raise
        where = f" ({failed.filename})" if failed.filename else ""
        print(f"taia: error: {_one_line(str(failed.strerror or failed))}{where}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
