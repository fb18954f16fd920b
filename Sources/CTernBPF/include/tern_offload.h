/* The kernel fast path's map layout, shared by the BPF program (bpf/tern_relay.bpf.c) and Tern's
 * control plane (Sources/TernIO/Offload). Addresses and ports are in network byte order, exactly as
 * they sit in the packet, so the program compares and copies them without converting. IPv4 only:
 * IPv6 ChannelData stays on the user-space path. */
#ifndef TERN_OFFLOAD_H
#define TERN_OFFLOAD_H

#ifdef __bpf__
#include <linux/types.h>
typedef __u16 tern_u16;
typedef __u32 tern_u32;
typedef __u64 tern_u64;
#else
#include <stdint.h>
typedef uint16_t tern_u16;
typedef uint32_t tern_u32;
typedef uint64_t tern_u64;
#endif

/* Client to peer: a ChannelData datagram from `client` to Tern's listener `server` on `channel`. */
struct tern_client_key {
    tern_u32 client_ip;
    tern_u32 server_ip;
    tern_u16 client_port;
    tern_u16 server_port;
    tern_u16 channel;      /* host byte order, as user space bound it */
    tern_u16 pad;
};

/* Peer to client: a datagram from `peer` to the relay address `relay`. */
struct tern_peer_key {
    tern_u32 peer_ip;
    tern_u32 relay_ip;
    tern_u16 peer_port;
    tern_u16 relay_port;
};

/* Where a matched datagram goes, until when, and what it has carried. The counters are added to
 * atomically by the program and only read by user space, which sums the growth into the
 * allocation's own counters. */
struct tern_entry {
    tern_u32 from_ip;      /* new source: the relay address (to peer) or the listener (to client) */
    tern_u32 to_ip;        /* new destination: the peer or the client */
    tern_u16 from_port;
    tern_u16 to_port;
    tern_u16 channel;      /* to client: the channel number to prepend (host order); to peer: 0 */
    tern_u16 flags;        /* TERN_ENTRY_LOCAL: the destination is this host's (relayed from lo only) */
    tern_u32 ifindex;      /* otherwise the device towards the destination (bpf_redirect_neigh) */
    tern_u32 pad;
    tern_u64 expiry_ns;    /* CLOCK_MONOTONIC (bpf_ktime_get_ns): at or past it, the program passes */
    tern_u64 allocation;   /* the allocation's id: its bandwidth budget in `tern_budgets` */
    tern_u64 packets;
    tern_u64 bytes;        /* payload bytes, as user space counts them */
    tern_u64 dropped_bandwidth;
};

/* One allocation's bandwidth budget (limits.bandwidthPerAllocation), shared by both directions:
 * `rate` bytes per monotonic second, as the user-space path spends it. rate 0: unlimited. */
struct tern_budget {
    tern_u64 rate;
    tern_u64 second;
    tern_u64 used;
};

/* Why the program passed or dropped what looked like relay traffic (a per-CPU array, summed). */
enum tern_offload_stat {
    TERN_STAT_RELAYED_TO_PEER = 0,
    TERN_STAT_RELAYED_TO_CLIENT,
    TERN_STAT_PASSED_EXPIRED,
    TERN_STAT_PASSED_LENGTH,
    TERN_STAT_PASSED_ROUTE,
    TERN_STAT_DROPPED_BANDWIDTH,
    TERN_STAT_COUNT
};

#define TERN_ENTRY_LOCAL 1

#define TERN_OFFLOAD_MAX_ENTRIES 262144
#define TERN_OFFLOAD_MAX_BUDGETS 131072

#endif
