import Foundation
import Prometheus
import TernCore

/// Renders a `ServerSnapshot` in the Prometheus text format through swift-prometheus's registry.
///
/// The server's counters are plain per-worker integers summed on read (nothing on the data path
/// touches a metrics object), so each scrape takes a snapshot and brings the registry up to it:
/// gauges are set, counters are advanced by what has happened since the last scrape. The figures
/// are therefore as fresh as the scrape, not as old as the last session that ended.
public final class PrometheusExporter: @unchecked Sendable {
    public let registry = PrometheusCollectorRegistry()
    private let lock = NSLock()
    /// What each counter (name plus labels) has been advanced to.
    private var published: [String: UInt64] = [:]
    private var userSeries: Set<String> = []

    public init() {}

    static let transports = ["udp", "tcp", "tls", "dtls"]
    static let families = ["ipv4", "ipv6"]

    /// Updates every series from `s` and returns the exposition text.
    public func render(_ s: ServerSnapshot) -> String {
        lock.lock()
        defer { lock.unlock() }
        gauge("tern_build_info", "Tern version", [("version", s.version)], 1)
        gauge("tern_uptime_seconds", "Seconds since the listeners were bound", [], Double(s.uptimeSeconds))
        gauge("tern_draining", "1 while the server drains (SIGTERM) and refuses new allocations", [], s.draining ? 1 : 0)
        gauge("tern_ready", "1 when every listener is bound and the server is not draining", [], s.ready ? 1 : 0)

        // Allocations: a full transport x family grid, so that a series drops to 0 instead of vanishing.
        for t in Self.transports {
            for f in Self.families {
                let n = s.allocations.activeBy.first { $0.transport == t && $0.family == f }?.count ?? 0
                gauge("tern_allocations_active", "Live allocations by client transport and relayed address family",
                      [("transport", t), ("family", f)], Double(n))
            }
        }
        counter("tern_allocations_created_total", "Allocations created", [], s.allocations.created)
        for reason in AllocationEndReason.allCases {
            counter("tern_allocations_ended_total", "Allocations ended, by reason", [("reason", reason.label)],
                    s.allocations.ended[reason.label] ?? 0)
        }
        for (code, n) in s.allocations.refused {
            counter("tern_allocations_refused_total", "Allocate requests refused, by error code", [("code", code)], n)
        }
        for reason in ["capacity", "drain"] {
            counter("tern_allocate_redirects_total", "Allocate answered with 300 Try Alternate, by reason (cluster.capacity, drain)",
                    [("reason", reason)], s.allocations.redirected[reason] ?? 0)
        }
        gauge("tern_allocations_capacity", "Live allocations at which Allocate is redirected and /readyz answers 503 (0: none)",
              [], Double(s.allocations.capacity))
        gauge("tern_at_capacity", "1 while live allocations are at or above tern_allocations_capacity", [], s.atCapacity ? 1 : 0)
        for (method, results) in s.requests {
            for (result, n) in results {
                counter("tern_requests_total", "STUN/TURN requests answered, by method and result",
                        [("method", method), ("result", result)], n)
            }
        }
        for (reason, n) in s.authFailures {
            counter("tern_auth_failures_total", "Authentication failures and challenges, by reason", [("reason", reason)], n)
        }
        for (direction, t) in [("client_to_peer", s.relayed.clientToPeer), ("peer_to_client", s.relayed.peerToClient)] {
            counter("tern_relayed_packets_total", "Packets relayed, by direction", [("direction", direction)], t.packets)
            counter("tern_relayed_bytes_total", "Payload bytes relayed, by direction", [("direction", direction)], t.bytes)
        }
        for (reason, n) in s.dropped {
            counter("tern_dropped_total", "Datagrams and messages dropped, by reason", [("reason", reason)], n)
        }
        for (limit, n) in s.limited {
            counter("tern_limited_total", "Requests, connections and datagrams stopped by a limit, by limit", [("limit", limit)], n)
        }
        for (transport, n) in s.connections {
            gauge("tern_connections_active", "Open client connections, by transport", [("transport", transport)], Double(n))
        }
        counter("tern_proxy_protocol_accepted_total", "Connections on PROXY protocol listeners whose header was read",
                [], s.proxyProtocol["accepted"] ?? 0)
        for reason in ["untrusted", "malformed", "missing"] {
            counter("tern_proxy_protocol_rejected_total",
                    "Connections on PROXY protocol listeners refused (source not trusted) or closed (header malformed, or missing)",
                    [("reason", reason)], s.proxyProtocol[reason] ?? 0)
        }
        gauge("tern_offload_active", "1 when io.offload's TC classifier is loaded and attached, else 0", [], s.offload.active ? 1 : 0)
        gauge("tern_offload_entries", "Entries in the kernel fast path's maps (two per offloaded channel)", [], Double(s.offload.entries))
        for (outcome, n) in s.offload.kernel.sorted(by: { $0.key < $1.key }) {
            counter("tern_offload_packets_total",
                    "Datagrams the kernel fast path relayed (relayed_to_peer, relayed_to_client), passed to user space (passed_*) or dropped (dropped_bandwidth)",
                    [("outcome", outcome)], n)
        }
        gauge("tern_relay_ports", "Relay ports in use by Tern and free in relay.portRange", [("state", "in_use")], Double(s.relayPorts.inUse))
        gauge("tern_relay_ports", "Relay ports in use by Tern and free in relay.portRange", [("state", "free")], Double(s.relayPorts.free))
        for w in s.workers {
            let l = [("worker", String(w.index))]
            gauge("tern_worker_allocations", "Live allocations per worker", l, Double(w.allocations))
            gauge("tern_worker_connections", "Open client connections per worker", l, Double(w.connections))
            counter("tern_worker_datagrams_received_total", "Datagrams received per worker", l, w.datagramsReceived)
            counter("tern_worker_datagrams_sent_total", "Datagrams sent per worker", l, w.datagramsSent)
            counter("tern_worker_read_firings_total", "Dispatch read-source firings per worker", l, w.readFirings)
        }
        if let users = s.users {
            var seen: Set<String> = []
            for (user, u) in users {
                seen.insert(user)
                gauge("tern_user_allocations_active", "Live allocations per user (admin.perUserMetrics)", [("user", user)], Double(u.allocations))
                for (direction, t) in [("client_to_peer", u.relayed.clientToPeer), ("peer_to_client", u.relayed.peerToClient)] {
                    counter("tern_user_relayed_bytes_total", "Payload bytes relayed per user (admin.perUserMetrics)",
                            [("user", user), ("direction", direction)], t.bytes)
                }
            }
            userSeries.formUnion(seen)
            for gone in userSeries.subtracting(seen) {
                gauge("tern_user_allocations_active", "Live allocations per user (admin.perUserMetrics)", [("user", gone)], 0)
            }
        }
        return registry.emitToString()
    }

    private func gauge(_ name: String, _ help: String, _ labels: [(String, String)], _ value: Double) {
        registry.makeGauge(name: name, labels: labels, help: help).set(value)
    }

    /// Advances the counter to `value`; a value below the last one (never expected) restarts it.
    private func counter(_ name: String, _ help: String, _ labels: [(String, String)], _ value: UInt64) {
        let c = registry.makeCounter(name: name, labels: labels, help: help)
        let key = name + "{" + labels.map { "\($0.0)=\($0.1)" }.joined(separator: ",") + "}"
        let last = published[key] ?? 0
        if value >= last {
            if value > last { c.increment(by: Int64(clamping: value - last)) }
        } else {
            c.reset()
            c.increment(by: Int64(clamping: value))
        }
        published[key] = value
    }
}
