#!/usr/bin/env bash
# The main job: a 2-node lab with knet bootstrapped on each node, a small app deployed, and
# traffic shown flowing (pod to pod across nodes, through a ClusterIP Service by DNS name, and
# through a NodePort). Leaves the lab running and prints how to use and remove it.
# Run through `make demo` (which builds the binaries and the control plane first). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."

ID=${KNET_DEMO_ID:-demo}
LAB=target/debug/knet-lab
KNET=$PWD/target/debug/knet
RUN_ROOT=${KNET_LAB_RUN_ROOT:-/dev/shm/knetlab}
PREFIX=knetlab-$ID-
step_name=""

step() { step_name=$1; printf '\n\033[1m==> %s\033[0m\n' "$1"; }
fail() { printf '\n\033[31mdemo failed at step "%s": %s\033[0m\n' "$step_name" "$1" >&2; exit 1; }
trap 'fail "command exited with $? (see output above)"' ERR

[[ $EUID -eq 0 ]] || { echo "the demo needs root (network namespaces): run it with sudo" >&2; exit 1; }
[[ -x $LAB && -x $KNET ]] || { echo "build first: make demo" >&2; exit 1; }

step "starting a 2-node lab (real etcd, kube-apiserver, controller-manager, scheduler) with knet bootstrapped on each node"
"$LAB" --id "$ID" down >/dev/null 2>&1 || true
KNET_LAB_LOG=warn "$LAB" --id "$ID" up --nodes 2 --knet
eval "$("$LAB" --id "$ID" env | grep '^export')"

step "knet status on each node"
for n in node-1 node-2; do
  echo "--- $n"
  d=$RUN_ROOT/$ID/nodes/$n
  nsenter --net=/run/netns/${PREFIX}$n "$KNET" --state-dir "$d/state" --run-dir "$d/run" status
done

step "deploying the app: 4 agnhost web pods behind Service web (ClusterIP + NodePort 30080), and a client pod"
kubectl apply -f - >/dev/null <<'YAML'
apiVersion: v1
kind: Namespace
metadata: {name: demo}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: demo}
spec:
  replicas: 4
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: registry.k8s.io/e2e-test-images/agnhost:2.53
        args: [netexec, --http-port=8080]
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 2}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: demo}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http, nodePort: 30080}]
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: demo}
spec:
  nodeName: node-1
  containers:
  - name: client
    image: registry.k8s.io/e2e-test-images/agnhost:2.53
    args: [pause]
YAML
kubectl -n demo rollout status deployment/web --timeout=120s
kubectl -n demo wait --for=condition=Ready pod/client --timeout=60s >/dev/null
kubectl -n demo get pods -o wide

client_ns=${PREFIX}pod-$(kubectl -n demo get pod client -o jsonpath='{.metadata.uid}')
in_client() { ip netns exec "$client_ns" "$@"; }

step "pod to pod, same node and across nodes (each web pod answers with its name)"
for pod in $(kubectl -n demo get pods -l app=web -o jsonpath='{range .items[*]}{.metadata.name}={.status.podIP} {end}'); do
  name=${pod%%=*} ip=${pod#*=}
  got=$(in_client curl -sS --max-time 5 "http://$ip:8080/hostname")
  printf '  client -> %-12s : %s\n' "$ip" "$got"
  [[ $got == "$name" ]] || fail "$ip answered \"$got\", not $name"
done

step "resolving the Service by name from the client pod (knet's DNS on the node)"
cluster_ip=$(kubectl -n demo get svc web -o jsonpath='{.spec.clusterIP}')
got=$(in_client dig +short +search web.demo.svc.cluster.local)
echo "  web.demo.svc.cluster.local -> $got"
[[ $got == "$cluster_ip" ]] || fail "web resolved to \"$got\", not its ClusterIP $cluster_ip"
got=$(in_client dig +short +search kubernetes.default)
echo "  kubernetes.default (search path) -> $got"
[[ $got == "$(kubectl get svc kubernetes -o jsonpath='{.spec.clusterIP}')" ]] || fail "kubernetes.default resolved to \"$got\""

step "through the ClusterIP by name, 8 requests spread over the endpoints (knet's service dataplane, no kube-proxy)"
answers=$(for _ in $(seq 8); do in_client curl -sS --max-time 5 http://web.demo/hostname; echo; done)
sort <<<"$answers" | uniq -c
[[ $(grep -c '^web-' <<<"$answers") -eq 8 ]] || fail "not every request through the ClusterIP reached a web pod"

step "through the NodePort from node-2's host namespace"
node1=$(kubectl get node node-1 -o jsonpath='{.status.addresses[?(@.type=="InternalIP")].address}')
node1=${node1%% *}   # the IPv4 address (nodes are dual-stack on the underlay)
answers=$(for _ in $(seq 4); do ip netns exec "${PREFIX}node-2" curl -sS --max-time 5 "http://$node1:30080/hostname"; echo; done)
sort <<<"$answers" | uniq -c
[[ $(grep -c '^web-' <<<"$answers") -eq 4 ]] || fail "not every request through NodePort $node1:30080 reached a web pod"

trap - ERR
cat <<EOF2

The lab is still running.
  kubectl:          export KUBECONFIG=$KUBECONFIG PATH=$(dirname "$(command -v kubectl)"):\$PATH
  enter a node:     nsenter --net=/run/netns/${PREFIX}node-1 bash
  knet on a node:   nsenter --net=/run/netns/${PREFIX}node-1 $KNET --state-dir $RUN_ROOT/$ID/nodes/node-1/state --run-dir $RUN_ROOT/$ID/nodes/node-1/run status
  tear it down:     make demo-down
EOF2
