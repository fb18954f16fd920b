import STUN
import TernCore

/// Stream connections per client IP, across every worker (SO_REUSEPORT spreads one client's
/// connections over all of them). Taken once per accept and once per close, never per packet.
final class ConnectionLimiter: @unchecked Sendable {
    private let lock = Lock()
    private var perIP: [IPAddress: Int] = [:]
    private var _limit: Int
    /// Changed by a reload; connections above a lowered limit stay, new ones wait for room.
    var limit: Int {
        get { lock.withLock { _limit } }
        set { lock.withLock { _limit = newValue } }
    }

    init(limit: Int) {
        self._limit = limit
    }

    /// Counts one more connection from `address` (for IPv6, its /64) unless it already has `limit`.
    func admit(_ address: IPAddress) -> Bool {
        let ip = address.limitKey
        return lock.withLock {
            let n = perIP[ip, default: 0]
            guard n < _limit else { return false }
            perIP[ip] = n + 1
            return true
        }
    }

    func release(_ address: IPAddress) {
        let ip = address.limitKey
        lock.withLock {
            let n = perIP[ip, default: 0] - 1
            perIP[ip] = n > 0 ? n : nil
        }
    }
}
