#if canImport(Glibc)
import Glibc
#endif
import CTernShims
import Dispatch
import STUN
import TernCore

/// Relay addresses and ports from the config (`relay.*`).
public struct RelayAddresses: Sendable {
    public var ipv4: IPAddress?
    public var ipv6: IPAddress?
    public var portRange: ClosedRange<UInt16>

    public init(ipv4: IPAddress? = nil, ipv6: IPAddress? = nil, portRange: ClosedRange<UInt16> = 49152...65535) {
        self.ipv4 = ipv4
        self.ipv6 = ipv6
        self.portRange = portRange
    }
}

extension Worker: RelayIO {
    /// The address a relay socket of `family` binds: the configured one, else the server address
    /// the client reached. Never a wildcard: XOR-RELAYED-ADDRESS must be concrete.
    func relayAddress(_ family: AddressFamily, near: IPAddress) -> IPAddress? {
        let configured = family == .ipv4 ? relayAddresses.ipv4 : relayAddresses.ipv6
        if let configured, !configured.isUnspecified { return configured }
        if near.family == family, !near.isUnspecified { return near }
        return nil
    }

    /// A non-blocking UDP socket bound to exactly `address` (no SO_REUSEPORT: a relay port is ours alone).
    private func bindRelay(_ address: TransportAddress, dontFragment: Bool) -> Result<Int32, SystemError> {
        let v6 = address.ip.family == .ipv6
        let fd: Int32
        do {
            fd = try Posix.socket(domain: v6 ? AF_INET6 : AF_INET, type: Int32(SOCK_DGRAM.rawValue))
        } catch {
            return .failure(error)
        }
        do throws(SystemError) {
            if v6 { try Posix.setOption(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, 1) }
            if dontFragment && tern_set_dont_fragment(fd, v6 ? 1 : 0) != 0 {
                throw SystemError("setsockopt(dont fragment)", errno: errno)
            }
            if io.relayReceiveBuffer > 0 || io.relaySendBuffer > 0 {
                _ = tern_set_buffer_sizes(fd, Int32(clamping: io.relayReceiveBuffer), Int32(clamping: io.relaySendBuffer))
            }
            try Posix.bind(fd, TernSocketAddress(address))
            return .success(fd)
        } catch {
            Posix.close(fd)
            return .failure(error)
        }
    }

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
            switch bindRelay(address, dontFragment: dontFragment) {
            case .failure(let e):
                if e.errno == EADDRINUSE { continue }
                if e.errno == EAFNOSUPPORT || e.errno == EADDRNOTAVAIL { return .failure(.familyUnavailable) }
                return .failure(.system(e.errno))
            case .success(let fd):
                var reserved: OpenedRelay.Reserved? = nil
                if reserveNext {
                    let next = TransportAddress(ip: ip, port: port + 1)
                    guard case .success(let nfd) = bindRelay(next, dontFragment: dontFragment) else {
                        Posix.close(fd)
                        continue
                    }
                    reserved = OpenedRelay.Reserved(handle: RelayHandle(nfd), bound: next)
                }
                startRelay(fd: fd, bound: address)
                return .success(OpenedRelay(handle: RelayHandle(fd), bound: address, reservedNext: reserved))
            }
        }
        return .failure(.noPortAvailable)
    }

    private func startRelay(fd: Int32, bound: TransportAddress) {
        let socket = RelaySocket(fd: fd, bound: bound, worker: self)
        relays[fd] = socket
        socket.start()
    }

    public func adoptReserved(_ reserved: OpenedRelay.Reserved, dontFragment: Bool) -> OpenedRelay {
        dispatchPrecondition(condition: .onQueue(queue))
        if dontFragment { _ = tern_set_dont_fragment(reserved.handle.raw, reserved.bound.ip.family == .ipv6 ? 1 : 0) }
        startRelay(fd: reserved.handle.raw, bound: reserved.bound)
        return OpenedRelay(handle: reserved.handle, bound: reserved.bound)
    }

    public func closeRelay(_ handle: RelayHandle) {
        if let r = relays[handle.raw] {
            r.cancel()
        } else {
            closeTCPRelay(handle)
        }
    }

    public func discardReserved(_ reserved: OpenedRelay.Reserved) {
        // A reserved socket never had a Dispatch source: it may be closed at once.
        Posix.close(reserved.handle.raw)
    }

    public func sendToPeer(from handle: RelayHandle, to peer: TransportAddress, _ bytes: UnsafeRawBufferPointer) -> Bool {
        // While a UDP endpoint drains a batch, the payload (inside the receive batch) is queued and
        // leaves with the rest of the batch: sendmmsg per relay socket, GSO for a stream to one peer.
        if peerBatch.collecting {
            if peerBatch.isFull { flushPeerBatch() }
            peerBatch.add(fd: handle.raw, peer: peer, payload: bytes)
            return true
        }
        var storage = sockaddr_storage()
        let len = TernSocketAddress.write(peer, into: &storage)
        let r = withUnsafePointer(to: &storage) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Posix.sendto(handle.raw, bytes, to: $0, length: len)
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
            udpEndpoints[socket].flush(end - start, batch: batch, from: start)
            start = end
        }
    }
}
