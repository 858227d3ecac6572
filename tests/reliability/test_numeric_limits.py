"""Issue (D1, D10): a NaN time limit passed the agent's ceiling (`nan > 60` is False) and the job ran until
cancelled; `--priority-aging-s inf` (or 1e10) was accepted and then every queued job failed with a
time_t traceback. Now every number on the agent's command line and on the wire refuses NaN, infinity,
negatives and absurd sizes with one sentence."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from agent.job_queue import MAX_WAIT_S, Job, JobQueue
from agent.jobs import JobSpec
from protos import agent_pb2 as pb

QUICK = dict(warmup=0, min_iterations=1, min_seconds=0, threads=1)


@pytest.mark.parametrize(("field", "value", "words"), [
    ("time_limit_s", float("nan"), "time_limit_s nan is not a finite number"),
    ("time_limit_s", float("inf"), "time_limit_s inf is not a finite number"),
    ("time_limit_s", -1.0, "time_limit_s -1.0 is out of range"),
    ("memory_limit_bytes", -5, "memory_limit_bytes -5 is out of range"),
    ("min_seconds", float("nan"), "settings.min_seconds nan is not a finite number"),
    ("max_seconds", float("inf"), "settings.max_seconds inf is not a finite number"),
    ("threads", -2, "settings.threads -2 is out of range"),
    ("warmup", -1, "settings.warmup -1 is out of range"),
])
def test_bad_numbers_on_the_wire_are_refused_at_once(start_agent, conv_onnx, field, value, words):
    client, agent = start_agent("--job-time-limit", "60")
    digest = client.ensure_model(conv_onnx).digest
    settings = {**QUICK, **({field: value} if field in ("min_seconds", "max_seconds", "threads", "warmup") else {})}
    request = pb.RunRequest(kind=pb.BENCHMARK, model_digest=digest, settings=pb.MeasureSettings(**settings),
                            **({field: value} if field in ("time_limit_s", "memory_limit_bytes") else {}))
    started = time.monotonic()
    last = list(client.run(request))[-1]
    assert time.monotonic() - started < 10                     # refused, not run until a limit
    assert last.WhichOneof("event") == "error" and pb.ErrorCode.Name(last.error.code) == "INVALID_INPUT"
    assert words in last.error.message
    assert "Traceback" not in agent.log_path.read_text()


def test_an_input_shape_of_zero_is_refused(start_agent, dynamic_onnx):
    client, _ = start_agent()
    digest = client.ensure_model(dynamic_onnx).digest
    settings = pb.MeasureSettings(**QUICK)
    settings.input_shapes["x"].dims.extend([0, 3, 8, 8])
    last = list(client.run(pb.RunRequest(kind=pb.BENCHMARK, model_digest=digest, settings=settings)))[-1]
    assert pb.ErrorCode.Name(last.error.code) == "INVALID_INPUT" and "dimension" in last.error.message


@pytest.mark.parametrize(("flag", "value", "words"), [
    ("--job-time-limit", "nan", "not a finite number"), ("--job-time-limit", "inf", "not a finite number"),
    ("--job-time-limit", "-1", "out of range"), ("--priority-aging-s", "inf", "not a finite number"),
    ("--priority-aging-s", "1e10", "out of range"), ("--cache-max-mb", "nan", "not a finite number"),
    ("--job-memory-limit-mb", "-100", "out of range"), ("--max-jobs", "0", "out of range"),
    ("--max-uploads", "2.5", "not a whole number"), ("--upload-idle-s", "0", "must be above 0"),
])
def test_bad_numbers_on_the_command_line_stop_the_agent_with_one_sentence(tmp_path, flag, value, words):
    out = subprocess.run([sys.executable, "-m", "agent", "serve", "--port", "0", "--cache-dir", str(tmp_path),
                          flag, value], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert flag in out.stderr and words in out.stderr


def test_a_long_aging_interval_never_overflows_the_wait():
    """The wait until the next aging step is capped (a 1e10 s wait overflowed the lock's time_t)."""
    q = JobQueue(aging_s=1e6)
    first, second = Job(JobSpec(kind="BENCHMARK", digest="a")), Job(JobSpec(kind="BENCHMARK", digest="b"))
    q.submit(first)
    q.submit(second)
    assert q._next_aging(time.monotonic()) <= MAX_WAIT_S
