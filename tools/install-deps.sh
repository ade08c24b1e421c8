#!/usr/bin/env bash
# Installs the Debian bookworm packages Troupe builds and tests with. Idempotent: when
# every package is already installed it does nothing (no apt-get update either).
set -euo pipefail

packages=(
  build-essential cmake pkg-config ccache
  libcaf-dev                 # CAF 0.17.6: the actor runtime
  libucx-dev ucx-utils       # UCX: the transport (active messages, RMA)
  libcapnp-dev capnproto     # Cap'n Proto: the wire format and its compiler
  libhwloc-dev               # hwloc: topology discovery and thread placement
  libboost-test-dev          # Boost.Test: the test suites
  libmimalloc-dev            # mimalloc: the programs' memory allocator
  libopenmpi-dev openmpi-bin # Open MPI: the mpi group bootstrap
  nlohmann-json3-dev         # JSON configs and view files
  libsqlite3-dev             # SQLite: the KVS root's durable store
  libcivetweb-dev            # civetweb: the HTTP server behind a node's /metrics
  libcli11-dev               # command-line parsing
  libreadline-dev            # line editing, history and completion in actorsh
  gnuplot-nox                # the offload demo's plot of completions (PNG, SVG)
  help2man                   # man pages from the programs' --help
  iproute2                   # tests only: network namespaces as a second host
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages: ${missing[*]}" >&2
  echo "install-deps: run as root (or: sudo $0)" >&2
  exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}"
