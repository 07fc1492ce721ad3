// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// knet socket-level load balancing: cgroup sock_addr hooks that rewrite a ClusterIP:port to a
// backend when a socket connects (TCP, connected UDP) or sends (unconnected UDP), and rewrite
// the backend back to the ClusterIP when the application asks who its peer is (getpeername)
// or where a datagram came from (recvmsg). No per-packet NAT: the connection is made straight
// to the backend. Maps are filled by knet-network from the same service model as nftables;
// a ClusterIP that is not in the map (no endpoints, affinity, ...) is left to nftables.
//
// Built by features/network/build.rs with `clang -O2 -g -target bpf`.

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define MAX_SERVICES 65536
#define MAX_BACKENDS 262144
#define MAX_REVNAT 262144

// Slot 0 of a service holds the backend count; slots 1..count hold the backends.
struct svc_key4 {
	__u32 ip;	// network order
	__u16 port;	// network order
	__u8 proto;	// IPPROTO_TCP / IPPROTO_UDP
	__u8 pad;
	__u32 slot;
};

struct svc_val4 {
	__u32 ip;	// backend, network order
	__u16 port;	// backend, network order
	__u16 count;	// slot 0: number of backends
};

struct svc_key6 {
	__u32 ip[4];
	__u16 port;
	__u8 proto;
	__u8 pad;
	__u32 slot;
};

struct svc_val6 {
	__u32 ip[4];
	__u16 port;
	__u16 count;
};

// What a socket was translated to, so replies can be shown as coming from the service.
struct rev_key4 {
	__u64 cookie;
	__u32 ip;
	__u16 port;
	__u16 pad;
};

struct rev_val4 {
	__u32 ip;
	__u16 port;
	__u16 pad;
};

struct rev_key6 {
	__u64 cookie;
	__u32 ip[4];
	__u16 port;
	__u16 pad[3];
};

struct rev_val6 {
	__u32 ip[4];
	__u16 port;
	__u16 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_BACKENDS);
	__type(key, struct svc_key4);
	__type(value, struct svc_val4);
} knet_svc_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_BACKENDS);
	__type(key, struct svc_key6);
	__type(value, struct svc_val6);
} knet_svc_v6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MAX_REVNAT);
	__type(key, struct rev_key4);
	__type(value, struct rev_val4);
} knet_rev_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MAX_REVNAT);
	__type(key, struct rev_key6);
	__type(value, struct rev_val6);
} knet_rev_v6 SEC(".maps");

static __always_inline void xlate4(struct bpf_sock_addr *ctx)
{
	struct svc_key4 key = {};
	key.ip = ctx->user_ip4;
	key.port = (__u16)ctx->user_port;
	key.proto = (__u8)ctx->protocol;
	struct svc_val4 *svc = bpf_map_lookup_elem(&knet_svc_v4, &key);
	if (!svc || svc->count == 0)
		return;
	key.slot = (bpf_get_prandom_u32() % svc->count) + 1;
	struct svc_val4 *be = bpf_map_lookup_elem(&knet_svc_v4, &key);
	if (!be)
		return;
	struct rev_key4 rk = {};
	rk.cookie = bpf_get_socket_cookie(ctx);
	rk.ip = be->ip;
	rk.port = be->port;
	struct rev_val4 rv = {};
	rv.ip = key.ip;
	rv.port = key.port;
	bpf_map_update_elem(&knet_rev_v4, &rk, &rv, BPF_ANY);
	ctx->user_ip4 = be->ip;
	ctx->user_port = (__u32)be->port;
}

static __always_inline void rev4(struct bpf_sock_addr *ctx)
{
	struct rev_key4 rk = {};
	rk.cookie = bpf_get_socket_cookie(ctx);
	rk.ip = ctx->user_ip4;
	rk.port = (__u16)ctx->user_port;
	struct rev_val4 *rv = bpf_map_lookup_elem(&knet_rev_v4, &rk);
	if (!rv)
		return;
	ctx->user_ip4 = rv->ip;
	ctx->user_port = (__u32)rv->port;
}

