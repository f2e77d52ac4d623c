"""`make test` runs with the network cut (tools/offline.sh): no test or chapter can reach the internet unnoticed.

Under CI (environment variable CI set, run as root) the cut is required; elsewhere the check skips when the
tests run with the network on (e.g. `pytest` called directly)."""
from __future__ import annotations

import os
import socket

import pytest


def test_the_tests_run_without_a_network():
    if os.environ.get("LMBOOK_OFFLINE") != "1":
        if os.environ.get("CI") and os.geteuid() == 0:
            pytest.fail("CI must run the tests with the network cut: run them through tools/offline.sh (make test does)")
        pytest.skip("not run through tools/offline.sh (make test cuts the network)")
    with pytest.raises(OSError):
        socket.create_connection(("pypi.org", 443), timeout=5).close()
    with pytest.raises(OSError):
        socket.create_connection(("1.1.1.1", 53), timeout=5).close()
    # loopback still works: the kernels and the browser tests need it
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        socket.create_connection(s.getsockname(), timeout=5).close()
