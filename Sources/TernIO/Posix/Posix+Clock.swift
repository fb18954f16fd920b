#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

extension Posix {
    /// clock_gettime(2). With the clocks Tern reads (CLOCK_MONOTONIC, CLOCK_REALTIME) and a valid
    /// buffer the call cannot fail (its only errors are EINVAL and EFAULT), so there is no error to
    /// report: a failure would read as time zero. Not retried: it is not interruptible.
    @inline(__always)
    static func clockTime(_ id: clockid_t) -> timespec {
        var ts = timespec()
        if Glibc.clock_gettime(id, &ts) != 0 { return timespec() }
        return ts
    }
}
