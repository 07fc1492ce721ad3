#!/usr/bin/env bash
# Issue 7's DNS benchmark: knet's in-process DNS vs CoreDNS (built from its Go module,
# configured as kubeadm ships it, watching the same API server), in the same run.
#
# Starts a one-node lab with knet (`knet-lab --id dnsbench up --nodes 1 --knet`), creates
# N Services (and optionally an EndpointSlice of E endpoints for each) through the API, runs
# CoreDNS inside the node's network namespace on 169.254.53.53:53 (lo), and runs Debian's
# dnsperf from inside that namespace against each server in turn, interleaved (knet, CoreDNS,
# knet, CoreDNS ...), same query file of cluster names, fixed duration. Records queries/s, lost
# queries, average latency, each server's CPU time over the run (/proc/<pid>/stat
# utime+stime) -> queries/s per core, UDP receive-buffer drops in the namespace during the run
# (/proc/net/snmp Udp RcvbufErrors), and RSS.
#
# Same conditions for both: during its runs each server (every thread) is pinned to CPU 0 and
# dnsperf to CPU 1 (PIN=0 turns that off); port 53 on both servers' addresses is exempt from
# conntrack (knet's own `inet knet-dns` table for its addresses; the `inet dnsbench` table this
# script adds for CoreDNS's, as NodeLocal DNSCache would have it).
#
# Two query mixes, each run against both servers: every Service name once, shuffled ("cluster"),
# and 1000 external names ("external": name-N.ext.test), which both servers forward to the same
# upstream, Debian's BIND `named` in the node namespace on 169.254.53.54 (authoritative for
# ext.test, TTL 3600), and which are in both caches before the runs (a warm-up pass each). No
# traffic leaves the lab. EXTERNAL=0 skips the external runs.
#
# Usage (root, after `make deps` and `cargo build -p knet-lab` + release knet):
#   e2e/bench/dns.sh                 # 1k Services, 3 rounds of 15 s per server
#   SERVICES=10000 ENDPOINTS=5 e2e/bench/dns.sh
#   SERVICES=10000 ENDPOINTS=5 PODS=50000 e2e/bench/dns.sh   # + 50k Pods (e2e/bench/pods.py)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CACHE=${KNET_LAB_CACHE:-/var/cache/knet-lab}
CV=${COREDNS_VERSION:-v1.15.0}
SERVICES=${SERVICES:-1000}
ENDPOINTS=${ENDPOINTS:-0}   # per Service, in an EndpointSlice of its own (the Services are selectorless)
PODS=${PODS:-0}             # running Pods on a node without a kubelet (the endpoints' addresses)
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-15}
CLIENTS=${CLIENTS:-4}
THREADS=${THREADS:-2}       # dnsperf threads
PIN=${PIN:-1}               # servers on CPU 0, dnsperf on CPU 1
DNS_ONLY=${DNS_ONLY:-0}     # 1: knet runs only its dns feature (network, network-policy disabled)
EXTERNAL=${EXTERNAL:-1}     # also run cached external names (forwarded to a local named)
EXT_NAMES=1000
ID=dnsbench
NS=knetlab-$ID-node-1
RUN_ROOT=${KNET_LAB_RUN_ROOT:-/dev/shm/knetlab}
NODE_DIR=$RUN_ROOT/$ID/nodes/node-1
LAB=${KNET_LAB:-$ROOT/target/debug/knet-lab}
export KNET_BIN=${KNET_BIN:-$ROOT/target/release/knet}
KNET_DNS=10.152.183.10
CORE_IP=169.254.53.53
UPSTREAM_IP=169.254.53.54
WORK=$(mktemp -d /tmp/knet-dnsbench.XXXXXX)
log() { printf '[bench-dns] %s\n' "$*" >&2; }

