"""Regenerate protos/agent_pb2.py, agent_pb2_grpc.py and agent_pb2.pyi from protos/agent.proto.

Usage: python scripts/gen_protos.py [--out DIR]   (default: the protos/ folder in place)
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GENERATED = ("agent_pb2.py", "agent_pb2_grpc.py", "agent_pb2.pyi")


def generate(out_dir: Path) -> list[Path]:
    """Run protoc (grpcio-tools) and write the generated files into out_dir."""
    from grpc_tools import protoc

    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "protoc",
            f"-I{ROOT}",
            f"-I{Path(protoc.__file__).parent / '_proto'}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            str(ROOT / "protos" / "agent.proto"),
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for name in GENERATED:
            dst = out_dir / name
            shutil.copyfile(Path(tmp) / "protos" / name, dst)
            written.append(dst)
        return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "protos")
    args = parser.parse_args()
    for path in generate(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
