import Dispatch
import Foundation
import Logging
import STUN
import TernCore
import TernIO

/// Runs `relay.discoverExternal` at start and on every reload: for each relay address family
/// without an explicit `relay.externalIPv4/6` (IPv4 always, IPv6 when `relay.ipv6` is set), a
/// Binding from a relay-range port to the configured STUN servers, in order, retried with backoff
/// (1 s doubling to a minute) until it succeeds. Every change is handed to `onChange` with the
/// status of each family; the runner owns no server state.
final class DiscoveryRunner: @unchecked Sendable {
    /// Runs the attempts, one at a time (each blocks for at most a few seconds).
    private let queue = DispatchQueue(label: "tern.discovery")
    /// Guards `generation` and `statuses`: a reload never waits for an attempt in progress.
    private let lock = NSLock()
    private let logger: Logger
    private let onChange: @Sendable ([ExternalAddressStatus]) -> Void
    /// Bumped by every restart: attempts of an older generation stop.
    private var generation = 0
    /// Status per family (under `lock`).
    private var statuses: [AddressFamily: ExternalAddressStatus] = [:]

    /// The longest wait between attempts.
    static let maximumBackoff = 60

    init(logger: Logger, onChange: @escaping @Sendable ([ExternalAddressStatus]) -> Void) {
        self.logger = logger
        self.onChange = onChange
    }

    /// The statuses a config starts with: explicit addresses as `configured`, discovered families
    /// as `pending` (or their previous success, kept while a reload re-discovers). Empty without
    /// `relay.discoverExternal` and explicit addresses.
    static func initial(_ relay: RelayConfig, previous: [AddressFamily: ExternalAddressStatus] = [:]) -> [AddressFamily: ExternalAddressStatus] {
        var out: [AddressFamily: ExternalAddressStatus] = [:]
        for family in [AddressFamily.ipv4, .ipv6] {
            let name = family == .ipv4 ? "ipv4" : "ipv6"
            if let ip = family == .ipv4 ? relay.externalIPv4 : relay.externalIPv6 {
                out[family] = ExternalAddressStatus(family: name, state: .configured, advertised: "\(ip)",
                                                    source: family == .ipv4 ? "relay.externalIPv4" : "relay.externalIPv6")
            } else if discovers(family, relay) {
                if let p = previous[family], p.state == .discovered || p.state == .direct {
                    out[family] = p
                } else {
                    out[family] = ExternalAddressStatus(family: name, state: .pending, source: relay.discoverExternal[0].description)
                }
            }
        }
        return out
    }

    /// Discovery runs for IPv4 always and for IPv6 when relays of that family are configured.
    static func discovers(_ family: AddressFamily, _ relay: RelayConfig) -> Bool {
        guard !relay.discoverExternal.isEmpty else { return false }
        return family == .ipv4 || relay.ipv6 != nil
    }

    /// Starts (or restarts, on reload) discovery for `relay`; reports the initial statuses at once.
    func restart(_ relay: RelayConfig) {
        let (g, list, current) = lock.withLock { () -> (Int, [ExternalAddressStatus], [AddressFamily: ExternalAddressStatus]) in
            generation += 1
            statuses = Self.initial(relay, previous: statuses)
            return (generation, ordered, statuses)
        }
        onChange(list)
        for family in [AddressFamily.ipv4, .ipv6] where Self.discovers(family, relay) && current[family]?.state != .configured {
            queue.async { [self] in attempt(family, relay, generation: g, backoff: 1) }
        }
    }

    /// The statuses in family order (under `lock`).
    private var ordered: [ExternalAddressStatus] { [AddressFamily.ipv4, .ipv6].compactMap { statuses[$0] } }

