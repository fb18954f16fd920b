import Atomics

/// Where the handler's coarse time comes from: whole seconds, read once a second by the worker's
/// tick (`RequestHandler.tick()`), never per packet. The event loop passes the system's clocks
/// (`SystemClock` in TernIO); tests pass a `ManualClock` that only they move, so no timer can move
/// time under them.
public protocol CoarseClock: AnyObject, Sendable {
    /// Seconds on a clock that never goes back (lifetimes, expiry, rates).
    var monotonicSeconds: UInt64 { get }
    /// Wall-clock seconds since 1970 (nonces and TURN REST API usernames).
    var unixSeconds: UInt64 { get }
}

/// A clock that stands still until `advance(by:)` moves it: both readings move together. Safe to
/// read from any thread (a worker's timer reads it while the test moves it).
public final class ManualClock: CoarseClock {
    private let monotonic: ManagedAtomic<UInt64>
    private let unix: ManagedAtomic<UInt64>

    /// Starts at the given readings (defaults: an arbitrary monotonic second and a wall-clock time
    /// in 2027, so TURN REST API usernames and nonces have a realistic present).
    public init(monotonic: UInt64 = 1_000, unix: UInt64 = 1_800_000_000) {
        self.monotonic = ManagedAtomic(monotonic)
        self.unix = ManagedAtomic(unix)
    }

    /// Starts where `clock` is now (tests against a real server whose clients use real time).
    public convenience init(startingAt clock: CoarseClock) {
        self.init(monotonic: clock.monotonicSeconds, unix: clock.unixSeconds)
    }

    public var monotonicSeconds: UInt64 { monotonic.load(ordering: .sequentiallyConsistent) }
    public var unixSeconds: UInt64 { unix.load(ordering: .sequentiallyConsistent) }

    /// Moves both readings forward by `seconds`.
    public func advance(by seconds: UInt64) {
        monotonic.wrappingIncrement(by: seconds, ordering: .sequentiallyConsistent)
        unix.wrappingIncrement(by: seconds, ordering: .sequentiallyConsistent)
    }
}
