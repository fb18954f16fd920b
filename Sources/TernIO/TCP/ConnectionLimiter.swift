#if canImport(Glibc)
import Glibc
#endif
import STUN
import TernCore

/// Stream connections per client IP, across every worker (SO_REUSEPORT spreads one client's
/// connections over all of them). Taken once per accept and once per close, never per packet.
final class ConnectionLimiter: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    private var perIP: [IPAddress: Int] = [:]
    private var _limit: Int
    /// Changed by a reload; connections above a lowered limit stay, new ones wait for room.
    var limit: Int {
        get { pthread_mutex_lock(&mutex); defer { pthread_mutex_unlock(&mutex) }; return _limit }
        set { pthread_mutex_lock(&mutex); _limit = newValue; pthread_mutex_unlock(&mutex) }
    }

    init(limit: Int) {
        self._limit = limit
        pthread_mutex_init(&mutex, nil)
    }

    deinit { pthread_mutex_destroy(&mutex) }

    /// Counts one more connection from `address` (for IPv6, its /64) unless it already has `limit`.
    func admit(_ address: IPAddress) -> Bool {
        let ip = address.limitKey
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        let n = perIP[ip, default: 0]
        guard n < _limit else { return false }
        perIP[ip] = n + 1
        return true
    }

    func release(_ address: IPAddress) {
        let ip = address.limitKey
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        let n = perIP[ip, default: 0] - 1
        perIP[ip] = n > 0 ? n : nil
    }
}
