import Foundation
import STUN

/// The little TURN state that must be shared between workers, all of it off the data path and
/// taken only on Allocate, deallocation and the once-a-second sweep: allocation ids, per-user
/// allocation counts (for 486), and EVEN-PORT reservations, whose redeeming Allocate comes from
/// another 5-tuple and so may land on another worker.
public final class SharedTurnState: @unchecked Sendable {
    private let lock = NSLock()
    private var nextID: UInt64 = 1
    private var perUser: [String: Int] = [:]
    private var perIP: [IPAddress: Int] = [:]
    private var total = 0
    private var userBandwidth: [String: UserBandwidth] = [:]
    /// New allocations per client IP per second (`limits.allocationRatePerIP`).
    public let allocationRate = SourceRateTable()
    /// Unauthenticated error responses per source IP per second (`limits.unauthenticatedRatePerIP`).
    public let unauthenticatedReplies = SourceRateTable()
    private var reservations: [UInt64: (reserved: OpenedRelay.Reserved, expiry: UInt64)] = [:]

    /// RFC 6062 peer data connections by CONNECTION-ID: which worker owns each, for whom, and
    /// whether a client data connection has claimed it. ConnectionBind arrives on a new client
    /// connection that the kernel may hand to any worker.
    public struct PeerConnectionEntry: Sendable {
        public var worker: Int
        public var username: String
        public var bound: Bool
    }
    private var peerConnections: [UInt32: PeerConnectionEntry] = [:]
    /// TCP relay ports in use: TCP relays bind with SO_REUSEPORT (their outgoing connections share
    /// the port), so the kernel would not stop two allocations from taking the same one.
    private var tcpRelayPorts: Set<TransportAddress> = []

    public init() {}

    func registerPeerConnection(worker: Int, username: String) -> UInt32 {
        var rng = SystemRandomNumberGenerator()
        lock.lock(); defer { lock.unlock() }
        var id = rng.next() as UInt32
        while id == 0 || peerConnections[id] != nil { id = rng.next() }
        peerConnections[id] = PeerConnectionEntry(worker: worker, username: username, bound: false)
        return id
    }

    /// Marks `id` bound if it exists, is unbound and belongs to `username`.
    func claimPeerConnection(_ id: UInt32, username: String) -> (entry: PeerConnectionEntry?, ok: Bool) {
        lock.lock(); defer { lock.unlock() }
        guard let e = peerConnections[id], !e.bound else { return (nil, false) }
        guard e.username == username else { return (e, false) }
        peerConnections[id]?.bound = true
        return (e, true)
    }

    public func removePeerConnection(_ id: UInt32) {
        lock.lock(); defer { lock.unlock() }
        peerConnections[id] = nil
    }

    public func claimTCPRelayPort(_ address: TransportAddress) -> Bool {
        lock.lock(); defer { lock.unlock() }
        return tcpRelayPorts.insert(address).inserted
    }

    public func releaseTCPRelayPort(_ address: TransportAddress) {
        lock.lock(); defer { lock.unlock() }
        tcpRelayPorts.remove(address)
    }

    func makeID() -> UInt64 {
        lock.lock(); defer { lock.unlock() }
        let id = nextID
        nextID &+= 1
        return id
    }

    /// Admits one more allocation for `user` from `ip`, or says which limit refuses it: the rate per
    /// IP, then the quotas per user, per IP and in total (RFC 8656 section 7.2: 486 for quotas, 508
    /// for capacity). On success the caller owns one count of each, given back by `releaseAllocation`.
    func reserveAllocation(user: String, ip: IPAddress, limits: LimitsConfig, now: UInt64) -> AllocationRefusal? {
        guard allocationRate.admit(ip, now: now, limit: limits.allocationRatePerIP) else { return .rate }
        lock.lock(); defer { lock.unlock() }
        let n = perUser[user, default: 0]
        guard n < limits.allocationsPerUser else { return .userQuota }
        let m = perIP[ip.limitKey, default: 0]
        guard m < limits.allocationsPerIP else { return .ipQuota }
        guard total < limits.allocationsTotal else { return .total }
        perUser[user] = n + 1
        perIP[ip.limitKey] = m + 1
        total += 1
        return nil
    }

    func releaseAllocation(user: String, ip: IPAddress) {
        lock.lock(); defer { lock.unlock() }
        let n = perUser[user, default: 0] - 1
        perUser[user] = n > 0 ? n : nil
        if n <= 0 { userBandwidth[user] = nil }
        let m = perIP[ip.limitKey, default: 0] - 1
        perIP[ip.limitKey] = m > 0 ? m : nil
        total = max(0, total - 1)
    }

    /// The bandwidth bucket all of `user`'s allocations draw from (created with its first one; its
    /// rate follows the config on each new allocation). nil when per-user bandwidth is unlimited.
    func bandwidth(for user: String, rate: Int) -> UserBandwidth? {
        guard rate > 0 else { return nil }
        lock.lock(); defer { lock.unlock() }
        if let b = userBandwidth[user] {
            b.setRate(rate)
            return b
        }
        let b = UserBandwidth(rate: rate)
        userBandwidth[user] = b
        return b
    }

    public func allocations(of user: String) -> Int {
        lock.lock(); defer { lock.unlock() }
        return perUser[user, default: 0]
    }

    /// RFC 8656 section 14.9: a fresh 8-byte token (CSPRNG) naming a held socket.
    func addReservation(_ reserved: OpenedRelay.Reserved, expiry: UInt64) -> UInt64 {
        var rng = SystemRandomNumberGenerator()
        lock.lock(); defer { lock.unlock() }
        var token = rng.next() as UInt64
        while reservations[token] != nil || token == 0 { token = rng.next() }
        reservations[token] = (reserved, expiry)
        return token
    }

    func takeReservation(_ token: UInt64) -> OpenedRelay.Reserved? {
        lock.lock(); defer { lock.unlock() }
        return reservations.removeValue(forKey: token)?.reserved
    }

    /// EVEN-PORT reservations held now (their sockets count as relay ports in use).
    public var reservationCount: Int {
        lock.lock(); defer { lock.unlock() }
        return reservations.count
    }

    /// Removes and returns reservations whose time is up; the caller closes their sockets.
    func expiredReservations(now: UInt64) -> [OpenedRelay.Reserved] {
        lock.lock(); defer { lock.unlock() }
        var out: [OpenedRelay.Reserved] = []
        for (token, r) in reservations where r.expiry <= now {
            out.append(r.reserved)
            reservations[token] = nil
        }
        return out
    }

    /// Everything still held, for shutdown.
    public func drainReservations() -> [OpenedRelay.Reserved] {
        lock.lock(); defer { lock.unlock() }
        let out = reservations.values.map(\.reserved)
        reservations.removeAll()
        return out
    }
}
