"""The checked-in gRPC stubs are exactly what the server's .proto files generate."""

import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


def test_stubs_match_the_proto_files():
    pytest.importorskip("grpc_tools", reason="grpcio-tools is needed to regenerate the stubs")
    r = subprocess.run(
        [sys.executable, os.path.join(HERE, "..", "gen_stubs.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr
