"""Every numeric flag refuses NaN, infinity, out-of-range values and contradictions before any work, with
exit 2 and one sentence naming the flag and what to give; no flag is taken from an abbreviation, and a
mistyped flag gets "did you mean"."""

from __future__ import annotations

import pytest

from controller.cli.help import subcommands
from controller.cli.main import build_parser, main


@pytest.mark.parametrize("args, words", [
    (["optimize", "m.onnx", "--max-size-mb", "-5"], "argument --max-size-mb: -5 is out of range; give a number > 0"),
    (["optimize", "m.onnx", "--memory-limit-mb", "nan"], "--memory-limit-mb: 'nan' is not a finite number"),
    (["bench", "--min-seconds", "inf", "--max-seconds", "1"], "--min-seconds: 'inf' is not a finite number"),
    (["bench", "--time-limit", "-5"], "--time-limit: -5 is out of range; give a number >= 0"),
    (["optimize", "--min-fidelity", "1.5"], "--min-fidelity: 1.5 is out of range; give a number from 0 to 1"),
    (["bench", "--threads", "2.5"], "--threads: '2.5' is not a whole number"),
    (["optimize", "--budget-minutes", "0"], "--budget-minutes: 0 is out of range; give a number > 0"),
    (["nas", "--iterations", "0"], "--iterations: 0 is out of range; give a number >= 1"),
    (["bench", "--min-seconds", "5", "--max-seconds", "1"], "--min-seconds 5 is more than --max-seconds 1"),
    (["bench", "--min-second", "0.5"], "unrecognized arguments: --min-second; --min-second: did you mean "
                                       "--min-seconds?"),
    (["bench", "--devcie", "local"], "--devcie: did you mean --device?"),
])
def test_bad_numbers_and_flags_exit_2_with_one_sentence(tmp_path, monkeypatch, capsys, args, words):
    monkeypatch.chdir(tmp_path)
    try:
        status = main(["-q", *args])
    except SystemExit as exc:   # argparse's own errors
        status = exc.code
    err = capsys.readouterr().err
    assert status == 2 and words in err and "Traceback" not in err, err


def test_every_numeric_flag_is_checked_and_no_parser_takes_abbreviations():
    parser = build_parser()
    for name, sub in {"farmctl": parser, **subcommands(parser)}.items():
        assert sub.allow_abbrev is False, name
        for action in sub._actions:
            assert action.type not in (int, float), f"farmctl {name} {action.option_strings}: an unchecked number"


def test_zero_keeps_its_documented_meaning():
    args = build_parser().parse_args(["bench", "--threads", "0", "--time-limit", "0", "--memory-limit-mb", "0"])
    assert (args.threads, args.time_limit, args.memory_limit_mb) == (0, 0.0, 0.0)
    assert isinstance(build_parser().parse_args(["optimize", "--min-metric", "-3"]).min_metric, float)
