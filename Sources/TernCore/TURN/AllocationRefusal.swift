import Atomics

/// Which limit refused an Allocate.
public enum AllocationRefusal: Sendable, Equatable {
    /// The per-IP rate of new allocations (486).
    case rate
    /// The user's quota (486).
    case userQuota
    /// The client IP's quota (486).
    case ipQuota
    /// The server's total (508).
    case total

    var code: Int { self == .total ? 508 : 486 }
}

/// A user's relayed bytes per second across all workers: a token bucket refilled once a second on
/// the coarse clock, one second deep. Lock-free (swift-atomics): the data path of every worker with
/// one of the user's allocations draws from it, so it must not take a lock per packet.
public final class UserBandwidth: Sendable {
    private let rate: ManagedAtomic<Int>
    private let second = ManagedAtomic<UInt64>(.max)
    private let left = ManagedAtomic<Int>(0)

    init(rate: Int) {
        self.rate = ManagedAtomic(rate)
    }

    func setRate(_ r: Int) { rate.store(r, ordering: .relaxed) }

    /// Takes `bytes` from this second's budget; false (and nothing taken) when it does not have them.
    @inline(__always)
    func spend(_ bytes: Int, now: UInt64) -> Bool {
        let s = second.load(ordering: .relaxed)
        if s != now, second.compareExchange(expected: s, desired: now, ordering: .relaxed).exchanged {
            left.store(rate.load(ordering: .relaxed), ordering: .relaxed)
        }
        if left.loadThenWrappingDecrement(by: bytes, ordering: .relaxed) >= bytes { return true }
        left.wrappingIncrement(by: bytes, ordering: .relaxed)
        return false
    }
}
