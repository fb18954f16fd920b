import Dispatch
import STUN
import TernCore

extension Server {
    /// Every figure at one moment: each worker's part is read on its own queue, then summed.
    public func snapshot(perUser: Bool) -> ServerSnapshot {
        var s = ServerSnapshot()
        if perUser { s.users = [:] }
        s.uptimeSeconds = Clocks.monotonicSeconds() &- startedAt
        s.draining = draining
        s.ready = isReady
        var inUse = 0
        for w in workers {
            w.queue.sync {
                w.handler.addFigures(to: &s, perUser: perUser)
                var f = WorkerFigures(index: w.index)
                f.allocations = w.handler.allocations.count
                let dtlsClients = w.dtlsEndpoints.reduce(0) { $0 + $1.clientCount }
                f.connections = w.connections.count + dtlsClients
                f.relaySockets = w.relays.count + w.tcpRelays.count
                f.datagramsReceived = w.stats.datagramsReceived
                f.datagramsSent = w.stats.datagramsSent
                f.bytesReceived = w.stats.bytesReceived
                f.bytesSent = w.stats.bytesSent
                f.readFirings = w.stats.readFirings
                for a in w.handler.allocations.all { f.relayedPackets &+= a.counters.packetsToPeer &+ a.counters.packetsToClient }
                s.workers.append(f)
                inUse += f.relaySockets
                for c in w.connections.values {
                    s.connections[c.transport == .tls ? "tls" : "tcp", default: 0] += 1
                }
                s.connections["dtls", default: 0] += dtlsClients
                let io = w.stats
                for (label, n) in [("oversized", io.oversizedDropped), ("send_failed", io.sendDropped),
                                   ("queue_full", io.streamRelayDropped)] {
                    s.dropped[label, default: 0] &+= n
                }
                s.limited["connections_per_ip", default: 0] &+= io.tcpRefusedPerIP
                s.limited["handshakes_in_flight", default: 0] &+= io.handshakesRefused
            }
        }
        inUse += workers[0].handler.turn?.shared.reservationCount ?? 0
        let families = (relayAddresses.ipv4 != nil ? 1 : 0) + (relayAddresses.ipv6 != nil ? 1 : 0)
        s.relayPorts.rangeSize = relayAddresses.portRange.count * max(families, 1)
        s.relayPorts.inUse = inUse
        s.relayPorts.free = max(0, s.relayPorts.rangeSize - inUse)
        return s
    }

    /// Live allocations on every worker.
    public var allocationCount: Int { withHandlers { $0.allocations.count }.reduce(0, +) }

    /// Listeners bound and not draining.
    public var isReady: Bool { !bound.isEmpty && !draining }

    public func allocationInfos(user: String?, client: String?) -> [AllocationInfo] {
        withHandlers { $0.allocationInfos(user: user, client: client) }.flatMap { $0 }
            .sorted { (UInt64($0.id) ?? 0) < (UInt64($1.id) ?? 0) }
    }

    public func allocationInfo(id: String) -> AllocationInfo? {
        guard let n = UInt64(id) else { return nil }
        return withHandlers { $0.allocationInfo(id: n) }.lazy.compactMap { $0 }.first
    }

    public func deleteAllocation(id: String) -> Bool {
        guard let n = UInt64(id) else { return false }
        return withHandlers { $0.deleteAllocation(id: n) }.contains(true)
    }

    public func userInfo(_ name: String) -> UserInfo {
        var traffic = AllocationCounters()
        for (_, c) in withHandlers({ $0.counters(forUser: RequestHandler.userKey(name)) }) { traffic.add(c) }
        return UserInfo(user: name, allocations: allocationInfos(user: name, client: nil), relayed: RelayedTraffic(traffic))
    }
}

/// The admin endpoint's view of a `Server`: each call hops off the caller's thread (an HTTP event
/// loop) to a global queue, which then waits on the workers' queues.
public final class ServerAdminBackend: AdminBackend {
    public let server: Server

    public init(_ server: Server) { self.server = server }

    private func off<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { c in
            DispatchQueue.global().async { c.resume(returning: body()) }
        }
    }

    public func snapshot(perUser: Bool) async -> ServerSnapshot {
        await off { [server] in server.snapshot(perUser: perUser) }
    }

    public func allocations(user: String?, client: String?) async -> [AllocationInfo] {
        await off { [server] in server.allocationInfos(user: user, client: client) }
    }

    public func allocation(id: String) async -> AllocationInfo? {
        await off { [server] in server.allocationInfo(id: id) }
    }

    public func deleteAllocation(id: String) async -> Bool {
        await off { [server] in server.deleteAllocation(id: id) }
    }

    public func user(_ name: String) async -> UserInfo {
        await off { [server] in server.userInfo(name) }
    }

    public var isReady: Bool { server.isReady }
}
