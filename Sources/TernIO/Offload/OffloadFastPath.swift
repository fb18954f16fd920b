import CTernBPF
import STUN
import TernCore

/// One worker's control plane for the kernel fast path: it turns each allocation's channels into
/// entries in the classifier's maps (both directions), keeps their expiries in step with the
/// allocation's, and reads back what the kernel relayed. Worker-owned, like the handler it serves.
///
/// What is offloaded: channels (RFC 8656 section 11) of allocations made over UDP, whose client,
/// listener address, relay address and peer are IPv4, and whose user has no `bandwidthPerUser`
/// budget (that one is shared across the user's allocations and workers). Everything else, and
/// any datagram the program passes, is relayed in user space as before.
final class OffloadFastPath: FastPath {
    let kernel: KernelOffload
    private let routes: RouteCache
    private let monotonicNanos: () -> UInt64
    private var installed: [UInt64: Installed] = [:]
    /// CLOCK_MONOTONIC nanoseconds minus the handler's second count times 10^9, taken once: an
    /// expiry then maps to the same kernel time at every tick, so an unchanged entry is never
    /// rewritten (wrapping arithmetic: a test's clock may run ahead of the system's).
    private var clockOffset: UInt64?

    private struct Installed {
        var toPeer: [ClientKey: Written] = [:]
        var toClient: [PeerKey: Written] = [:]
        var budget = false
    }

    /// What was last written for one entry, and the counters last read from it.
    private struct Written {
        var entry: tern_entry
        var packets: UInt64 = 0
        var bytes: UInt64 = 0
        var dropped: UInt64 = 0
    }

    struct ClientKey: Hashable {
        var client: TransportAddress
        var server: TransportAddress
        var channel: UInt16
        var raw: tern_client_key {
            tern_client_key(client_ip: client.ip.networkV4, server_ip: server.ip.networkV4, client_port: client.port.bigEndian,
                            server_port: server.port.bigEndian, channel: channel, pad: 0)
        }
    }

    struct PeerKey: Hashable {
        var peer: TransportAddress
        var relay: TransportAddress
        var raw: tern_peer_key {
            tern_peer_key(peer_ip: peer.ip.networkV4, relay_ip: relay.ip.networkV4, peer_port: peer.port.bigEndian,
                          relay_port: relay.port.bigEndian)
        }
    }

    init(kernel: KernelOffload, monotonicNanos: @escaping () -> UInt64 = Clocks.monotonicNanos) {
        self.kernel = kernel
        self.routes = RouteCache()
        self.monotonicNanos = monotonicNanos
    }

    /// Entries written for this worker's allocations now.
    var entryCount: Int { installed.values.reduce(0) { $0 + $1.toPeer.count + $1.toClient.count } }

    func update(_ allocation: Allocation, now: UInt64) {
        var want = Installed()
        if Self.offloadable(allocation), let relay = allocation.relay(for: .ipv4)?.bound,
           let toClientRoute = routes.route(to: allocation.fiveTuple.client.ip) {
            let tuple = allocation.fiveTuple
            let offset = clockOffset ?? (monotonicNanos() &- now &* 1_000_000_000)
            clockOffset = offset
            for (number, binding) in allocation.channels where binding.peer.ip.family == .ipv4 {
                guard let permission = allocation.permissions[binding.peer.ip] else { continue }
                let expiry = min(binding.expiry, permission, allocation.expiry)
                guard expiry > now, let toPeerRoute = routes.route(to: binding.peer.ip) else { continue }
                let expiryNanos = offset &+ expiry &* 1_000_000_000
                want.toPeer[ClientKey(client: tuple.client, server: tuple.server, channel: number)] = Written(
                    entry: Self.entry(from: relay, to: binding.peer, channel: 0, route: toPeerRoute, expiry: expiryNanos,
                                      allocation: allocation.id))
                want.toClient[PeerKey(peer: binding.peer, relay: relay)] = Written(
                    entry: Self.entry(from: tuple.server, to: tuple.client, channel: number, route: toClientRoute,
                                      expiry: expiryNanos, allocation: allocation.id))
            }
        }
        let had = installed[allocation.id] ?? Installed()
        if want.toPeer.isEmpty && had.toPeer.isEmpty && want.toClient.isEmpty && had.toClient.isEmpty { return }
        var result = Installed()
        var carried = AllocationCounters()
        // Budget first, so no entry relays before its allocation's limit is in place.
        result.budget = had.budget
        if !want.toPeer.isEmpty && !had.budget && allocation.bandwidthRate > 0 {
            var id = allocation.id
            var budget = tern_budget(rate: UInt64(allocation.bandwidthRate), second: 0, used: 0)
            result.budget = (try? Posix.bpfUpdate(kernel.budgets, key: &id, value: &budget)) != nil
            if !result.budget { want = Installed() }
        }
        result.toPeer = sync(want.toPeer, had.toPeer, map: kernel.toPeer, key: \.raw, carried: &carried, toPeer: true)
        result.toClient = sync(want.toClient, had.toClient, map: kernel.toClient, key: \.raw, carried: &carried, toPeer: false)
        if result.toPeer.isEmpty && result.toClient.isEmpty {
            dropBudget(allocation.id, result.budget)
            installed[allocation.id] = nil
        } else {
            installed[allocation.id] = result
        }
        if carried != AllocationCounters() { pending[allocation.id, default: AllocationCounters()].add(carried) }
    }

