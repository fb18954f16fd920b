// SPDX-License-Identifier: GPL-2.0
/* Tern's kernel fast path: a TC classifier that relays TURN ChannelData over UDP/IPv4 both ways
 * (RFC 8656 section 12) for the channels Tern's control plane has written into its maps.
 *
 * It is a cache of decisions user space made, never a second TURN implementation: a datagram is
 * relayed only when its exact 5-tuple (and, from a client, its channel number) has a live entry.
 * Everything else is passed on untouched (TC_ACT_UNSPEC) and reaches Tern's sockets as before: STUN messages,
 * Send and Data indications, unknown channels, expired entries, padded or mis-sized ChannelData,
 * fragments, IP options, GSO packets, IPv6, TCP, TLS and DTLS.
 *
 * Built by the normal `swift build` (Plugins/BPFObject) with clang's BPF target; the object is
 * embedded in the tern binary and loaded through libbpf (Sources/TernIO/Offload). */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "tern_offload.h"

/* The kernel allows helpers such as bpf_redirect_neigh only to GPL-compatible programs. */
char LICENSE[] SEC("license") = "GPL";

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, TERN_OFFLOAD_MAX_ENTRIES);
    __type(key, struct tern_client_key);
    __type(value, struct tern_entry);
} tern_to_peer SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, TERN_OFFLOAD_MAX_ENTRIES);
    __type(key, struct tern_peer_key);
    __type(value, struct tern_entry);
} tern_to_client SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, TERN_OFFLOAD_MAX_BUDGETS);
    __type(key, __u64);
    __type(value, struct tern_budget);
} tern_budgets SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, TERN_STAT_COUNT);
    __type(key, __u32);
    __type(value, __u64);
} tern_stats SEC(".maps");

/* "Not mine": TC_ACT_UNSPEC lets the next program on the hook (TCX's TCX_NEXT), or else the stack,
 * have the packet, so several classifiers (another Tern, a CNI's) can share a device. */
#define PASS TC_ACT_UNSPEC
#define CHANNEL_HEADER 4
#define LOOPBACK_IFINDEX 1
#define IP_MF 0x2000
#define IP_OFFSET 0x1fff

static __always_inline void count(__u32 which)
{
    __u64 *v = bpf_map_lookup_elem(&tern_stats, &which);
    if (v)
        *v += 1;
}

/* One's complement arithmetic on 16-bit words as they sit in the packet (RFC 1071; the sum does
 * not depend on byte order as long as every word is taken the same way). */
static __always_inline __u32 add16(__u32 sum, __u16 word) { return sum + word; }
static __always_inline __u32 sub16(__u32 sum, __u16 word) { return sum + (__u16)~word; }
static __always_inline __u32 add32(__u32 sum, __u32 word) { return sum + (word & 0xffff) + (word >> 16); }
static __always_inline __u32 sub32(__u32 sum, __u32 word) { return sub16(sub16(sum, word & 0xffff), word >> 16); }
static __always_inline __u16 fold(__u32 sum)
{
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    return (__u16)sum;
}

static __always_inline void ip_checksum(struct iphdr *ip)
{
    __u16 *w = (__u16 *)ip;
    __u32 sum = 0;
    ip->check = 0;
#pragma unroll
    for (int i = 0; i < 10; i++)
        sum += w[i];
    ip->check = (__u16)~fold(sum);
}

/* limits.bandwidthPerAllocation, as the user-space path spends it: `rate` bytes of payload per
 * monotonic second, both directions together; a datagram that does not fit is dropped and counted. */
static __always_inline int spend(__u64 allocation, __u64 bytes, __u64 now)
{
    struct tern_budget *b = bpf_map_lookup_elem(&tern_budgets, &allocation);
    if (!b || b->rate == 0)
        return 1;
    __u64 second = now / 1000000000ULL;
    if (b->second != second) {
        b->second = second;
        b->used = 0;
    }
    __u64 used = __sync_fetch_and_add(&b->used, bytes) + bytes;
    if (used > b->rate) {
        __sync_fetch_and_sub(&b->used, bytes);
        return 0;
    }
    return 1;
}

