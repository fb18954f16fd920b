#if canImport(Glibc)
import Glibc
#endif

/// The TLS context new connections use, swapped on reload (SIGHUP). Established sessions keep the
/// context they were made with (each SSL holds its own reference), so a reload never drops them.
public final class TLSContextHolder: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    private var context: TLSServerContext
    /// Seconds a handshake may take.
    public let handshakeTimeout: UInt64

    public init(_ context: TLSServerContext, handshakeTimeout: UInt64 = 10) {
        self.context = context
        self.handshakeTimeout = handshakeTimeout
        pthread_mutex_init(&mutex, nil)
    }

    deinit { pthread_mutex_destroy(&mutex) }

    public var current: TLSServerContext {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return context
    }

    public func replace(with new: TLSServerContext) {
        pthread_mutex_lock(&mutex)
        context = new
        pthread_mutex_unlock(&mutex)
    }
}