static __always_inline void xlate6(struct bpf_sock_addr *ctx)
{
	struct svc_key6 key = {};
	key.ip[0] = ctx->user_ip6[0];
	key.ip[1] = ctx->user_ip6[1];
	key.ip[2] = ctx->user_ip6[2];
	key.ip[3] = ctx->user_ip6[3];
	key.port = (__u16)ctx->user_port;
	key.proto = (__u8)ctx->protocol;
	struct svc_val6 *svc = bpf_map_lookup_elem(&knet_svc_v6, &key);
	if (!svc || svc->count == 0)
		return;
	key.slot = (bpf_get_prandom_u32() % svc->count) + 1;
	struct svc_val6 *be = bpf_map_lookup_elem(&knet_svc_v6, &key);
	if (!be)
		return;
	struct rev_key6 rk = {};
	rk.cookie = bpf_get_socket_cookie(ctx);
	rk.ip[0] = be->ip[0];
	rk.ip[1] = be->ip[1];
	rk.ip[2] = be->ip[2];
	rk.ip[3] = be->ip[3];
	rk.port = be->port;
	struct rev_val6 rv = {};
	rv.ip[0] = key.ip[0];
	rv.ip[1] = key.ip[1];
	rv.ip[2] = key.ip[2];
	rv.ip[3] = key.ip[3];
	rv.port = key.port;
	bpf_map_update_elem(&knet_rev_v6, &rk, &rv, BPF_ANY);
	ctx->user_ip6[0] = be->ip[0];
	ctx->user_ip6[1] = be->ip[1];
	ctx->user_ip6[2] = be->ip[2];
	ctx->user_ip6[3] = be->ip[3];
	ctx->user_port = (__u32)be->port;
}

static __always_inline void rev6(struct bpf_sock_addr *ctx)
{
	struct rev_key6 rk = {};
	rk.cookie = bpf_get_socket_cookie(ctx);
	rk.ip[0] = ctx->user_ip6[0];
	rk.ip[1] = ctx->user_ip6[1];
	rk.ip[2] = ctx->user_ip6[2];
	rk.ip[3] = ctx->user_ip6[3];
	rk.port = (__u16)ctx->user_port;
	struct rev_val6 *rv = bpf_map_lookup_elem(&knet_rev_v6, &rk);
	if (!rv)
		return;
	ctx->user_ip6[0] = rv->ip[0];
	ctx->user_ip6[1] = rv->ip[1];
	ctx->user_ip6[2] = rv->ip[2];
	ctx->user_ip6[3] = rv->ip[3];
	ctx->user_port = (__u32)rv->port;
}

SEC("cgroup/connect4")
int knet_connect4(struct bpf_sock_addr *ctx)
{
	xlate4(ctx);
	return 1;
}

SEC("cgroup/sendmsg4")
int knet_sendmsg4(struct bpf_sock_addr *ctx)
{
	xlate4(ctx);
	return 1;
}

SEC("cgroup/recvmsg4")
int knet_recvmsg4(struct bpf_sock_addr *ctx)
{
	rev4(ctx);
	return 1;
}

SEC("cgroup/getpeername4")
int knet_getpeername4(struct bpf_sock_addr *ctx)
{
	rev4(ctx);
	return 1;
}

SEC("cgroup/connect6")
int knet_connect6(struct bpf_sock_addr *ctx)
{
	xlate6(ctx);
	return 1;
}

SEC("cgroup/sendmsg6")
int knet_sendmsg6(struct bpf_sock_addr *ctx)
{
	xlate6(ctx);
	return 1;
}

SEC("cgroup/recvmsg6")
int knet_recvmsg6(struct bpf_sock_addr *ctx)
{
	rev6(ctx);
	return 1;
}

SEC("cgroup/getpeername6")
int knet_getpeername6(struct bpf_sock_addr *ctx)
{
	rev6(ctx);
	return 1;
}

char _license[] SEC("license") = "Dual BSD/GPL";