/* Sends the rewritten datagram on. To this host's own address it goes on up the stack from lo's
 * ingress, with the route lo's output path already gave it (a datagram redirected into lo would be
 * routed afresh and dropped as martian); to another host, out of the device user space chose, with
 * the kernel's neighbour table filling in the link-layer header. */
static __always_inline int deliver(struct __sk_buff *skb, const struct tern_entry *e)
{
    if (e->flags & TERN_ENTRY_LOCAL)
        return TC_ACT_OK;
    return bpf_redirect_neigh(e->ifindex, NULL, 0, 0);
}

/* Whether `deliver` can take the datagram from here: this host's addresses are reached only from
 * lo (a client or peer on another device sending to a local one is left to user space). */
static __always_inline int routable(struct __sk_buff *skb, const struct tern_entry *e)
{
    return !(e->flags & TERN_ENTRY_LOCAL) || skb->ifindex == LOOPBACK_IFINDEX;
}

/* Writes the new IPv4 addresses, length and header checksum. */
static __always_inline void rewrite_ip(struct iphdr *ip, const struct tern_entry *e, __u16 tot_len)
{
    ip->saddr = e->from_ip;
    ip->daddr = e->to_ip;
    ip->tot_len = bpf_htons(tot_len);
    ip->ttl = 64;
    ip_checksum(ip);
}

/* RFC 8656 section 12.5 over UDP: a peer's datagram to a relay address whose peer has a channel
 * goes to the client as ChannelData, without padding (optional over UDP). */
static __always_inline int to_client(struct __sk_buff *skb, struct iphdr *ip, struct udphdr *udp)
{
    struct tern_peer_key key = {
        .peer_ip = ip->saddr, .relay_ip = ip->daddr,
        .peer_port = udp->source, .relay_port = udp->dest,
    };
    struct tern_entry *e = bpf_map_lookup_elem(&tern_to_client, &key);
    if (!e)
        return PASS;
    __u16 udp_len = bpf_ntohs(udp->len);
    if (udp_len < sizeof(*udp) || udp_len > 0xffff - sizeof(*ip) - CHANNEL_HEADER ||
        bpf_ntohs(ip->tot_len) != sizeof(*ip) + udp_len) {
        count(TERN_STAT_PASSED_LENGTH);
        return PASS;
    }
    __u64 now = bpf_ktime_get_ns();
    if (now >= e->expiry_ns) {
        count(TERN_STAT_PASSED_EXPIRED);
        return PASS;
    }
    struct tern_entry out = *e;
    __u16 length = udp_len - sizeof(*udp);
    __u16 new_udp_len = udp_len + CHANNEL_HEADER;
    if (!routable(skb, &out)) {
        count(TERN_STAT_PASSED_ROUTE);
        return PASS;
    }
    if (!(out.flags & TERN_ENTRY_LOCAL)) {
        __u32 mtu = 0;
        if (bpf_check_mtu(skb, out.ifindex, &mtu, CHANNEL_HEADER, 0)) {
            count(TERN_STAT_PASSED_ROUTE);
            return PASS;
        }
    }
    if (!spend(e->allocation, length, now)) {
        __sync_fetch_and_add(&e->dropped_bandwidth, 1);
        count(TERN_STAT_DROPPED_BANDWIDTH);
        return TC_ACT_SHOT;
    }
    __u16 channel = bpf_htons(out.channel);
    __u16 length_word = bpf_htons(length);
    __u16 check = udp->check;
    if (check) {
        __u32 sum = (__u16)~check;
        sum = sub32(sum, ip->saddr); sum = sub32(sum, ip->daddr);
        sum = sub16(sum, udp->source); sum = sub16(sum, udp->dest);
        sum = sub16(sum, udp->len); sum = sub16(sum, udp->len);
        sum = add32(sum, out.from_ip); sum = add32(sum, out.to_ip);
        sum = add16(sum, out.from_port); sum = add16(sum, out.to_port);
        sum = add16(sum, bpf_htons(new_udp_len)); sum = add16(sum, bpf_htons(new_udp_len));
        sum = add16(sum, channel); sum = add16(sum, length_word);
        check = (__u16)~fold(sum);
        if (check == 0)
            check = 0xffff;
    }
    /* Inserts 4 bytes right after the IPv4 header; the 12 bytes there become the new UDP header
     * and the ChannelData header. */
    if (bpf_skb_adjust_room(skb, CHANNEL_HEADER, BPF_ADJ_ROOM_NET, 0))
        return PASS;
    void *data = (void *)(long)skb->data;
    void *end = (void *)(long)skb->data_end;
    struct ethhdr *eth = data;
    ip = (void *)(eth + 1);
    udp = (void *)(ip + 1);
    __u16 *header = (void *)(udp + 1);
    if ((void *)(header + 2) > end)
        return TC_ACT_SHOT;
    rewrite_ip(ip, &out, sizeof(*ip) + new_udp_len);
    udp->source = out.from_port;
    udp->dest = out.to_port;
    udp->len = bpf_htons(new_udp_len);
    udp->check = check;
    header[0] = channel;
    header[1] = length_word;
    __sync_fetch_and_add(&e->packets, 1);
    __sync_fetch_and_add(&e->bytes, length);
    count(TERN_STAT_RELAYED_TO_CLIENT);
    return deliver(skb, &out);
}

