import Atomics
import STUN

/// The one throttle every answer to a request that did not authenticate goes through, whatever its
/// method and whether TURN is on: 401/438 challenges, the 400/420/441 sent before or instead of a
/// credential check (ConnectionBind included), the 400 to an unsupported method or to a TURN request
/// when TURN is off (`limits.unauthenticatedRatePerIP`), and Binding success responses, which have
/// their own, higher budget (`limits.bindingRatePerIP`).
///
/// Such requests cost a sender nothing to spoof, so every answer to one could be aimed at a victim
/// (RFC 8656 section 21.1 and RFC 8489 section 16.1 on reflection). Past its budget a source's
/// requests are dropped without an answer and counted; a real client retransmits (RFC 8489 section
/// 6.2.1) and is answered in the next second.
///
/// Shared by every worker's handler (the kernel spreads one source's datagrams over all of them);
/// a reload changes the rates (`update`), never the tables.
public final class ReplyThrottle: @unchecked Sendable {
    public let unauthenticated = SourceRateTable()
    public let bindings = SourceRateTable()
    private let unauthenticatedRate: ManagedAtomic<Int>
    private let bindingRate: ManagedAtomic<Int>

    public init(limits: LimitsConfig = LimitsConfig()) {
        unauthenticatedRate = ManagedAtomic(limits.unauthenticatedRatePerIP)
        bindingRate = ManagedAtomic(limits.bindingRatePerIP)
    }

    /// Reload: the rates in `limits` apply from the next request on.
    public func update(_ limits: LimitsConfig) {
        unauthenticatedRate.store(limits.unauthenticatedRatePerIP, ordering: .relaxed)
        bindingRate.store(limits.bindingRatePerIP, ordering: .relaxed)
    }

    public var unauthenticatedRatePerIP: Int { unauthenticatedRate.load(ordering: .relaxed) }
    public var bindingRatePerIP: Int { bindingRate.load(ordering: .relaxed) }

    func admitUnauthenticated(_ ip: IPAddress, now: UInt64) -> Bool {
        unauthenticated.admit(ip, now: now, limit: unauthenticatedRatePerIP)
    }

    func admitBinding(_ ip: IPAddress, now: UInt64) -> Bool {
        bindings.admit(ip, now: now, limit: bindingRatePerIP)
    }

    /// Once a second, from every worker's tick (only the first call in a second does any work).
    func sweep(now: UInt64) {
        unauthenticated.sweep(now: now)
        bindings.sweep(now: now)
    }
}
