import Dispatch
import STUN
import TernCore

/// The server's figures: one walk over the workers, each part read on its own worker's queue, gives
/// both the admin endpoint's `ServerSnapshot` and the raw `ServerStats` counters.
extension Server {
    /// Every figure at one moment (the admin endpoint, metrics).
    public func snapshot(perUser: Bool) -> ServerSnapshot {
        collect(perUser: perUser).snapshot
    }

    /// The raw counters the snapshot is made from, summed over the workers (tests, the shutdown log).
    public func stats() -> ServerStats {
        collect(perUser: false).stats
    }

    private func collect(perUser: Bool) -> (snapshot: ServerSnapshot, stats: ServerStats) {
        let state = self.state.current
        var s = ServerSnapshot()
        if perUser { s.users = [:] }
        s.uptimeSeconds = Clocks.monotonicSeconds() &- state.startedAt
        s.draining = state.draining
        s.ready = state.isReady
        s.atCapacity = state.atCapacity
        s.allocations.capacity = state.capacity
        s.externalAddresses = state.external
        s.offload = offloadFigures()
        var total = ServerStats()
        var inUse = 0
        for w in workers {
            w.queue.sync {
                let handler = w.handler
                // What the kernel relayed since the last tick, so the figures are exact now.
                handler.collectFastPath()
                s.offload.entries += (handler.fastPath as? OffloadFastPath)?.entryCount ?? 0
                handler.addFigures(to: &s, perUser: perUser)
                let io = w.stats
                let dtlsClients = w.dtlsEndpoints.reduce(0) { $0 + $1.clientCount }
                var f = WorkerFigures(index: w.index)
                f.allocations = handler.allocations.count
                f.connections = w.connections.count + dtlsClients
                f.relaySockets = w.relayTable.count
                f.datagramsReceived = io.datagramsReceived
                f.datagramsSent = io.datagramsSent
                f.bytesReceived = io.bytesReceived
                f.bytesSent = io.bytesSent
                f.readFirings = io.readFirings
                for a in handler.allocations.all { f.relayedPackets &+= a.counters.packetsToPeer &+ a.counters.packetsToClient }
                s.workers.append(f)
                inUse += f.relaySockets
                for c in w.connections.values {
                    s.connections[c.transport == .tls ? "tls" : "tcp", default: 0] += 1
                }
                s.connections["dtls", default: 0] += dtlsClients
                for (label, n) in [("oversized", io.oversizedDropped), ("send_failed", io.sendDropped),
                                   ("queue_full", io.streamRelayDropped)] {
                    s.dropped[label, default: 0] &+= n
                }
                s.limited["connections_per_ip", default: 0] &+= io.tcpRefusedPerIP
                s.limited["handshakes_in_flight", default: 0] &+= io.handshakesRefused &- io.handshakesRefusedPerIP
                s.limited["handshakes_per_ip", default: 0] &+= io.handshakesRefusedPerIP
                s.limited["connections_without_allocation", default: 0] &+= io.refusedWithoutAllocation
                for (label, n) in [("accepted", io.proxyAccepted), ("untrusted", io.proxyUntrusted),
                                   ("malformed", io.proxyMalformed), ("missing", io.proxyMissing)] {
                    s.proxyProtocol[label, default: 0] &+= n
                }

                total.io = total.io + io
                total.handler = total.handler + handler.stats
                total.connections += w.connections.count
                total.allocations += handler.allocations.count
                total.relaySockets += f.relaySockets
                let t = handler.turnCounters
                total.auth = total.auth + t.auth
                total.allocationsCreated &+= t.allocationsCreated
                total.allocationsExpired &+= t.allocationsExpired
                total.allocationsDeleted &+= t.allocationsDeleted
                for (code, n) in t.errors { total.turnErrors[code, default: 0] &+= n }
                total.droppedNoPermission &+= t.droppedNoPermission
                total.droppedNoChannel &+= t.droppedNoChannel
                total.droppedNoAllocation &+= t.droppedNoAllocation
            }
        }
        inUse += state.shared?.reservationCount ?? 0
        let families = (relayAddresses.ipv4 != nil ? 1 : 0) + (relayAddresses.ipv6 != nil ? 1 : 0)
        s.relayPorts.rangeSize = relayAddresses.portRange.count * max(families, 1)
        s.relayPorts.inUse = inUse
        s.relayPorts.free = max(0, s.relayPorts.rangeSize - inUse)
        return (s, total)
    }

    /// Every descriptor the workers hold now (listeners, endpoints, connections, connections whose
    /// PROXY header is being read, relays). For tests and diagnostics.
    public func openDescriptors() -> [Int32] {
        var fds: [Int32] = []
        for w in workers {
            w.queue.sync {
                fds += w.udpEndpoints.map(\.socket.fd) + w.tcpListeners.map(\.socket.fd)
                    + w.connections.values.map(\.stream.socket.fd) + w.pendingProxy.values.map(\.socket.fd)
                for relay in w.relayTable.all {
                    switch relay {
                    case .udp(let r): fds.append(r.socket.fd)
                    case .tcp(let l): fds.append(l.socket.fd)
                    }
                }
            }
        }
        return fds.filter { $0 >= 0 }
    }
}

/// Every worker's counters, summed.
public struct ServerStats: Sendable {
    public var io = IOStats()
    public var handler = HandlerStats()
    public var connections = 0
    public var allocations = 0
    public var relaySockets = 0
    public var allocationsCreated: UInt64 = 0
    public var allocationsExpired: UInt64 = 0
    public var allocationsDeleted: UInt64 = 0
    public var turnErrors: [Int: UInt64] = [:]
    public var auth = AuthFailureCounters()
    public var droppedNoPermission: UInt64 = 0
    public var droppedNoChannel: UInt64 = 0
    public var droppedNoAllocation: UInt64 = 0
}