/* RFC 8656 section 12.4: ChannelData from a client. The 4-byte header is taken off and the payload
 * goes from the relay address to the channel's peer. */
static __always_inline int to_peer(struct __sk_buff *skb, struct iphdr *ip, struct udphdr *udp,
                                   __u16 *channel_header, void *end)
{
    struct tern_client_key key = {
        .client_ip = ip->saddr, .server_ip = ip->daddr,
        .client_port = udp->source, .server_port = udp->dest,
        .channel = bpf_ntohs(channel_header[0]),
    };
    struct tern_entry *e = bpf_map_lookup_elem(&tern_to_peer, &key);
    if (!e)
        return PASS;
    __u16 udp_len = bpf_ntohs(udp->len);
    __u16 length = bpf_ntohs(channel_header[1]);
    /* Section 12.4: the length field must match; padded ChannelData is left to user space. */
    if (udp_len < sizeof(*udp) + CHANNEL_HEADER || length != udp_len - sizeof(*udp) - CHANNEL_HEADER ||
        bpf_ntohs(ip->tot_len) != sizeof(*ip) + udp_len) {
        count(TERN_STAT_PASSED_LENGTH);
        return PASS;
    }
    __u64 now = bpf_ktime_get_ns();
    if (now >= e->expiry_ns) {
        count(TERN_STAT_PASSED_EXPIRED);
        return PASS;
    }
    /* Relay to relay: when the peer is another allocation's relay address on this host (both
     * clients use this server), its entry takes the datagram on to that allocation's client in the
     * same pass, instead of up to the relay socket and back down from user space. */
    struct tern_entry *chain = NULL;
    if (e->flags & TERN_ENTRY_LOCAL) {
        struct tern_peer_key next = {
            .peer_ip = e->from_ip, .relay_ip = e->to_ip, .peer_port = e->from_port, .relay_port = e->to_port,
        };
        chain = bpf_map_lookup_elem(&tern_to_client, &next);
        if (chain && (now >= chain->expiry_ns || !routable(skb, chain)))
            chain = NULL;
    }
    if (!chain && !routable(skb, e)) {
        count(TERN_STAT_PASSED_ROUTE);
        return PASS;
    }
    if (!spend(e->allocation, length, now)) {
        __sync_fetch_and_add(&e->dropped_bandwidth, 1);
        count(TERN_STAT_DROPPED_BANDWIDTH);
        return TC_ACT_SHOT;
    }
    struct tern_entry out = *e;
    __u16 new_udp_len = udp_len - CHANNEL_HEADER;
    /* RFC 1624 incremental update: out go the old pseudo-header addresses, ports, both length
     * words and the ChannelData header; in come the new ones. The payload keeps its 16-bit
     * alignment (it moves by 4 bytes), so it needs no pass. A zero checksum stays zero. */
    __u16 check = udp->check;
    /* From lo, the sender's checksum was never computed (CHECKSUM_PARTIAL: the field holds only the
     * pseudo-header's sum), and taking 4 bytes out leaves the kernel's checksum offset pointing
     * before the moved UDP header, so the receiver would verify a sum that was never made. A zero
     * checksum (RFC 768: none, allowed over IPv4) is what lo's trust amounts to anyway. */
    if (skb->ifindex == LOOPBACK_IFINDEX)
        check = 0;
    if (check) {
        __u32 sum = (__u16)~check;
        sum = sub32(sum, ip->saddr); sum = sub32(sum, ip->daddr);
        sum = sub16(sum, udp->source); sum = sub16(sum, udp->dest);
        sum = sub16(sum, udp->len); sum = sub16(sum, udp->len);
        sum = sub16(sum, channel_header[0]); sum = sub16(sum, channel_header[1]);
        sum = add32(sum, out.from_ip); sum = add32(sum, out.to_ip);
        sum = add16(sum, out.from_port); sum = add16(sum, out.to_port);
        sum = add16(sum, bpf_htons(new_udp_len)); sum = add16(sum, bpf_htons(new_udp_len));
        check = (__u16)~fold(sum);
        if (check == 0)
            check = 0xffff;
    }
    /* Removes the 4 bytes right after the IPv4 header: the UDP header's first half. The 8 bytes
     * now after the IPv4 header (old length and checksum, then the ChannelData header) become the
     * new UDP header. */
    if (bpf_skb_adjust_room(skb, -CHANNEL_HEADER, BPF_ADJ_ROOM_NET, 0))
        return PASS;
    void *data = (void *)(long)skb->data;
    end = (void *)(long)skb->data_end;
    struct ethhdr *eth = data;
    ip = (void *)(eth + 1);
    udp = (void *)(ip + 1);
    if ((void *)(udp + 1) > end)
        return TC_ACT_SHOT;
    rewrite_ip(ip, &out, sizeof(*ip) + new_udp_len);
    udp->source = out.from_port;
    udp->dest = out.to_port;
    udp->len = bpf_htons(new_udp_len);
    udp->check = check;
    __sync_fetch_and_add(&e->packets, 1);
    __sync_fetch_and_add(&e->bytes, length);
    count(TERN_STAT_RELAYED_TO_PEER);
    if (chain) {
        int verdict = to_client(skb, ip, udp);
        if (verdict != PASS)
            return verdict;
        /* The second leg declined after all (its budget or MTU): a datagram for a local address
         * can go on up the stack only from lo. */
        if (skb->ifindex != LOOPBACK_IFINDEX) {
            count(TERN_STAT_PASSED_ROUTE);
            return TC_ACT_SHOT;
        }
    }
    return deliver(skb, &out);
}

