import STUN

/// One worker's allocations, found by the client's 5-tuple (client packets) or by the relay socket
/// (peer packets). Both lookups are hash lookups on value keys: nothing allocated per packet.
public struct AllocationTable {
    public private(set) var byFiveTuple: [FiveTuple: Allocation] = [:]
    private var byRelay: [RelayHandle: Allocation] = [:]

    public init() {}

    public var count: Int { byFiveTuple.count }

    @inline(__always)
    public func allocation(for tuple: FiveTuple) -> Allocation? { byFiveTuple[tuple] }

    @inline(__always)
    public func allocation(forRelay handle: RelayHandle) -> Allocation? { byRelay[handle] }

    public func allocation(id: UInt64) -> Allocation? {
        byFiveTuple.values.first { $0.id == id }
    }

    mutating func insert(_ a: Allocation) {
        byFiveTuple[a.fiveTuple] = a
        for r in a.relays { byRelay[r.handle] = a }
    }

    mutating func remove(_ a: Allocation) {
        byFiveTuple[a.fiveTuple] = nil
        for r in a.relays { byRelay[r.handle] = nil }
    }

    public var all: Dictionary<FiveTuple, Allocation>.Values { byFiveTuple.values }

    /// Gives back the hash tables' spare room after many allocations ended (a Swift dictionary
    /// keeps its capacity when entries are removed).
    mutating func releaseSpareCapacity() {
        byFiveTuple.releaseSpareCapacity()
        byRelay.releaseSpareCapacity()
    }
}

extension Dictionary {
    /// Rebuilds the dictionary at its current size when it uses less than an eighth of a large
    /// capacity. Called off the data path, after mass expiry.
    public mutating func releaseSpareCapacity() {
        guard capacity >= 1024, count * 8 < capacity else { return }
        self = Dictionary(uniqueKeysWithValues: self.map { ($0.key, $0.value) })
    }
}
