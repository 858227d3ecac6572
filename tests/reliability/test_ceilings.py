"""Issue: a client asked for 3000 MiB on an agent capped at 300 (and 8 s against 2 s) and got it. Now
the operator's limits are ceilings: asking above one is refused with the ceiling named."""

from __future__ import annotations

from protos import agent_pb2 as pb


def test_operator_limits_are_ceilings(start_agent, conv_onnx):
    client, _ = start_agent("--job-memory-limit-mb", "300", "--job-time-limit", "2")
    digest = client.ensure_model(conv_onnx).digest
    quick = pb.MeasureSettings(warmup=0, min_iterations=1, min_seconds=0, threads=1)
    for request, words in ((pb.RunRequest(kind=pb.BENCHMARK, model_digest=digest, settings=quick,
                                          memory_limit_bytes=3000 * 2**20), "ceiling of 300 MiB"),
                           (pb.RunRequest(kind=pb.BENCHMARK, model_digest=digest, settings=quick, time_limit_s=8),
                            "ceiling of 2 s")):
        error = list(client.run(request))[-1].error
        assert pb.ErrorCode.Name(error.code) == "INVALID_INPUT" and words in error.message
    # at or below the ceilings the job runs
    ok = list(client.run(pb.RunRequest(kind=pb.BENCHMARK, model_digest=digest, settings=quick,
                                       memory_limit_bytes=200 * 2**20, time_limit_s=2)))
    assert ok[-1].WhichOneof("event") == "result"
