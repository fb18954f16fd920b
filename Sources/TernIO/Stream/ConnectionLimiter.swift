import STUN
import TernCore

/// Server-wide admission for stream connections and DTLS associations, shared by every worker
/// (SO_REUSEPORT spreads one client's connections over all of them). Taken at accept, at the end of
/// a handshake, when a connection first carries an allocation and at close; never per packet.
///
/// - Connections per client IP (an IPv6 client by its /64): TCP and TLS connections and DTLS
///   associations together, `limits.connectionsPerIP`.
/// - TLS and DTLS handshakes in flight: `limits.handshakesInFlight` server-wide, and at most
///   `limits.handshakesPerIP` (an eighth, at most 32) from one source, so that a few addresses that
///   open connections and never send a ClientHello cannot lock every other TLS or DTLS client out.
/// - Connections and associations that carry no allocation: `limits.connectionsWithoutAllocation`
///   server-wide, what a flood of idle connections from many addresses can hold.
///
/// A limit of 0 is no limit. A lowered limit applies to new admissions only.
final class ConnectionLimiter: @unchecked Sendable {
    private let lock = Lock()
    private var perIP: [IPAddress: Int] = [:]
    private var handshakesPerIP: [IPAddress: Int] = [:]
    private var handshakes = 0
    private var unallocated = 0
    private var _limits: LimitsConfig

    enum HandshakeRefusal { case total, perIP }

    /// Changed by a reload.
    var limits: LimitsConfig {
        get { lock.withLock { _limits } }
        set { lock.withLock { _limits = newValue } }
    }

    init(limits: LimitsConfig) {
        self._limits = limits
    }

    /// Counts one more connection from `address` unless it already has `connectionsPerIP`.
    func admit(_ address: IPAddress) -> Bool {
        let ip = address.limitKey
        return lock.withLock {
            let n = perIP[ip, default: 0]
            guard LimitsConfig.allows(n, under: _limits.connectionsPerIP) else { return false }
            perIP[ip] = n + 1
            return true
        }
    }

    func release(_ address: IPAddress) {
        lock.withLock { Self.decrement(&perIP, address.limitKey) }
    }

    /// One less for `key`; the entry goes at zero, so the tables hold only sources with something open.
    private static func decrement(_ table: inout [IPAddress: Int], _ key: IPAddress) {
        let n = table[key, default: 0] - 1
        table[key] = n > 0 ? n : nil
    }

    /// Takes a handshake slot for `address`, or says which limit refuses it.
    func admitHandshake(_ address: IPAddress) -> HandshakeRefusal? {
        let ip = address.limitKey
        return lock.withLock {
            guard LimitsConfig.allows(handshakes, under: _limits.handshakesInFlight) else { return .total }
            let n = handshakesPerIP[ip, default: 0]
            guard LimitsConfig.allows(n, under: _limits.handshakesPerIP) else { return .perIP }
            handshakesPerIP[ip] = n + 1
            handshakes += 1
            return nil
        }
    }

    func endHandshake(_ address: IPAddress) {
        lock.withLock {
            Self.decrement(&handshakesPerIP, address.limitKey)
            handshakes = max(0, handshakes - 1)
        }
    }

    /// Counts one more connection without an allocation, unless `connectionsWithoutAllocation` are held.
    func admitUnallocated() -> Bool {
        lock.withLock {
            guard LimitsConfig.allows(unallocated, under: _limits.connectionsWithoutAllocation) else { return false }
            unallocated += 1
            return true
        }
    }

    func releaseUnallocated() {
        lock.withLock { unallocated = max(0, unallocated - 1) }
    }

    /// Handshakes in flight and connections without an allocation, now (for /stats and tests).
    var counts: (handshakes: Int, unallocated: Int) {
        lock.withLock { (handshakes, unallocated) }
    }
}
