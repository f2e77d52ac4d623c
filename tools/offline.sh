#!/usr/bin/env bash
# Run a command with the network cut: a new network namespace in which only loopback is up, so that
# no test and no chapter can reach the internet unnoticed (the chapters' kernels, JupyterLab and the
# browser tests talk to the test process over 127.0.0.1, which still works). Used by `make test`.
#   tools/offline.sh CMD ARGS...     (sets LMBOOK_OFFLINE=1 inside; tests/test_offline.py checks it)
# Cutting the network needs root and util-linux's unshare; elsewhere the command runs with the network
# on and a note says so. LMBOOK_NETWORK=allow skips the cut.
set -euo pipefail
if [ "$#" -eq 0 ]; then
    echo "usage: tools/offline.sh COMMAND [ARGS...]" >&2
    exit 2
fi
if [ "${LMBOOK_NETWORK:-}" != "allow" ] && [ "$(id -u)" = 0 ] && command -v unshare >/dev/null 2>&1 \
        && command -v ip >/dev/null 2>&1 && unshare -n true 2>/dev/null; then
    echo "==> running with the network cut (only loopback): $*"
    exec unshare -n sh -c 'ip link set lo up && LMBOOK_OFFLINE=1 exec "$@"' sh "$@"
fi
echo "note: running with the network on (cutting it needs root, unshare and ip; LMBOOK_NETWORK=${LMBOOK_NETWORK:-})" >&2
exec "$@"
