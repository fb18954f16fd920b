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

    /// Counts one more allocation for `user` unless that would pass `limit`.
    func reserveAllocation(for user: String, limit: Int) -> Bool {
        lock.lock(); defer { lock.unlock() }
        let n = perUser[user, default: 0]
        guard n < limit else { return false }
        perUser[user] = n + 1
        return true
    }

    func releaseAllocation(for user: String) {
        lock.lock(); defer { lock.unlock() }
        let n = perUser[user, default: 0] - 1
        perUser[user] = n > 0 ? n : nil
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
