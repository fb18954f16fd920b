import TernCore
/// The TLS context new connections use, swapped on reload (SIGHUP). Established sessions keep the
/// context they were made with (each SSL holds its own reference), so a reload never drops them.
public final class TLSContextHolder: @unchecked Sendable {
    private let lock = Lock()
    private var context: TLSServerContext
    /// Seconds a handshake may take.
    public let handshakeTimeout: UInt64

    public init(_ context: TLSServerContext, handshakeTimeout: UInt64 = UInt64(TLSConfig().handshakeTimeout)) {
        self.context = context
        self.handshakeTimeout = handshakeTimeout
    }

    public var current: TLSServerContext {
        lock.withLock { context }
    }

    public func replace(with new: TLSServerContext) {
        lock.withLock { context = new }
    }
}
