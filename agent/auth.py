"""Bearer-token authentication for the agent's gRPC server."""

from __future__ import annotations

import hmac
from pathlib import Path

import grpc

# Health checks stay open so a supervisor can probe readiness without the token.
OPEN_METHODS = frozenset({"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch"})


class PemFileError(Exception):
    """A TLS file could not be read: which one (`what`), where, and why."""

    def __init__(self, what: str, path: str | Path, reason: str) -> None:
        super().__init__(f"{what} '{path}': {reason}")
        self.what, self.path, self.reason = what, path, reason


def read_pem_files(files: list[tuple[str, str | Path]]) -> list[bytes]:
    """The bytes of each (what, path), in order; a PemFileError names the first that cannot be read."""
    data = []
    for what, path in files:
        try:
            data.append(Path(path).expanduser().read_bytes())
        except OSError as exc:
            raise PemFileError(what, path, exc.strerror or str(exc)) from None
    return data


def server_credentials(ca: Path, cert: Path, key: Path) -> grpc.ServerCredentials:
    """Mutual TLS: the agent shows its certificate and accepts only clients whose certificate the farm CA
    signed (`farmctl ca issue`)."""
    try:
        ca_pem, cert_pem, key_pem = read_pem_files([("--tls-ca", ca), ("--tls-cert", cert), ("--tls-key", key)])
    except PemFileError as exc:
        raise SystemExit(f"farm-agent: cannot read {exc.what} file '{exc.path}' ({exc.reason}); make the files "
                         "with `farmctl ca init` and `farmctl ca issue NAME --host ADDRESS`") from None
    return grpc.ssl_server_credentials([(key_pem, cert_pem)], root_certificates=ca_pem, require_client_auth=True)


class TokenAuthInterceptor(grpc.ServerInterceptor):
    """Refuses every call whose `authorization` metadata is not `Bearer <token>`."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    def intercept_service(self, continuation, handler_call_details):
        if handler_call_details.method in OPEN_METHODS:
            return continuation(handler_call_details)
        given = dict(handler_call_details.invocation_metadata or ()).get("authorization", "")
        if hmac.compare_digest(given.encode(), self._expected):
            return continuation(handler_call_details)
        handler = continuation(handler_call_details)
        reason = ("no bearer token was sent" if not given else "the bearer token is wrong")
        message = (f"unauthenticated: {reason}; give farmctl the agent's token in the EDGEFARM_TOKEN "
                   "environment variable (or name another variable with `token_env:` in inventory.yaml)")

        def deny(request_or_iterator, context):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

        if handler is None:
            return None
        if handler.request_streaming and handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(deny)
        if handler.request_streaming:
            return grpc.stream_unary_rpc_method_handler(deny)
        if handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(deny)
        return grpc.unary_unary_rpc_method_handler(deny)