# --- CoreDNS, built once per machine from its Go module -------------------------------
COREDNS=$CACHE/coredns-$CV/coredns
if [[ ! -x $COREDNS ]]; then
  log "building CoreDNS $CV"
  (cd "$HERE/coredns-wrapper" &&
    export GOTOOLCHAIN=local GOWORK=off GOFLAGS=-buildvcs=false CGO_ENABLED=0 \
      GOMODCACHE="$CACHE/gomod" GOCACHE="$CACHE/gocache" \
      GOPROXY=${GOPROXY:-https://proxy.golang.org,direct} &&
    mkdir -p "$(dirname "$COREDNS")" &&
    go build -p 2 -trimpath -ldflags='-s -w' -o "$COREDNS" github.com/coredns/coredns)
fi
command -v dnsperf >/dev/null || { log "dnsperf is not installed (apt-get install dnsperf)"; exit 1; }

CORE_PID=
cleanup() {
  set +e
  if [[ -n $CORE_PID ]] && kill -0 "$CORE_PID" 2>/dev/null; then
    kill "$CORE_PID"; for _ in $(seq 50); do kill -0 "$CORE_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$CORE_PID" 2>/dev/null
  fi
  if [[ -f $WORK/named/named.pid ]]; then kill "$(cat "$WORK/named/named.pid")" 2>/dev/null; fi
  [[ -n ${KEEP_LAB:-} ]] || timeout 120 "$LAB" --id $ID down >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT
trap "exit 130" INT TERM

# --- lab --------------------------------------------------------------------------------
log "starting lab $ID (knet: $KNET_BIN)"
timeout 300 "$LAB" --id $ID up --nodes 1 --knet >&2
eval "$("$LAB" --id $ID env | grep -E '^(export )?KUBECONFIG=')"
export KUBECONFIG
KUBECTL=$(ls -d "$CACHE"/bin-*/kubectl | head -1)
k() { timeout 120 "$KUBECTL" "$@"; }
# Socket load balancing must attach to the node's own lab cgroup, never the host's cgroup root
# (a knet-lab older than knet's --socket-lb-cgroup leaves knet's default, the root: rebuild it).
lbcg=$(cat "$NODE_DIR/state/socket-lb-cgroup" 2>/dev/null || echo off)
case $lbcg in
off | */knetlab-$ID/*) ;;
*) log "knet attached socket load balancing to $lbcg: rebuild knet-lab (make bench-dns does)"; exit 1 ;;
esac
knet_cli() {
  nsenter --net=/run/netns/$NS "$KNET_BIN" --state-dir "$NODE_DIR/state" --run-dir "$NODE_DIR/run" \
    --cni-conf-dir "$NODE_DIR/cni/net.d" --cni-bin-dir "$NODE_DIR/cni/bin" --node-name node-1 \
    --kubeconfig "$NODE_DIR/kubeconfig" "$@"
}
if [[ $DNS_ONLY == 1 ]]; then
  knet_cli disable network-policy >&2
  knet_cli disable network >&2
fi
inns() { nsenter --net=/run/netns/$NS "$@"; }

# --- Services ---------------------------------------------------------------------------
# The lab's service CIDR is a /24; a second ServiceCIDR makes room for 10k+ Services.
printf 'apiVersion: networking.k8s.io/v1\nkind: ServiceCIDR\nmetadata: {name: dnsbench}\nspec: {cidrs: ["10.153.0.0/16"]}\n' |
  k apply -f - >/dev/null
sleep 2
log "creating $SERVICES Services, $ENDPOINTS endpoints each"
t0=$(date +%s)
batch=500
for ((start = 0; start < SERVICES; start += batch)); do
  f=$WORK/svc-$start.yaml
  : >"$f"
  for ((i = start; i < start + batch && i < SERVICES; i++)); do
    printf -- '---\napiVersion: v1\nkind: Service\nmetadata: {name: svc-%d, namespace: default}\nspec: {ports: [{name: http, port: 80, protocol: TCP}]}\n' "$i" >>"$f"
    if ((ENDPOINTS > 0)); then
      # Endpoint addresses from 10.200.0.0 on: the pods behind each Service.
      printf -- '---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: svc-%d-1, namespace: default, labels: {kubernetes.io/service-name: svc-%d}}\naddressType: IPv4\nports: [{name: http, port: 8080, protocol: TCP}]\nendpoints:\n' "$i" "$i" >>"$f"
      for ((e = 0; e < ENDPOINTS; e++)); do
        n=$((i * ENDPOINTS + e))
        printf -- '- {addresses: ["10.%d.%d.%d"], conditions: {ready: true}}\n' $((200 + n / 65536)) $((n / 256 % 256)) $((n % 256)) >>"$f"
      done
    fi
  done
  echo "$f"
done | xargs -P 2 -I{} timeout 600 "$KUBECTL" create -f {} >/dev/null
log "created in $(($(date +%s) - t0)) s"
if ((PODS > 0)); then
  ((ENDPOINTS > 0)) || { log "PODS needs ENDPOINTS > 0 (the Pods take the endpoints' addresses)"; exit 1; }
  # The Pods behind those endpoints, Running with the endpoints' addresses, bound to a Node
  # object that no kubelet serves (the lab's kubelet runs only its own nodes' Pods), as the
  # Pods of the rest of a large cluster look to this node.
  printf 'apiVersion: v1\nkind: Node\nmetadata: {name: bench-phantom}\n' | k apply -f - >/dev/null
  log "creating $PODS Pods on node bench-phantom"
  python3 "$HERE/pods.py" "$KUBECONFIG" bench-phantom "$PODS" "$ENDPOINTS" >&2
fi

# --- CoreDNS, as kubeadm ships it --------------------------------------------------------
# CoreDNS runs in the node namespace, so it reaches the API server the way the node does:
# the admin credentials with the node kubeconfig's server address.
node_server=$(awk '/server:/ {print $2; exit}' "$(dirname "$KUBECONFIG")/nodes/node-1/kubeconfig")
sed "s#server: .*#server: $node_server#" "$KUBECONFIG" >"$WORK/coredns.kubeconfig"
inns ip addr add $CORE_IP/32 dev lo 2>/dev/null || true
inns ip addr add $UPSTREAM_IP/32 dev lo 2>/dev/null || true
inns ip link set lo up
# CoreDNS's address gets what knet's get from knet's own `inet knet-dns` table: no conntrack
# for port 53 (as NodeLocal DNSCache sets it up), so both servers run under the same conditions.
inns nft -f - <<NFT
table inet dnsbench {
  chain prerouting {
    type filter hook prerouting priority raw; policy accept;
    ip daddr $CORE_IP meta l4proto { tcp, udp } th dport 53 notrack
  }
  chain output {
    type filter hook output priority raw; policy accept;
    ip saddr $CORE_IP meta l4proto { tcp, udp } th sport 53 notrack
    ip daddr $CORE_IP meta l4proto { tcp, udp } th dport 53 notrack
  }
}
NFT
inns nft list table inet knet-dns >/dev/null || { log "knet's NOTRACK table inet knet-dns is missing"; exit 1; }
cat >"$WORK/Corefile" <<EOF
.:53 {
    bind $CORE_IP
    errors
    health {
       lameduck 5s
    }
    ready 127.0.0.1:8181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
       kubeconfig $WORK/coredns.kubeconfig
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    forward . $UPSTREAM_IP {
       max_concurrent 1000
    }
    cache 30
    loop
    reload
    loadbalance
}
EOF
# --- the upstream: named, authoritative for ext.test ---------------------------------------
mkdir -p "$WORK/named"
cat >"$WORK/named/named.conf" <<EOF
options {
  directory "$WORK/named";
  pid-file "$WORK/named/named.pid";
  session-keyfile "$WORK/named/session.key";
  managed-keys-directory "$WORK/named";
  listen-on port 53 { $UPSTREAM_IP; };
  listen-on-v6 { none; };
  recursion no;
  dnssec-validation no;
  allow-query { any; };
};
controls { };
zone "ext.test" { type primary; file "$WORK/named/ext.test.zone"; };
EOF
printf '$TTL 3600\n@ IN SOA ns.ext.test. admin.ext.test. 1 3600 600 86400 3600\n@ IN NS ns.ext.test.\nns IN A %s\n* IN A 192.0.2.77\n' \
  "$UPSTREAM_IP" >"$WORK/named/ext.test.zone"
inns /usr/sbin/named -c "$WORK/named/named.conf" || { log "named did not start"; exit 1; }
if [[ $EXTERNAL == 1 ]]; then
  knet_cli set dns.upstream-nameservers=$UPSTREAM_IP >&2
fi

log "starting CoreDNS $CV in $NS on $CORE_IP:53"
nsenter --net=/run/netns/$NS "$COREDNS" -conf "$WORK/Corefile" >"$WORK/coredns.log" 2>&1 &
CORE_PID=$!

# --- wait until both answer the last Service (and its last endpoint) ----------------------
last=svc-$((SERVICES - 1)).default.svc.cluster.local
if ((ENDPOINTS > 0)); then
  n=$((SERVICES * ENDPOINTS - 1))
  last=10-$((200 + n / 65536))-$((n / 256 % 256))-$((n % 256)).$last
fi
ready() { inns timeout 3 dig +short +time=1 +tries=1 @"$1" "$last" A 2>/dev/null | grep -qE '^[0-9]+\.'; }
for srv in $KNET_DNS $CORE_IP; do
  ok=
  for _ in $(seq 120); do
    if ready $srv; then ok=1; break; fi
    kill -0 "$CORE_PID" 2>/dev/null || { cat "$WORK/coredns.log" >&2; log "CoreDNS exited"; exit 1; }
    sleep 1
  done
  [[ -n $ok ]] || { log "$srv never answered $last"; tail -20 "$WORK/coredns.log" >&2; exit 1; }
  if [[ $EXTERNAL == 1 ]]; then
    ok=
    for _ in $(seq 30); do
      if [[ $(inns dig +short +time=1 +tries=1 @"$srv" name-0.ext.test A 2>/dev/null) == 192.0.2.77 ]]; then ok=1; break; fi
      sleep 1
    done
    [[ -n $ok ]] || { log "$srv never forwarded name-0.ext.test to the upstream named"; exit 1; }
  fi
done

# --- pids and CPU accounting -------------------------------------------------------------
KNET_PID=$(cat "$NODE_DIR/run/knet-daemon.pid" 2>/dev/null || true)
# (never `kill -0 0`: that is this script's own process group)
if [[ -z $KNET_PID ]] || ! kill -0 "$KNET_PID" 2>/dev/null; then
  KNET_PID=$(pgrep -f -- " daemon --state-dir $NODE_DIR/" | head -1 || true)
fi
[[ -n $KNET_PID ]] || { log "cannot find the knet daemon in $NS"; exit 1; }
TCK=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }     # utime + stime, clock ticks
rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }  # kB

# Query files: every Service once, shuffled; the external names once, shuffled.
for ((i = 0; i < SERVICES; i++)); do echo "svc-$i.default.svc.cluster.local A"; done | shuf >"$WORK/cluster"
for ((i = 0; i < EXT_NAMES; i++)); do echo "name-$i.ext.test A"; done | shuf >"$WORK/external"
KINDS=(cluster)
if [[ $EXTERNAL == 1 ]]; then
  KINDS+=(external)
  for srv in $KNET_DNS $CORE_IP; do # warm both caches: every external name once
    inns dnsperf -s "$srv" -d "$WORK/external" -n 1 -q 50 -t 2 >/dev/null 2>&1
  done
fi

# UDP receive-buffer drops in the node namespace (any socket: a server's or dnsperf's).
rcvbuf_errors() {
  inns awk '/^Udp:/ { if (!h) { for (i = 1; i <= NF; i++) c[$i] = i; h = 1 } else print $c["RcvbufErrors"] }' /proc/net/snmp
}
pin() { [[ $PIN == 1 ]] && taskset -a -cp "$2" "$1" >/dev/null || true; } # pid cpus: every thread
DNSPERF=(dnsperf)
[[ $PIN == 1 ]] && DNSPERF=(taskset -c 1 dnsperf)

run() { # name ip pid kind
  local name=$1 ip=$2 pid=$3 kind=$4 c0 c1 d0 d1 out qps lost lat cpus
  pin "$pid" 0
  c0=$(cpu "$pid")
  d0=$(rcvbuf_errors)
  out=$(inns timeout $((DURATION + 30)) "${DNSPERF[@]}" -s "$ip" -d "$WORK/$kind" -l "$DURATION" -c "$CLIENTS" -T "$THREADS" -t 2 -q 200 2>&1) || true
  c1=$(cpu "$pid")
  d1=$(rcvbuf_errors)
  pin "$pid" "0-$(($(nproc) - 1))"
  if ! grep -q "Queries per second" <<<"$out"; then
    log "$name $kind: dnsperf did not finish within $((DURATION + 30)) s; run left out: $(tail -3 <<<"$out")"
    return 0
  fi
  qps=$(awk '/Queries per second/ {print $4}' <<<"$out")
  lost=$(awk '/Queries lost/ {print $3}' <<<"$out")
  lat=$(awk '/Average Latency/ {print $4 * 1000}' <<<"$out")
  cpus=$(awk -v a="$c0" -v b="$c1" -v t="$TCK" -v d="$DURATION" 'BEGIN {printf "%.2f", (b - a) / t / d}')
  printf '%-8s %-8s %10.0f %6s %10.3f %6s %12s %8s %8s\n' "$name" "$kind" "$qps" "$lost" "$lat" "$cpus" \
    "$(awk -v q="$qps" -v c="$cpus" 'BEGIN {if (c > 0) printf "%.0f", q / c; else print "-"}')" \
    "$((d1 - d0))" "$(($(rss "$pid") / 1024))" | tee -a "$WORK/results"
}

echo
echo "DNS: knet (pid $KNET_PID, $KNET_DNS, $([[ $DNS_ONLY == 1 ]] && echo "dns feature only" || echo "all default features")) vs CoreDNS $CV (pid $CORE_PID, $CORE_IP);"
echo "$SERVICES Services, $ENDPOINTS endpoints each, $PODS Pods;"
echo "dnsperf $(dpkg-query -W -f="\${Version}" dnsperf 2>/dev/null) -c $CLIENTS -T $THREADS -q 200, ${DURATION} s per run, $(nproc) cores, pinned: $PIN, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "RSS before the runs: knet $(($(rss "$KNET_PID") / 1024)) MB, CoreDNS $(($(rss "$CORE_PID") / 1024)) MB"
printf '%-8s %-8s %10s %6s %10s %6s %12s %8s %8s\n' server names qps lost avg_ms cores qps/core rcvbuf rss_MB
for ((r = 1; r <= ROUNDS; r++)); do
  for kind in "${KINDS[@]}"; do
    run knet $KNET_DNS "$KNET_PID" "$kind"
    run coredns $CORE_IP "$CORE_PID" "$kind"
  done
done
echo "load after the runs: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
awk '{k = $1 " " $2; q[k] += $3; l[k] += $4; c[k] += $6; d[k] += $8; n[k]++; if ($9 > m[$1]) m[$1] = $9}
     END {for (k in q) printf "%-16s mean qps %.0f, lost %d, rcvbuf drops %d, qps/core %.0f\n", k, q[k]/n[k], l[k], d[k], q[k]/c[k]
          for (s in m) printf "%-8s max RSS %d MB\n", s, m[s]
          split("cluster external", kinds, " ")
          for (i in kinds) { a = "knet " kinds[i]; b = "coredns " kinds[i]
            if (c[a] > 0 && c[b] > 0) printf "knet/CoreDNS qps per core, %s names: %.2fx\n", kinds[i], (q[a]/c[a]) / (q[b]/c[b]) }}' "$WORK/results"
