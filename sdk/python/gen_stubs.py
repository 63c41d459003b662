"""Generates the gRPC stubs in drover/v1/ from the server's .proto files (one contract).

    python gen_stubs.py            # rewrite drover/v1/*_pb2*.py
    python gen_stubs.py --check    # exit 1 if the checked-in stubs differ (drift)

Needs grpcio-tools (a development dependency only; the package needs grpcio and protobuf).
"""
import os
import sys
import tempfile
import filecmp

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_ROOT = os.path.join(HERE, "..", "..", "crates", "drover-api", "proto")
PROTOS = ["drover/v1/worker.proto", "drover/v1/events.proto"]
OUTPUTS = [
    "worker_pb2.py",
    "worker_pb2.pyi",
    "worker_pb2_grpc.py",
    "events_pb2.py",
    "events_pb2.pyi",
    "events_pb2_grpc.py",
]


def generate(out_dir: str) -> None:
    from grpc_tools import protoc
    import grpc_tools

    include = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *PROTOS,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")


def main() -> int:
    target = os.path.join(HERE, "drover", "v1")
    if "--check" in sys.argv:
        with tempfile.TemporaryDirectory() as tmp:
            generate(tmp)
            fresh = os.path.join(tmp, "drover", "v1")
            stale = [
                f
                for f in OUTPUTS
                if not os.path.exists(os.path.join(target, f))
                or not filecmp.cmp(os.path.join(fresh, f), os.path.join(target, f), shallow=False)
            ]
        if stale:
            print("stubs differ from the .proto files: " + ", ".join(stale))
            print("regenerate them: python sdk/python/gen_stubs.py")
            return 1
        return 0
    generate(HERE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
