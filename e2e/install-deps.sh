#!/usr/bin/env bash
# Installs what knet's build, tests, lab and benchmarks need on a fresh Debian machine, once:
# Debian packages (only the missing ones), then the lab's control plane (cached build).
# Idempotent and quiet when everything is present.
set -euo pipefail

pkgs=(
  clang-19 llvm-19 libbpf-dev libelf-dev linux-libc-dev  # eBPF programs
  nftables iproute2 conntrack bpftool ethtool            # dataplane tools and inspection
  containernetworking-plugins                            # reference CNI plugins (lab baseline)
  dnsutils bind9 dnsperf                                 # dig, an upstream DNS server, dnsperf
  iperf3 curl socat jq iputils-ping tcpdump              # traffic and probes
  openssl squashfs-tools                                 # lab certificates, snap packaging
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "[deps] installing: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v go >/dev/null || { echo "[deps] Go 1.26 is required to build the lab's control plane; install it and retry" >&2; exit 1; }
command -v cargo >/dev/null || { echo "[deps] Rust (cargo) is required; install it and retry" >&2; exit 1; }
"$(dirname "$0")/control-plane/build.sh" >/dev/null
