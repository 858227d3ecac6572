"""How every farmctl command explains itself: one help formatter (choices and defaults shown), an Examples
section per command, the global flags accepted before or after the command, and file completion hints for
shell completion (shtab)."""

from __future__ import annotations

import argparse
from pathlib import Path

from controller.cli.values import check_numbers

# Each command's examples: a line of farmctl arguments (run from a folder with the files named) and what it
# does. tests/controller/cli/test_help.py parses every one with the real parser, so they stay true.
EXAMPLES: dict[str, list[tuple[str, str]]] = {
    "devices": [("devices", "the inventory's devices and their health"),
                ("devices --discover --json", "also agents advertising on the network, as JSON")],
    "bench": [("bench", "the built-in example on an agent farmctl starts here"),
              ("bench model.onnx --device rpi4 --json", "p50/p95/max and throughput on a board, as JSON"),
              ("bench model.onnx --input-shape images=1,3,640,640 --export-times times.csv",
               "fix a dynamic input; every iteration's time to a CSV")],
    "profile": [("profile model.onnx --top 10", "the ten slowest layers"),
                ("profile model.onnx --device rpi4 --trace trace.json",
                 "a Chrome trace to open in ui.perfetto.dev")],
    "report": [("report", "every stored run as a Markdown table"),
               ("report --format csv -o runs.csv", "every stored column, for a spreadsheet")],
    "compare": [("compare 3 7", "two stored runs: latency deltas and a per-layer diff")],
    "show": [("show 7", "one stored run with its settings and layers")],
    "example": [("example mobilenetv2 -o mobilenetv2.onnx", "write the built-in bench example")],
    "optimize": [("optimize", "the built-in digits example with every technique, on this machine"),
                 ("optimize model.onnx --device rpi4 --max-latency-ms 20 --eval-data val.npz",
                  "the fastest candidate under 20 ms that keeps the default quality"),
                 ("optimize model.onnx --techniques int8,fp16 --budget-minutes 10", "two techniques, ten minutes")],
    "nas": [("nas --max-latency-ms 5", "an architecture under 5 ms on this machine, on the built-in digits"),
            ("nas --data images/ --image-size 64 --device rpi4", "on your labelled image folders")],
    "quantize": [("quantize model.onnx", "static INT8 with synthetic calibration"),
                 ("quantize model.onnx --method int8 --algorithm percentile --calibration-data cal.npz",
                  "percentile calibration on your data"),
                 ("quantize model.onnx --method fp16 -o model.fp16.onnx", "half precision")],
    "mixed-precision": [("mixed-precision model.onnx --calibration-data cal.npz --threshold 0.995",
                         "INT8 with the most sensitive layers kept float")],
    "fuse": [("fuse model.onnx", "fold BatchNorm into Conv, fuse activations")],
    "rewrite": [("rewrite model.onnx --rewrite transpose_chain", "one rewrite")],
    "evaluate": [("evaluate model.int8.onnx --reference model.onnx --eval-data val.npz",
                  "accuracy and fidelity against the original")],
    "ca": [("ca init", "create the farm CA"), ("ca issue pi1 --host 192.168.1.20", "a certificate for an agent")],
    "ca init": [("ca init", "create the farm CA in the user data folder")],
    "ca list": [("ca list", "the farm CA's certificates, with a warning for those expiring within 30 days")],
    "ca issue": [("ca issue farmctl", "this controller's certificate"),
                 ("ca issue pi1 --host 192.168.1.20", "an agent's certificate for its address")],
    "deploy": [("deploy pi1", "install and start farm-agent on the inventory device pi1 over SSH")],
    "logs": [("logs pi1 --lines 100", "the agent's last 100 log lines")],
    "undeploy": [("undeploy pi1", "stop the agent and remove it")],
    "dashboard": [("dashboard", "the dashboard of ./edgefarm-results.db on http://127.0.0.1:8050/"),
                  ("dashboard --store team.db --host 0.0.0.0 --port 8080 --token-file dashboard.token",
                   "for the team: every address, a token required")],
    "completion": [("completion bash > ~/.local/share/bash-completion/completions/farmctl",
                    "tab completion for bash (zsh and tcsh too)")],
}

GLOBAL_FLAGS: list[tuple[tuple[str, ...], dict]] = [
    (("-v", "--verbose"), {"action": "store_true", "help": "debug logging"}),
    (("-q", "--quiet"), {"action": "store_true", "help": "no progress lines on stderr"}),
    (("--store",), {"type": str, "metavar": "PATH|URL",
                    "help": "results store: a SQLite file, or postgresql://USER@HOST:PORT/DB for a team's "
                            "server (default ./edgefarm-results.db or $EDGEFARM_STORE)"}),
    (("--inventory",), {"type": Path, "metavar": "YAML",
                        "help": "fleet file (default ./inventory.yaml if present, else just 'local')"}),
]
SHTAB_FILE = {"bash": "_shtab_compgen_files", "zsh": "_files", "tcsh": "f"}   # = shtab.FILE (shtab loads lazily)
FILE_ARGS = {"model", "reference", "output", "out", "store", "inventory", "data", "eval_data", "calibration_data",
             "trace", "export_times", "plot", "dir"}


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Examples keep their lines; every option with a meaningful default says it, unless its help does."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or not action.option_strings or action.default in (None, False, [], "",
                                                                                  argparse.SUPPRESS):
            return text
        return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"


def add_global_flags(parser: argparse.ArgumentParser, defaults: dict | None = None) -> None:
    """The top-level parser holds the real `defaults` (by dest); a subcommand's copies default to SUPPRESS, so
    a global flag after the command sets the value and its absence leaves the top-level default alone."""
    group = parser.add_argument_group("global options (before or after the command)")
    for names, options in GLOBAL_FLAGS:
        dest = names[-1].lstrip("-")
        group.add_argument(*names, default=argparse.SUPPRESS if defaults is None else defaults[dest], **options)


def subcommands(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    """Every (nested) subcommand's parser by its path, e.g. 'bench', 'ca issue'."""
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                path = f"{prefix}{name}"
                found[path] = sub
                found.update(subcommands(sub, path + " "))
    return found


def _examples_text(path: str) -> str:
    lines = [f"  farmctl {argv}\n      {what}" for argv, what in EXAMPLES.get(path, [])]
    return "examples:\n" + "\n".join(lines) if lines else ""


def finish(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Give every command the formatter, its examples, the global flags and completion hints."""
    parser.formatter_class = HelpFormatter
    for path, sub in subcommands(parser).items():
        sub.formatter_class = HelpFormatter
        sub.epilog = _examples_text(path) or sub.epilog
        add_global_flags(sub)
    for sub in [parser, *subcommands(parser).values()]:
        for action in sub._actions:
            if action.help is None and action.option_strings and action.default not in (None, False, [], ""):
                action.help = "(default: %(default)s)"     # argparse shows nothing at all for a flag without help
            if action.dest in FILE_ARGS:
                action.complete = SHTAB_FILE
        check_numbers(sub)
    return parser