    /// Counters of entries removed by `update` (a channel or permission ended), handed over at the
    /// next `collect`.
    private var pending: [UInt64: AllocationCounters] = [:]

    func remove(_ allocation: Allocation) -> AllocationCounters {
        var carried = pending.removeValue(forKey: allocation.id) ?? AllocationCounters()
        guard let had = installed.removeValue(forKey: allocation.id) else { return carried }
        _ = sync([:], had.toPeer, map: kernel.toPeer, key: \.raw, carried: &carried, toPeer: true)
        _ = sync([:], had.toClient, map: kernel.toClient, key: \.raw, carried: &carried, toPeer: false)
        dropBudget(allocation.id, had.budget)
        return carried
    }

    func collect(_ body: (UInt64, AllocationCounters) -> Void) {
        for (id, var entries) in installed {
            var carried = pending.removeValue(forKey: id) ?? AllocationCounters()
            for (key, var w) in entries.toPeer {
                var raw = key.raw
                read(&w, map: kernel.toPeer, key: &raw, into: &carried, toPeer: true)
                entries.toPeer[key] = w
            }
            for (key, var w) in entries.toClient {
                var raw = key.raw
                read(&w, map: kernel.toClient, key: &raw, into: &carried, toPeer: false)
                entries.toClient[key] = w
            }
            installed[id] = entries
            if carried != AllocationCounters() { body(id, carried) }
        }
        for (id, carried) in pending { body(id, carried) }
        pending.removeAll(keepingCapacity: true)
    }

    /// Writes what is wanted and not yet there (or there with another expiry or route), deletes
    /// what is there and no longer wanted (reading its counters first), and returns what is now there.
    private func sync<Key: Hashable, Raw>(_ want: [Key: Written], _ had: [Key: Written], map: Int32, key raw: (Key) -> Raw,
                                          carried: inout AllocationCounters, toPeer: Bool) -> [Key: Written] {
        var out: [Key: Written] = [:]
        for (key, var w) in had where want[key] == nil {
            var k = raw(key)
            read(&w, map: map, key: &k, into: &carried, toPeer: toPeer)
            Posix.bpfDelete(map, key: &k)
        }
        for (key, w) in want {
            var k = raw(key)
            if var old = had[key] {
                if Self.same(old.entry, w.entry) {
                    out[key] = old
                    continue
                }
                // A new expiry or route: rewriting the value would zero its counters, so read them first.
                read(&old, map: map, key: &k, into: &carried, toPeer: toPeer)
            }
            var entry = w.entry
            if (try? Posix.bpfUpdate(map, key: &k, value: &entry)) != nil { out[key] = Written(entry: entry) }
        }
        return out
    }

    /// Adds the growth of one entry's counters since the last read.
    private func read<Raw>(_ w: inout Written, map: Int32, key: inout Raw, into c: inout AllocationCounters, toPeer: Bool) {
        var value = tern_entry()
        guard Posix.bpfLookup(map, key: &key, value: &value) else { return }
        let packets = value.packets &- w.packets, bytes = value.bytes &- w.bytes, dropped = value.dropped_bandwidth &- w.dropped
        w.packets = value.packets
        w.bytes = value.bytes
        w.dropped = value.dropped_bandwidth
        if toPeer {
            c.packetsToPeer &+= packets
            c.bytesToPeer &+= bytes
        } else {
            c.packetsToClient &+= packets
            c.bytesToClient &+= bytes
        }
        c.droppedBandwidth &+= dropped
    }

    private func dropBudget(_ id: UInt64, _ written: Bool) {
        guard written else { return }
        var key = id
        Posix.bpfDelete(kernel.budgets, key: &key)
    }

    static func offloadable(_ a: Allocation) -> Bool {
        let t = a.fiveTuple
        return t.transport == .udp && !a.tcpRelay && !a.hasUserBandwidth
            && t.client.ip.family == .ipv4 && t.server.ip.family == .ipv4 && !t.server.ip.isUnspecified
    }

    private static func entry(from: TransportAddress, to: TransportAddress, channel: UInt16, route: RouteCache.Route,
                              expiry: UInt64, allocation: UInt64) -> tern_entry {
        var e = tern_entry()
        e.from_ip = from.ip.networkV4
        e.to_ip = to.ip.networkV4
        e.from_port = from.port.bigEndian
        e.to_port = to.port.bigEndian
        e.channel = channel
        e.flags = route.local ? UInt16(TERN_ENTRY_LOCAL) : 0
        e.ifindex = route.ifindex
        e.expiry_ns = expiry
        e.allocation = allocation
        return e
    }

    private static func same(_ a: tern_entry, _ b: tern_entry) -> Bool {
        a.from_ip == b.from_ip && a.to_ip == b.to_ip && a.from_port == b.from_port && a.to_port == b.to_port
            && a.channel == b.channel && a.flags == b.flags && a.ifindex == b.ifindex && a.expiry_ns == b.expiry_ns
            && a.allocation == b.allocation
    }
}

extension IPAddress {
    /// An IPv4 address as it sits in a packet (network byte order); 0 for IPv6.
    var networkV4: UInt32 {
        if case .v4(let a) = self { return a.bigEndian }
        return 0
    }
}
