#!/bin/sh
# Installs the Debian packages recur needs to build and test, when they are missing.
#   scripts/setup.sh           install what is missing (as root), or print the command to run
#   scripts/setup.sh --check   exit 0 when everything is present, 1 otherwise (prints nothing)
# Packages: a C compiler and make, pkg-config, OpenBLAS (CBLAS), protobuf-c (checkpoint
# entries), snappy (compressed checkpoint blocks).
PKGS="gcc make pkg-config libopenblas-dev libprotobuf-c-dev libsnappy-dev"

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

if [ "$1" = "--check" ]; then
    [ -z "$missing" ]; exit $?
fi
if [ -z "$missing" ]; then
    echo "setup: all build dependencies are present"
    exit 0
fi
if [ "$(id -u)" = 0 ]; then
    echo "setup: installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq$missing >/dev/null || {
        echo "setup: apt-get failed; run: apt-get update && apt-get install -y$missing" >&2
        exit 1
    }
    echo "setup: done"
else
    echo "setup: missing Debian packages:$missing" >&2
    echo "setup: run as root:  apt-get update && apt-get install -y$missing" >&2
    exit 1
fi
