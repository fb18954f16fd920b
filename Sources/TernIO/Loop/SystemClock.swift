#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import TernCore

/// The system's clocks, read through `Posix.clockTime`.
enum Clocks {
    @inline(__always)
    static func monotonicNanos() -> UInt64 {
        let ts = Posix.clockTime(CLOCK_MONOTONIC)
        return UInt64(max(0, ts.tv_sec)) &* 1_000_000_000 &+ UInt64(max(0, ts.tv_nsec))
    }

    static func monotonicSeconds() -> UInt64 {
        UInt64(max(0, Posix.clockTime(CLOCK_MONOTONIC).tv_sec))
    }

    static func unixSeconds() -> UInt64 {
        UInt64(max(0, Posix.clockTime(CLOCK_REALTIME).tv_sec))
    }
}

/// The clock a running server's handlers read on every tick: CLOCK_MONOTONIC for lifetimes,
/// CLOCK_REALTIME for nonces and TURN REST API usernames.
public final class SystemClock: CoarseClock {
    public init() {}
    public var monotonicSeconds: UInt64 { Clocks.monotonicSeconds() }
    public var unixSeconds: UInt64 { Clocks.unixSeconds() }
    /// CLOCK_MONOTONIC in microseconds (systemd's MONOTONIC_USEC= on reload).
    public static var monotonicMicroseconds: UInt64 { Clocks.monotonicNanos() / 1000 }
}
