"""farmctl behaves like the command lines users know: global flags anywhere, exit codes 1/2/3, an Examples
section in every command's help that really parses, choices and defaults shown, old flag spellings kept, and
shell completion generated from the parser."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from controller.cli.help import EXAMPLES, subcommands
from controller.cli.main import build_parser
from controller.measure.store import ResultsStore

ROOT = Path(__file__).resolve().parents[3]
FAST = ["--warmup", "1", "--min-iterations", "5", "--min-seconds", "0.05", "--threads", "1"]


def _farmctl(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "controller", *args], capture_output=True, text=True, timeout=300,
                          env=env, cwd=cwd)


def test_every_command_has_examples_that_parse():
    parser = build_parser()
    commands = subcommands(parser)
    assert set(commands) == set(EXAMPLES), "EXAMPLES and the commands differ"
    for path, sub in commands.items():
        assert "examples:\n  farmctl " in sub.format_help(), path
        for line, _ in EXAMPLES[path]:
            argv = shlex.split(line.split(">")[0])
            assert argv[:len(path.split())] == path.split(), f"an example of '{path}' runs another command: {line}"
            parser.parse_args(argv)          # argparse exits (and the test fails) on an example that is wrong


def test_choices_and_defaults_are_shown():
    text = " ".join(subcommands(build_parser())["quantize"].format_help().split())
    assert "--method {int8,dynamic,fp16,int4}" in text
    assert "(default: int8)" in text and "(default: minmax)" in text
    assert "(default: None)" not in text and "(default: False)" not in text


def test_global_flags_work_after_the_command(tmp_path, conv_onnx):
    out = _farmctl("bench", str(conv_onnx), *FAST, "-q", "--store", "after.db", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""                               # -q after the command silenced the progress lines
    assert len(ResultsStore(tmp_path / "after.db").runs()) == 1
    parsed = build_parser().parse_args(["-q", "bench", "m.onnx"])
    assert parsed.quiet and parsed.store == build_parser().parse_args(["bench"]).store   # before: as ever


@pytest.mark.parametrize("args, status, words", [
    (["bench", "--no-such-flag"], 2, "unrecognized arguments: --no-such-flag"),
    (["bench", "m.onnx", "--input-shape", "x=1,a"], 2, "dimensions must be integers"),
    (["bench", "missing.onnx"], 1, "model file 'missing.onnx' does not exist"),
])
def test_exit_status_says_usage_or_failure(tmp_path, args, status, words):
    out = _farmctl(*args, cwd=tmp_path)
    assert out.returncode == status and words in out.stderr and "Traceback" not in out.stderr


def test_old_flag_spellings_still_work_but_are_hidden():
    parser = build_parser()
    assert parser.parse_args(["nas", "--latency-ms", "3", "--size-mb", "2"]).max_latency_ms == 3.0
    assert parser.parse_args(["evaluate", "m.onnx", "--data", "synthetic"]).eval_data == "synthetic"
    nas_help = subcommands(parser)["nas"].format_help()
    assert "--max-latency-ms" in nas_help and "--latency-ms" not in nas_help.replace("--max-latency-ms", "")


def test_evaluate_without_data_is_a_usage_error(tmp_path):
    out = _farmctl("evaluate", "m.onnx", cwd=tmp_path)
    assert out.returncode == 2 and "evaluate needs --eval-data" in out.stderr


def _complete(script: Path, words: list[str]) -> list[str]:
    """Ask the generated bash completion what it offers for the last word, as bash would on <TAB>."""
    array = " ".join(shlex.quote(w) for w in words)
    code = (f"source {shlex.quote(str(script))}; COMP_WORDS=({array}); COMP_CWORD={len(words) - 1}; "
            f"COMP_LINE={shlex.quote(' '.join(words))}; COMP_POINT=${{#COMP_LINE}}; "
            f"_shtab_farmctl farmctl {shlex.quote(words[-1])} {shlex.quote(words[-2])}; "
            'printf "%s\\n" "${COMPREPLY[@]}"')
    out = subprocess.run(["bash", "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_bash_completion_offers_commands_flags_and_choices(tmp_path):
    out = _farmctl("completion", "bash", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    script = tmp_path / "farmctl.bash"
    script.write_text(out.stdout)
    assert _complete(script, ["farmctl", "opt"]) == ["optimize"]
    assert "--method" in _complete(script, ["farmctl", "quantize", "m.onnx", "--meth"])
    assert _complete(script, ["farmctl", "quantize", "m.onnx", "--method", ""]) == ["int8", "dynamic", "fp16", "int4"]
    for shell in ("zsh", "tcsh"):
        assert "optimize" in _farmctl("completion", shell, cwd=tmp_path).stdout
