#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A pthread mutex whose storage lives in the tail of a heap object (ManagedBuffer), so its address
/// never moves: pthread requires a stable address, and Swift makes no such promise for a stored
/// property passed with `&` (swift-nio's `NIOLock` is built the same way for the same reason).
/// Every mutex in TernIO is one of these. Never taken on the hot path.
final class LockStorage: ManagedBuffer<Void, pthread_mutex_t> {
    static func make() -> LockStorage {
        let buffer = LockStorage.create(minimumCapacity: 1) { _ in () }
        // `create` returns a ManagedBuffer of the dynamic subclass it was called on.
        let storage = unsafeDowncast(buffer, to: LockStorage.self)
        storage.withUnsafeMutablePointerToElements { mutex in
            mutex.initialize(to: pthread_mutex_t())
            let r = pthread_mutex_init(mutex, nil)
            precondition(r == 0, "pthread_mutex_init failed: \(r)")
        }
        return storage
    }

    @inline(__always)
    func lock() {
        let r = withUnsafeMutablePointerToElements { pthread_mutex_lock($0) }
        precondition(r == 0, "pthread_mutex_lock failed: \(r)")
    }

    @inline(__always)
    func unlock() {
        let r = withUnsafeMutablePointerToElements { pthread_mutex_unlock($0) }
        precondition(r == 0, "pthread_mutex_unlock failed: \(r)")
    }

    deinit {
        withUnsafeMutablePointerToElements { mutex in
            _ = pthread_mutex_destroy(mutex)
            mutex.deinitialize(count: 1)
        }
    }
}

/// A mutex with a stable address (see `LockStorage`); a value type holding a reference, so copies
/// share one mutex.
struct Lock: @unchecked Sendable {
    private let storage = LockStorage.make()

    init() {}

    @inline(__always)
    func lock() { storage.lock() }

    @inline(__always)
    func unlock() { storage.unlock() }

    /// Runs `body` with the mutex held.
    @inline(__always)
    func withLock<T>(_ body: () throws -> T) rethrows -> T {
        storage.lock()
        defer { storage.unlock() }
        return try body()
    }
}

/// A value guarded by its own `Lock` (for state read from other threads, such as readiness flags).
final class Locked<Value>: @unchecked Sendable {
    private let lock = Lock()
    private var value: Value

    init(_ value: Value) { self.value = value }

    func withLock<T>(_ body: (inout Value) throws -> T) rethrows -> T {
        try lock.withLock { try body(&value) }
    }

    var current: Value { lock.withLock { value } }
}
