# knet developer entry points. Targets are self-contained; each team adds its
# own (keep them independent of each other).

CARGO ?= cargo
KNET_LAB_ID ?= dev
LAB_NODES ?= 2

.PHONY: deps test demo demo-down lab-bins lab-up lab-down

# --- the lab (e2e/) ---------------------------------------------------------

# Build etcd + the Kubernetes control plane, kubectl and agnhost into
# /var/cache/knet-lab (a no-op when already built; ~30-40 min cold).
lab-bins:
	e2e/control-plane/build.sh

# Start a background dev lab (KNET_LAB_ID, LAB_NODES; LAB_KNET=1 runs knet on
# the nodes) and print how to use it. Needs root.
lab-up: lab-bins
	$(CARGO) build -p knet-e2e --bin knet-lab
	$(if $(LAB_KNET),$(CARGO) build -p knet,)
	target/debug/knet-lab --id $(KNET_LAB_ID) up --nodes $(LAB_NODES) $(if $(LAB_KNET),--knet,)

# Stop the dev lab and remove everything it created.
lab-down:
	$(CARGO) build -p knet-e2e --bin knet-lab
	target/debug/knet-lab --id $(KNET_LAB_ID) down

# --- the two README commands -----------------------------------------------

# Install what is missing (Debian packages, the lab's control plane), once.
deps:
	e2e/install-deps.sh

# Every test: unit, integration (real kernel, as root) and the lab's end-to-end tests.
test: deps
	$(CARGO) build --workspace --all-targets
	$(CARGO) test --workspace --no-fail-fast -- --test-threads=1

# The main job: a 2-node lab with knet bootstrapped on each node and traffic flowing.
demo: deps
	$(CARGO) build -p knet -p knet-e2e
	e2e/demo.sh

demo-down:
	$(CARGO) build -p knet-e2e --bin knet-lab
	target/debug/knet-lab --id demo down

# --- benchmarks: pod networking (docs/benchmarks.md, "Pod networking") -------

# CNI ADD/DEL latency (knet vs bridge + host-local) and cross-node iperf3 throughput (native and
# vxlan vs node-to-node and a hand-built kernel baseline), in the lab, with the release knet (the
# harness itself is a debug test). Needs root and `make deps`; prints tables.
.PHONY: bench-network
bench-network: deps
	$(CARGO) build --release -p knet
	KNET_BIN=$(CURDIR)/target/release/knet $(CARGO) test -p knet --test bench_network -- --ignored --nocapture --test-threads=1

# --- benchmarks: services (docs/benchmarks.md, "Services") -------------------

# Rule programming at 1k/10k/30k Services and a one-endpoint change, and new-connection rate
# to a pod IP vs a ClusterIP (nftables, eBPF socket LB) at 0 and 10k Services, in namespaces
# the test creates; release build. Needs root; prints tables.
.PHONY: bench-services
bench-services:
	$(CARGO) test --release -p knet-network --test services_bench -- --ignored --nocapture --test-threads=1

# Rule programming against kube-proxy in nftables mode (the lab's v1.37 build) in the same run,
# from the same API objects, in a 1-node lab: 1k/10k/30k Services and a one-endpoint change.
# Needs root and the lab (make deps); takes about half an hour (creating 30k Services).
.PHONY: bench-services-kube-proxy
bench-services-kube-proxy: deps
	$(CARGO) test --release -p knet --test node services::bench -- --ignored --nocapture --test-threads=1

# --- benchmarks: DNS (docs/benchmarks.md, "DNS") ------------------------------

# knet's DNS vs CoreDNS (built from its Go module, Corefile as kubeadm ships it, watching the
# same API server) in one lab, same run: dnsperf from the node namespace against each in turn,
# 1k Services (SERVICES=10000 for 10k). Needs root, `make deps` and Debian's dnsperf; prints a table.
.PHONY: bench-dns
bench-dns: deps
	$(CARGO) build --release -p knet
	$(CARGO) build -p knet-e2e --bin knet-lab
	KNET_BIN=$(CURDIR)/target/release/knet e2e/bench/dns.sh