    /// One attempt on the queue; a failure schedules the next, doubling the wait up to a minute.
    private func attempt(_ family: AddressFamily, _ relay: RelayConfig, generation: Int, backoff: Int) {
        guard lock.withLock({ generation == self.generation }) else { return }
        let bind = (family == .ipv4 ? relay.ipv4 : relay.ipv6) ?? (family == .ipv4 ? .anyV4 : .anyV6)
        let outcome = ExternalAddressDiscovery.discover(family: family, bindIP: bind, portRange: relay.portRange,
                                                        servers: relay.discoverExternal,
                                                        hostAddresses: Posix.interfaceAddresses())
        let status = outcome.status(family: family)
        switch outcome {
        case .oneToOne(_, let mapped, let server):
            logger.info("relay address discovered: behind a 1:1 NAT, advertising \(mapped.ip)",
                        metadata: ["family": "\(status.family)", "server": "\(server)", "local": "\(status.local ?? "")", "mapped": "\(mapped)"])
        case .direct(_, let mapped, let server):
            logger.info("relay address discovered: no NAT (the server saw this host's own address)",
                        metadata: ["family": "\(status.family)", "server": "\(server)", "mapped": "\(mapped)"])
        case .notOneToOne:
            logger.error("relay address discovery: \(status.error ?? "")",
                         metadata: ["family": "\(status.family)", "server": "\(status.source)", "retry": "\(backoff)s"])
        case .failed:
            logger.warning("relay address discovery failed: \(status.error ?? "")",
                           metadata: ["family": "\(status.family)", "server": "\(status.source)", "retry": "\(backoff)s"])
        }
        // Under the lock: whether this attempt is still current, and the statuses to report if it
        // changed one.
        let (current, changed) = lock.withLock { () -> (Bool, [ExternalAddressStatus]?) in
            guard generation == self.generation else { return (false, nil) }
            let previous = statuses[family]
            // A reload's re-discovery that gets no answer keeps the address found before; a NAT
            // that now changes ports does not (relaying through it would break).
            if case .failed = outcome, let p = previous, p.state == .discovered || p.state == .direct { return (true, nil) }
            statuses[family] = status
            return (true, status != previous ? ordered : nil)
        }
        if let changed { onChange(changed) }
        guard current, !outcome.succeeded else { return }
        queue.asyncAfter(deadline: .now() + .seconds(backoff)) { [self] in
            attempt(family, relay, generation: generation, backoff: min(backoff * 2, Self.maximumBackoff))
        }
    }
}

extension TernConfig {
    /// The config with discovered relay addresses filled in where `relay.externalIPv4/6` is unset:
    /// what XOR-RELAYED-ADDRESS and the derived public URLs advertise.
    func withDiscovered(_ statuses: [ExternalAddressStatus]) -> TernConfig {
        var c = self
        for s in statuses where s.state == .discovered {
            guard let ip = s.advertised.flatMap(IPAddress.init) else { continue }
            if ip.family == .ipv4, c.relay.externalIPv4 == nil { c.relay.externalIPv4 = ip }
            if ip.family == .ipv6, c.relay.externalIPv6 == nil { c.relay.externalIPv6 = ip }
        }
        return c
    }
}

extension Array where Element == ExternalAddressStatus {
    /// The families whose relay address is not settled: Allocate gets 440 for them.
    var withheldFamilies: Set<AddressFamily> {
        Set(filter { !$0.state.isSettled }.map { $0.family == "ipv6" ? AddressFamily.ipv6 : .ipv4 })
    }

    /// The advertised relay addresses for systemd's STATUS= line (", relay ..."), empty when
    /// neither discovery nor the config names one.
    var statusLine: String {
        let parts = map { s -> String in
            switch s.state {
            case .configured, .discovered: return "relay \(s.advertised ?? "?") (\(s.state == .configured ? "configured" : "discovered via \(s.source)"))"
            case .direct: return "relay \(s.family) has no NAT (checked via \(s.source))"
            case .pending: return "relay \(s.family) address: discovering via \(s.source)"
            case .notOneToOne: return "relay \(s.family): NAT is not 1:1, nothing advertised"
            case .failed: return "relay \(s.family) address: discovery failing (\(s.error ?? "no answer")), retrying"
            }
        }
        return parts.isEmpty ? "" : ", " + parts.joined(separator: ", ")
    }
}
