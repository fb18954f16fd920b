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
    /// EVEN-PORT reservations by token. Each holds one allocation's count for the user and IP of the
    /// Allocate that made it, for every quota, as long as it lives (its socket holds a relay port).
    private var reservations: [UInt64: Reservation] = [:]
    private struct Reservation {
        var reserved: OpenedRelay.Reserved
        var expiry: UInt64
        var user: String
        var ip: IPAddress
    }

    /// What `redeemReservation` found.
    enum Redemption {
        case redeemed(OpenedRelay.Reserved)
        case notFound
        case refused(AllocationRefusal)
    }

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
    /// Relayed transport addresses of live allocations, bound and advertised: a peer there is another
    /// client of this server (TURN to TURN), which the peer policy admits on the server's own relay
    /// addresses even when they are private or loopback.
    private var liveRelays: Set<TransportAddress> = []

    /// The next `cluster.alternateServers` entry of each family (round robin over all workers).
    private var alternateTurn: [AddressFamily: Int] = [:]

    public init() {}

    /// Index of the alternate to send next among `count` of `family`, taken in turn.
    func nextAlternate(_ family: AddressFamily, count: Int) -> Int {
        lock.lock(); defer { lock.unlock() }
        let n = alternateTurn[family, default: 0]
        alternateTurn[family] = n &+ 1
        return n % count
    }

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

    func addLiveRelays(_ slots: [RelaySlot]) {
        lock.lock(); defer { lock.unlock() }
        for s in slots { liveRelays.insert(s.bound); liveRelays.insert(s.advertised) }
    }

    func removeLiveRelays(_ slots: [RelaySlot]) {
        lock.lock(); defer { lock.unlock() }
        for s in slots { liveRelays.remove(s.bound); liveRelays.remove(s.advertised) }
    }

    /// Whether `address` is the relayed address of a live allocation of this server.
    public func isLiveRelay(_ address: TransportAddress) -> Bool {
        lock.lock(); defer { lock.unlock() }
        return liveRelays.contains(address)
    }

    public func claimTCPRelayPort(_ address: TransportAddress) -> Bool {
        lock.lock(); defer { lock.unlock() }
        return tcpRelayPorts.insert(address).inserted
    }

    public func releaseTCPRelayPort(_ address: TransportAddress) {
        lock.lock(); defer { lock.unlock() }
        tcpRelayPorts.remove(address)
    }

    /// Allocations counted against `limits.allocationsTotal` now (reserved EVEN-PORT ports included).
    public var allocationCount: Int {
        lock.lock(); defer { lock.unlock() }
        return total
    }

    func makeID() -> UInt64 {
        lock.lock(); defer { lock.unlock() }
        let id = nextID
        nextID &+= 1
        return id
    }

    /// Admits `count` more allocations for `user` from `ip` (2 for an Allocate with EVEN-PORT's R
    /// bit: the reserved port counts as an allocation while it is held), or says which limit refuses
    /// it: the rate per IP, then the quotas per user, per IP and in total (RFC 8656 section 7.2: 486
    /// for quotas, 508 for capacity; a limit of 0 is no limit). On success the caller owns `count`
    /// counts of each, given back by `releaseAllocation` (or by the reservation that takes one).
    func reserveAllocation(user: String, ip: IPAddress, limits: LimitsConfig, now: UInt64, count: Int = 1) -> AllocationRefusal? {
        guard allocationRate.admit(ip, now: now, limit: limits.allocationRatePerIP) else { return .rate }
        lock.lock(); defer { lock.unlock() }
        return countLocked(user: user, ip: ip, limits: limits, count: count)
    }

    private func countLocked(user: String, ip: IPAddress, limits: LimitsConfig, count: Int) -> AllocationRefusal? {
        let n = perUser[user, default: 0]
        guard LimitsConfig.allows(n + count - 1, under: limits.allocationsPerUser) else { return .userQuota }
        let m = perIP[ip.limitKey, default: 0]
        guard LimitsConfig.allows(m + count - 1, under: limits.allocationsPerIP) else { return .ipQuota }
        guard LimitsConfig.allows(total + count - 1, under: limits.allocationsTotal) else { return .total }
        perUser[user] = n + count
        perIP[ip.limitKey] = m + count
        total += count
        return nil
    }

    func releaseAllocation(user: String, ip: IPAddress, count: Int = 1) {
        lock.lock(); defer { lock.unlock() }
        releaseLocked(user: user, ip: ip, count: count)
    }

    private func releaseLocked(user: String, ip: IPAddress, count: Int) {
        let n = perUser[user, default: 0] - count
        perUser[user] = n > 0 ? n : nil
        if n <= 0 { userBandwidth[user] = nil }
        let m = perIP[ip.limitKey, default: 0] - count
        perIP[ip.limitKey] = m > 0 ? m : nil
        total = max(0, total - count)
    }

    /// An Allocate with RESERVATION-TOKEN (RFC 8656 section 7.2): the reservation's count passes to
    /// the new allocation of `user` from `ip`, which must itself fit the quotas (and the rate). If it
    /// does not, the reservation stays as it was.
    func redeemReservation(_ token: UInt64, user: String, ip: IPAddress, limits: LimitsConfig, now: UInt64) -> Redemption {
        guard allocationRate.admit(ip, now: now, limit: limits.allocationRatePerIP) else { return .refused(.rate) }
        lock.lock(); defer { lock.unlock() }
        guard let r = reservations[token] else { return .notFound }
        releaseLocked(user: r.user, ip: r.ip, count: 1)
        if let refusal = countLocked(user: user, ip: ip, limits: limits, count: 1) {
            _ = countLocked(user: r.user, ip: r.ip, limits: LimitsConfig.unlimited, count: 1)
            return .refused(refusal)
        }
        reservations[token] = nil
        return .redeemed(r.reserved)
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

    /// RFC 8656 section 14.9: a fresh 8-byte token (CSPRNG) naming a held socket. The reservation
    /// takes over one count of `user` and `ip` that the caller reserved (`reserveAllocation(count: 2)`),
    /// given back when it expires or is redeemed.
    func addReservation(_ reserved: OpenedRelay.Reserved, expiry: UInt64, user: String, ip: IPAddress) -> UInt64 {
        var rng = SystemRandomNumberGenerator()
        lock.lock(); defer { lock.unlock() }
        var token = rng.next() as UInt64
        while reservations[token] != nil || token == 0 { token = rng.next() }
        reservations[token] = Reservation(reserved: reserved, expiry: expiry, user: user, ip: ip)
        return token
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
            releaseLocked(user: r.user, ip: r.ip, count: 1)
            reservations[token] = nil
        }
        return out
    }

    /// Everything still held, for shutdown.
    public func drainReservations() -> [OpenedRelay.Reserved] {
        lock.lock(); defer { lock.unlock() }
        let out = reservations.values.map(\.reserved)
        for r in reservations.values { releaseLocked(user: r.user, ip: r.ip, count: 1) }
        reservations.removeAll()
        return out
    }
}