SEC("tc")
int tern_relay(struct __sk_buff *skb)
{
    void *data = (void *)(long)skb->data;
    void *end = (void *)(long)skb->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
        return PASS;
    struct iphdr *ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > end || ip->ihl != 5 || ip->version != 4 || ip->protocol != IPPROTO_UDP)
        return PASS;
    if (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET))
        return PASS;
    if (skb->gso_segs > 1)
        return PASS;
    struct udphdr *udp = (void *)(ip + 1);
    if ((void *)(udp + 1) > end)
        return PASS;
    __u16 *channel_header = (void *)(udp + 1);
    /* Section 12: ChannelData starts with 0b01 (channel numbers 0x4000-0x7FFF). */
    if ((void *)(channel_header + 2) <= end && (*(__u8 *)channel_header & 0xC0) == 0x40) {
        int verdict = to_peer(skb, ip, udp, channel_header, end);
        if (verdict != PASS)
            return verdict;
        /* Not one of ours as ChannelData: it may still be a peer's datagram to a relay port. */
        data = (void *)(long)skb->data;
        end = (void *)(long)skb->data_end;
        eth = data;
        ip = (void *)(eth + 1);
        udp = (void *)(ip + 1);
        if ((void *)(udp + 1) > end)
            return PASS;
    }
    return to_client(skb, ip, udp);
}
