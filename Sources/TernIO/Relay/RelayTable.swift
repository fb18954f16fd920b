import STUN
import TernCore

/// A worker's relay sockets by the opaque handle the core knows them by (the core never sees a
/// descriptor). A handle names a slot of a dense array plus the slot's generation, so finding the
/// socket of a relayed datagram is an index and a compare, no hashing; a slot reused after a close
/// gets the next generation, so a stale handle finds nothing.
///
/// Handle layout: bits 0-19 the slot, bits 20-30 the generation; bit 31 is clear (handles of
/// reserved sockets, `ReservedRelays`, have it set).
struct RelayTable {
    enum Relay {
        case udp(RelaySocket)
        case tcp(TCPRelayListener)
    }

    private struct Slot {
        var generation: UInt32 = 0
        var relay: Relay?
        /// The descriptor of a UDP relay socket, kept next to it so a send finds it without
        /// retaining the socket object (-1 for a TCP relay or an empty slot).
        var udpDescriptor: Int32 = -1
    }

    static let slotBits: UInt32 = 20
    static let slotMask: UInt32 = (1 << slotBits) - 1
    static let generationMask: UInt32 = 0x7FF

    private var slots: [Slot] = []
    private var free: [Int] = []
    /// Where the generations of newly made slots start (moved on by `releaseSpareCapacity`).
    private var epoch: UInt32 = 0
    /// Open UDP relay sockets.
    private(set) var udpCount = 0
    /// Open TCP relayed addresses (RFC 6062).
    private(set) var tcpCount = 0

    /// A handle for a new relay, to be filled with `insert`. Nil when all slots are taken.
    mutating func reserveHandle() -> RelayHandle? {
        let slot: Int
        if let f = free.popLast() {
            slot = f
        } else {
            guard slots.count <= Int(Self.slotMask) else { return nil }
            slot = slots.count
            slots.append(Slot(generation: epoch))
        }
        slots[slot].generation = (slots[slot].generation &+ 1) & Self.generationMask
        return RelayHandle(id: slots[slot].generation << Self.slotBits | UInt32(slot))
    }

    /// Gives back a handle from `reserveHandle` that was never filled (the socket could not be made).
    mutating func unreserve(_ handle: RelayHandle) {
        guard let slot = index(handle), slots[slot].relay == nil else { return }
        free.append(slot)
    }

    mutating func insert(_ relay: Relay, for handle: RelayHandle) {
        guard let slot = index(handle) else { return }
        slots[slot].relay = relay
        switch relay {
        case .udp(let r):
            udpCount += 1
            slots[slot].udpDescriptor = r.socket.fd
        case .tcp:
            tcpCount += 1
        }
    }

    @inline(__always)
    private func index(_ handle: RelayHandle) -> Int? {
        let slot = Int(handle.id & Self.slotMask)
        guard handle.id & 0x8000_0000 == 0, slot < slots.count,
              slots[slot].generation == (handle.id >> Self.slotBits) & Self.generationMask else { return nil }
        return slot
    }

    @inline(__always)
    subscript(handle: RelayHandle) -> Relay? {
        guard let slot = index(handle) else { return nil }
        return slots[slot].relay
    }

    /// The descriptor of `handle`'s UDP relay socket, if it is open (the hot path: an index and a compare).
    @inline(__always)
    func udpDescriptor(_ handle: RelayHandle) -> Int32? {
        guard let slot = index(handle) else { return nil }
        let fd = slots[slot].udpDescriptor
        return fd >= 0 ? fd : nil
    }

    /// The UDP relay socket of `handle`, if it is open.
    @inline(__always)
    func udp(_ handle: RelayHandle) -> RelaySocket? {
        guard case .udp(let r)? = self[handle] else { return nil }
        return r
    }

    func tcp(_ handle: RelayHandle) -> TCPRelayListener? {
        guard case .tcp(let l)? = self[handle] else { return nil }
        return l
    }

    /// Forgets `handle`'s relay (its socket is being closed) and frees the slot.
    mutating func remove(_ handle: RelayHandle) {
        guard let slot = index(handle), let relay = slots[slot].relay else { return }
        switch relay {
        case .udp: udpCount -= 1
        case .tcp: tcpCount -= 1
        }
        slots[slot].relay = nil
        slots[slot].udpDescriptor = -1
        free.append(slot)
    }

    var count: Int { udpCount + tcpCount }

    /// Every open relay (shutdown, diagnostics).
    var all: [Relay] { slots.compactMap(\.relay) }

    /// After mass expiry: trailing free slots are dropped and the arrays shrink. Slots made again
    /// later start from a generation not handed out for a while (`epoch`), so an old handle that
    /// named a dropped slot does not match its successor.
    mutating func releaseSpareCapacity() {
        var dropped = false
        while let last = slots.last, last.relay == nil {
            slots.removeLast()
            dropped = true
        }
        guard dropped else { return }
        epoch = (epoch &+ 64) & Self.generationMask
        free = free.filter { $0 < slots.count }
        var compact: [Slot] = []
        compact.reserveCapacity(slots.count)
        compact.append(contentsOf: slots)
        slots = compact
        free = Array(free)
    }
}

/// Sockets held for a later Allocate by EVEN-PORT's R bit (RFC 8656 section 14.6), server-wide: the
/// Allocate that redeems the RESERVATION-TOKEN, or the expiry that discards it, may run on any
/// worker. Taken once per reservation, never per packet.
final class ReservedRelays: @unchecked Sendable {
    private let lock = Lock()
    private var sockets: [UInt32: Socket] = [:]
    private var last: UInt32 = 0

    /// Holds `socket` and returns the handle the core keeps in its reservation (bit 31 set).
    func hold(_ socket: Socket) -> RelayHandle {
        lock.withLock {
            repeat {
                last = (last &+ 1) & 0x7FFF_FFFF
            } while last == 0 || sockets[0x8000_0000 | last] != nil
            let id = 0x8000_0000 | last
            sockets[id] = socket
            return RelayHandle(id: id)
        }
    }

    /// The socket held under `handle`, no longer held here.
    func take(_ handle: RelayHandle) -> Socket? {
        lock.withLock { sockets.removeValue(forKey: handle.id) }
    }

    var count: Int { lock.withLock { sockets.count } }
}

extension Worker {
    /// The open UDP relay sockets by descriptor (tests and diagnostics).
    var relays: [Int32: RelaySocket] {
        var byFD: [Int32: RelaySocket] = [:]
        for case .udp(let r) in relayTable.all { byFD[r.socket.fd] = r }
        return byFD
    }
}
