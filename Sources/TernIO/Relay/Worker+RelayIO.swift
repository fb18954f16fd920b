#if canImport(Glibc)
import Glibc
#endif
import CTernShims
import Dispatch
import STUN
import TernCore

extension Worker: RelayIO {
    /// The address a relay socket of `family` binds: the configured one, else the server address
    /// the client reached, else (a client asking for the other family, such as an IPv6 client of
    /// the built-in default wanting the usual IPv4 relay) this host's first address of that family,
    /// one that is not loopback when there is one (`Worker.hostRelayCandidates`). Never a
    /// wildcard: XOR-RELAYED-ADDRESS must be concrete.
    func relayAddress(_ family: AddressFamily, near: IPAddress) -> IPAddress? {
        let configured = family == .ipv4 ? relayAddresses.ipv4 : relayAddresses.ipv6
        if let configured, !configured.isUnspecified { return configured }
        if near.family == family, !near.isUnspecified { return near }
        return Self.hostRelayCandidates.first { $0.family == family }
    }

    /// This host's addresses a relay may bind when nothing else says which (read once): global and
    /// private ones first, then loopback; never IPv6 link-local (it needs a zone).
    static let hostRelayCandidates: [IPAddress] = {
        let all = Posix.interfaceAddresses().filter { ip in
            if case .v6(let hi, _) = ip, hi >> 54 == 0x3FA { return false }
            return !ip.isUnspecified
        }
        return all.filter { !$0.isLoopback } + all.filter(\.isLoopback)
    }()

    public func openRelay(family: AddressFamily, near: IPAddress, evenPort: Bool, reserveNext: Bool,
                          dontFragment: Bool) -> Result<OpenedRelay, RelayOpenError> {
        dispatchPrecondition(condition: .onQueue(queue))
        guard let ip = relayAddress(family, near: near) else { return .failure(.familyUnavailable) }
        let range = relayAddresses.portRange
        var rng = SystemRandomNumberGenerator()
        // Random ports (RFC 8656 section 7.2 asks for unpredictable ones), a bounded number of tries:
        // the kernel's bind is the arbiter of which ports are free, across all workers.
        for _ in 0..<64 {
            var port = UInt16.random(in: range, using: &rng)
            if evenPort || reserveNext {
                port &= ~1
                if port < range.lowerBound || (reserveNext && port == UInt16.max) { continue }
                if reserveNext && port + 1 > range.upperBound { continue }
            }
            let address = TransportAddress(ip: ip, port: port)
            let socket: Socket
            do {
                socket = try sockets.relay(address, dontFragment: dontFragment)
            } catch {
                if error.errno == EADDRINUSE { continue }
                if error.errno == EAFNOSUPPORT || error.errno == EADDRNOTAVAIL { return .failure(.familyUnavailable) }
                return .failure(.system(error.errno))
            }
            var reserved: OpenedRelay.Reserved? = nil
            if reserveNext {
                // RFC 8656 section 14.6 (EVEN-PORT with R): port + 1 is held for a later Allocate.
                let next = TransportAddress(ip: ip, port: port + 1)
                guard let held = try? sockets.relay(next, dontFragment: dontFragment) else {
                    socket.close()  // never watched: closed at once
                    continue
                }
                reserved = OpenedRelay.Reserved(handle: reservedRelays.hold(held), bound: next)
            }
            guard let handle = startRelay(socket, bound: address) else {
                if let reserved { reservedRelays.take(reserved.handle)?.close() }
                return .failure(.noPortAvailable)
            }
            return .success(OpenedRelay(handle: handle, bound: address, reservedNext: reserved))
        }
        return .failure(.noPortAvailable)
    }

    /// Gives `socket` a handle and starts reading from it; nil (and the socket closed) when this
    /// worker has no handle left.
    private func startRelay(_ socket: Socket, bound: TransportAddress) -> RelayHandle? {
        guard let handle = relayTable.reserveHandle() else {
            socket.close()
            return nil
        }
        let relay = RelaySocket(socket: socket, handle: handle, bound: bound, worker: self)
        relayTable.insert(.udp(relay), for: handle)
        relay.start()
        return handle
    }

    public func adoptReserved(_ reserved: OpenedRelay.Reserved, dontFragment: Bool) -> OpenedRelay {
        dispatchPrecondition(condition: .onQueue(queue))
        // The reservation may come from another worker: this one gives the socket a handle of its own.
        guard let socket = reservedRelays.take(reserved.handle) else {
            return OpenedRelay(handle: reserved.handle, bound: reserved.bound)
        }
        if dontFragment { try? Posix.setDontFragment(socket.fd, ipv6: reserved.bound.ip.family == .ipv6) }
        let handle = startRelay(socket, bound: reserved.bound) ?? reserved.handle
        return OpenedRelay(handle: handle, bound: reserved.bound)
    }

    public func closeRelay(_ handle: RelayHandle) {
        switch relayTable[handle] {
        case .udp(let r)?:
            relayTable.remove(handle)
            r.cancel()
        case .tcp?:
            closeTCPRelay(handle)
        case nil:
            break
        }
    }

    public func discardReserved(_ reserved: OpenedRelay.Reserved) {
        // A reserved socket never had a Dispatch source: it may be closed at once.
        reservedRelays.take(reserved.handle)?.close()
    }

    public func sendToPeer(from handle: RelayHandle, to peer: TransportAddress, _ bytes: UnsafeRawBufferPointer) -> Bool {
        guard let fd = relayTable.udpDescriptor(handle) else {
            stats.sendDropped &+= 1
            return false
        }
        // While a UDP endpoint drains a batch, the payload (inside the receive batch) is queued and
        // leaves with the rest of the batch: sendmmsg per relay socket, GSO for a stream to one peer.
        if peerBatch.collecting {
            if peerBatch.isFull { flushPeerBatch() }
            peerBatch.add(fd: fd, peer: peer, payload: bytes)
            return true
        }
        var storage = sockaddr_storage()
        let len = TernSocketAddress.write(peer, into: &storage)
        let r = withUnsafePointer(to: &storage) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Posix.sendto(fd, bytes, to: $0, length: len)
            }
        }
        if r {
            stats.datagramsSent &+= 1
            stats.bytesSent &+= UInt64(bytes.count)
        } else {
            stats.sendDropped &+= 1
        }
        return r
    }

    /// Sends the first `count` slots of the shared batch to clients, one sendmmsg per run of slots
    /// that leave through the same client-facing socket.
    func flushToClients(_ count: Int) {
        var start = 0
        while start < count {
            let socket = batch.sendSocket[start]
            var end = start + 1
            while end < count && batch.sendSocket[end] == socket { end += 1 }
            stats.clientSendCalls &+= 1
            udpEndpoints[socket].flush(end - start, batch: batch, from: start)
            start = end
        }
    }
}
