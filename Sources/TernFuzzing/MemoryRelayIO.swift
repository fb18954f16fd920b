import STUN
import TernCore

/// The event loop's side of the core, in memory: relay "sockets" are numbers with addresses from a
/// small range, and sends are counted, never made. Used by the request handler's fuzz target and
/// the corpus replay test, where thousands of inputs a second must not bind a port or leak one.
/// (Real sockets are exercised by the integration and hostile-client tests.)
public final class MemoryRelayIO: RelayIO {
    public let ipv4 = IPAddress("192.0.2.10")!
    public let ipv6 = IPAddress("2001:db8::10")!
    public let ports: ClosedRange<UInt16>
    private var open: [RelayHandle: TransportAddress] = [:]
    private var reserved: [RelayHandle: TransportAddress] = [:]
    private var nextHandle: UInt32 = 100
    public private(set) var sent = 0
    /// Whether to keep every datagram sent in `datagrams` (the core tests); the fuzz target sends
    /// thousands and keeps only the count.
    public var recordsSends = false
    /// Families with no relay address (openRelay answers `.familyUnavailable`, the handler 440).
    public var unavailableFamilies: Set<AddressFamily> = []
    public private(set) var datagrams: [SentDatagram] = []

    /// One datagram a relay sent to a peer.
    public struct SentDatagram: Equatable, Sendable {
        public var from: TransportAddress
        public var to: TransportAddress
        public var bytes: [UInt8]
        public init(from: TransportAddress, to: TransportAddress, bytes: [UInt8]) {
            self.from = from
            self.to = to
            self.bytes = bytes
        }
    }

    public init(ports: ClosedRange<UInt16> = 50_000...50_015) {
        self.ports = ports
    }

    /// Sockets open now (relays and reservations): the target checks that ending every allocation
    /// gives each one back.
    public var openCount: Int { open.count + reserved.count }

    private func inUse(_ a: TransportAddress) -> Bool {
        open.values.contains(a) || reserved.values.contains(a)
    }

    private func freePort(_ ip: IPAddress, even: Bool, pair: Bool) -> UInt16? {
        for p in ports {
            if even && p % 2 != 0 { continue }
            if inUse(TransportAddress(ip: ip, port: p)) { continue }
            if pair && (p == ports.upperBound || inUse(TransportAddress(ip: ip, port: p + 1))) { continue }
            return p
        }
        return nil
    }

    public func openRelay(family: AddressFamily, near: IPAddress, evenPort: Bool, reserveNext: Bool,
                          dontFragment: Bool) -> Result<OpenedRelay, RelayOpenError> {
        guard !unavailableFamilies.contains(family) else { return .failure(.familyUnavailable) }
        let ip = family == .ipv4 ? ipv4 : ipv6
        guard let port = freePort(ip, even: evenPort || reserveNext, pair: reserveNext) else { return .failure(.noPortAvailable) }
        nextHandle &+= 1
        let handle = RelayHandle(id: nextHandle)
        let bound = TransportAddress(ip: ip, port: port)
        open[handle] = bound
        var next: OpenedRelay.Reserved? = nil
        if reserveNext {
            nextHandle &+= 1
            let r = OpenedRelay.Reserved(handle: RelayHandle(id: nextHandle), bound: TransportAddress(ip: ip, port: port + 1))
            reserved[r.handle] = r.bound
            next = r
        }
        return .success(OpenedRelay(handle: handle, bound: bound, reservedNext: next))
    }

    public func adoptReserved(_ r: OpenedRelay.Reserved, dontFragment: Bool) -> OpenedRelay {
        precondition(reserved.removeValue(forKey: r.handle) != nil, "adopting a reservation that is not held")
        open[r.handle] = r.bound
        return OpenedRelay(handle: r.handle, bound: r.bound)
    }

    public func closeRelay(_ handle: RelayHandle) {
        precondition(open.removeValue(forKey: handle) != nil, "closing relay \(handle.id) twice or never opened")
    }

    public func discardReserved(_ r: OpenedRelay.Reserved) {
        precondition(reserved.removeValue(forKey: r.handle) != nil, "discarding reservation \(r.handle.id) twice")
    }

    public func openTCPRelay(family: AddressFamily, near: IPAddress) -> Result<OpenedRelay, RelayOpenError> {
        openRelay(family: family, near: near, evenPort: false, reserveNext: false, dontFragment: false)
    }

    /// RFC 6062 Connects the handler asked for, in order (their outcome is the test's to report).
    public private(set) var connects: [(relay: RelayHandle, peer: TransportAddress, connectionID: UInt32)] = []

    public func connectPeer(from relay: RelayHandle, to peer: TransportAddress, connectionID: UInt32) {
        connects.append((relay, peer, connectionID))
    }

    public func sendToPeer(from handle: RelayHandle, to peer: TransportAddress, _ bytes: UnsafeRawBufferPointer) -> Bool {
        precondition(open[handle] != nil, "send from relay \(handle.id), which is not open")
        sent &+= 1
        if recordsSends, let from = open[handle] {
            datagrams.append(SentDatagram(from: from, to: peer, bytes: Array(bytes)))
        }
        return true
    }

    /// The open relay bound to `address` (the tests deliver peer datagrams to it).
    public func handle(boundTo address: TransportAddress) -> RelayHandle? {
        open.first { $0.value == address }?.key
    }

    /// A relay handle that is open now, by index (for peer data in the fuzz target).
    public func handle(at index: Int) -> RelayHandle? {
        guard !open.isEmpty else { return nil }
        let keys = open.keys.sorted { $0.id < $1.id }
        return keys[index % keys.count]
    }
}
