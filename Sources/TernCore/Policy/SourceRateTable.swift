import Foundation
import STUN

/// Events per source IP per second (new allocations, unauthenticated answers, Binding responses),
/// shared by all workers: a client's datagrams are spread over workers by the kernel's SO_REUSEPORT
/// hash of the whole 4-tuple, so a per-worker count would let one IP have `workers` times the limit.
///
/// Each IP has a bucket refilled once a second, `limit` deep (a token bucket with a one-second
/// refill). Off the data path: taken only for Allocate, Binding and unauthenticated replies.
///
/// The table is bounded at `capacity` sources and kept in least-recently-seen order (an intrusive
/// doubly linked list over a slot array, O(1) per event). When it is full, the source seen least
/// recently is forgotten to make room, so a spoofed flood from random sources can neither grow it
/// nor lock a legitimate newcomer out: the newcomer is admitted at once. Forgetting a source only
/// resets its count, which a spoofing sender could have had anyway by changing its address.
public final class SourceRateTable: @unchecked Sendable {
    private struct Node {
        var key: IPAddress
        var second: UInt64
        var used: Int
        var prev: Int32
        var next: Int32
    }
    private let lock = NSLock()
    private var slots: [IPAddress: Int32] = [:]
    private var nodes: [Node] = []
    private var free: [Int32] = []
    /// Least recently seen (evicted first) and most recently seen; -1 when empty.
    private var head: Int32 = -1
    private var tail: Int32 = -1
    public let capacity: Int
    /// Sources forgotten to make room for a new one while the table was full.
    public private(set) var evicted: UInt64 = 0

    public init(capacity: Int = 65_536) {
        precondition(capacity >= 1 && capacity < Int(Int32.max))
        self.capacity = capacity
    }

    /// Counts one event from `address` (for IPv6: its /64, see `IPAddress.limitKey`) at monotonic
    /// second `now`; false if that source already had `limit` this second. A `limit` of 0 means
    /// unlimited: always true, and nothing is tracked.
    public func admit(_ address: IPAddress, now: UInt64, limit: Int) -> Bool {
        guard limit > 0 else { return true }
        let ip = address.limitKey
        lock.lock(); defer { lock.unlock() }
        if let i = slots[ip] {
            moveToTail(i)
            let n = Int(i)
            if nodes[n].second != now {
                nodes[n].second = now
                nodes[n].used = 0
            }
            guard nodes[n].used < limit else { return false }
            nodes[n].used += 1
            return true
        }
        if slots.count >= capacity {
            evictHead()
            evicted &+= 1
        }
        insertAtTail(Node(key: ip, second: now, used: 1, prev: -1, next: -1))
        return true
    }

    /// Forgets sources not seen this second. They sit at the least-recently-seen end, so this costs
    /// only what it removes (each worker calls it once a second).
    public func sweep(now: UInt64) {
        lock.lock(); defer { lock.unlock() }
        while head >= 0, nodes[Int(head)].second != now { evictHead() }
        if slots.isEmpty {
            // After a flood: give the slot array back rather than hold its peak.
            nodes = []
            free = []
        }
    }

    public var count: Int {
        lock.lock(); defer { lock.unlock() }
        return slots.count
    }

    private func unlink(_ i: Int32) {
        let n = nodes[Int(i)]
        if n.prev >= 0 { nodes[Int(n.prev)].next = n.next } else { head = n.next }
        if n.next >= 0 { nodes[Int(n.next)].prev = n.prev } else { tail = n.prev }
    }

    private func link(_ i: Int32) {
        nodes[Int(i)].prev = tail
        nodes[Int(i)].next = -1
        if tail >= 0 { nodes[Int(tail)].next = i } else { head = i }
        tail = i
    }

    private func moveToTail(_ i: Int32) {
        guard tail != i else { return }
        unlink(i)
        link(i)
    }

    private func evictHead() {
        let i = head
        guard i >= 0 else { return }
        unlink(i)
        slots[nodes[Int(i)].key] = nil
        free.append(i)
    }

    private func insertAtTail(_ node: Node) {
        let i: Int32
        if let f = free.popLast() {
            i = f
            nodes[Int(i)] = node
        } else {
            i = Int32(nodes.count)
            nodes.append(node)
        }
        slots[node.key] = i
        link(i)
    }
}

extension IPAddress {
    /// The key per-source limits count under: an IPv4 address, or an IPv6 address's /64. One host
    /// (one SLAAC subnet) owns a whole /64, so counting IPv6 per address would give one attacker
    /// 2^64 separate budgets.
    public var limitKey: IPAddress {
        switch self {
        case .v4: return self
        case .v6(let hi, _): return .v6(hi, 0)
        }
    }
}
