#!/usr/bin/env bash
# Installs the Debian 12 packages r8s builds and tests with, if any is missing.
# Usage: scripts/deps.sh   (as root, or with sudo available)
set -euo pipefail

packages=(
  build-essential   # cc for SQLite (bundled by rusqlite)
  lld               # links release builds with their function order (crates/r8s/build.rs)
  protobuf-compiler # protoc for etcd-client's and CRI's gRPC code
  etcd-server       # the etcd backend's tests and the reference in `r8s bench store`
  busybox-static    # tiny test images (scripts/build-test-images.py)
  python3           # the test toolchain scripts
  util-linux        # unshare, flock, nsenter (test nodes live in network namespaces)
  containerd        # the node agent's container runtime (with runc)
  runc
  containernetworking-plugins # bridge, host-local, portmap, loopback for the pod network
  iproute2          # ip netns for test nodes
  iptables          # hostPort forwarding by the CNI portmap plugin
  nftables          # the service proxy's rules
  docker-registry   # a local registry mirror for pull tests
  skopeo            # pushes test images into it
  curl              # tests call the API directly
  openssl           # tests make client certificates
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  exit 0
fi

sudo=()
if ((EUID != 0)); then
  command -v sudo >/dev/null || { echo "deps: run as root to install: ${missing[*]}" >&2; exit 1; }
  sudo=(sudo)
fi
echo "deps: installing ${missing[*]}" >&2
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >&2
