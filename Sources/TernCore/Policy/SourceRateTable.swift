import Foundation
import STUN

/// Events per source IP per second (new allocations, unauthenticated responses), shared by all
/// workers: a client's datagrams are spread over workers by the kernel's SO_REUSEPORT hash of the
/// whole 4-tuple, so a per-worker count would let one IP have `workers` times the limit.
///
/// Each IP has a bucket refilled once a second, `limit` deep (a token bucket with a one-second
/// refill). Off the data path: taken only for Allocate and for unauthenticated replies. The table
/// is bounded: spoofed floods from random sources cannot grow it past `capacity` entries; when full,
/// events from IPs not yet in it are refused until the next sweep (at most a second), which costs a
/// legitimate newcomer one retransmission, never the server its memory.
public final class SourceRateTable: @unchecked Sendable {
    private struct Window { var second: UInt64; var used: Int }
    private let lock = NSLock()
    private var windows: [IPAddress: Window] = [:]
    private var lastSweep: UInt64 = .max
    public let capacity: Int
    /// Events refused because the table was full.
    public private(set) var refusedFull: UInt64 = 0

    public init(capacity: Int = 65_536) {
        self.capacity = capacity
    }

    /// Counts one event from `ip` at monotonic second `now`; false if `ip` (for IPv6: its /64, see
    /// `IPAddress.limitKey`) already had `limit` this second.
    public func admit(_ address: IPAddress, now: UInt64, limit: Int) -> Bool {
        let ip = address.limitKey
        lock.lock(); defer { lock.unlock() }
        if var w = windows[ip] {
            if w.second != now { w = Window(second: now, used: 0) }
            guard w.used < limit else { return false }
            w.used += 1
            windows[ip] = w
            return true
        }
        if windows.count >= capacity {
            // At most one sweep per second: a flood of new sources must not make each event O(n).
            if lastSweep != now { sweepLocked(now: now) }
            guard windows.count < capacity else {
                refusedFull &+= 1
                return false
            }
        }
        guard limit > 0 else { return false }
        windows[ip] = Window(second: now, used: 1)
        return true
    }

    /// Forgets sources whose second has passed (each worker calls it once a second; only the first
    /// call in a second does any work).
    public func sweep(now: UInt64) {
        lock.lock(); defer { lock.unlock() }
        if lastSweep != now { sweepLocked(now: now) }
    }

    private func sweepLocked(now: UInt64) {
        lastSweep = now
        guard !windows.isEmpty else { return }
        windows = windows.filter { $0.value.second == now }
    }

    public var count: Int {
        lock.lock(); defer { lock.unlock() }
        return windows.count
    }
}

extension IPAddress {
    /// The key per-source limits count under: an IPv4 address, or an IPv6 address's /64. One host
    /// (one SLAAC subnet) owns a whole /64, so counting IPv6 per address would give one attacker
    /// 2^64 separate budgets.
    public var limitKey: IPAddress {
        switch self {
        case .v4: return self
        case .v6(let hi, _): return .v6(hi, 0)
        }
    }
}
