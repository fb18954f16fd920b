#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Logging
import STUN
import TernCore

/// One client's DTLS association on a `dtls` listener (RFC 8489 section 6.2.2/6.2.3: STUN over
/// DTLS-over-UDP; RFC 8656 section 3.1: TURN clients may use it).
final class DTLSClient {
    let id: UInt64
    let address: TransportAddress
    let local: TransportAddress
    let session: TLSSession
    var lastActivity: UInt64
    let createdAt: UInt64
    /// Counted in the server's handshakes in flight until the handshake completes or the client goes.
    var handshaking = true
    /// Counted in the server's connections without an allocation until its first allocation.
    var unallocated = true

    init(id: UInt64, address: TransportAddress, local: TransportAddress, session: TLSSession, now: UInt64) {
        self.id = id
        self.address = address
        self.local = local
        self.session = session
        self.lastActivity = now
        self.createdAt = now
    }
}

/// A worker's SO_REUSEPORT socket of a `dtls` listener. A client gets no state until it returns a
/// valid cookie (RFC 6347 section 4.2.1, done by `DTLSListener`); after that, each datagram is
/// decrypted by the client's session and its STUN messages or ChannelData go to the handler, whose
/// replies are encrypted back. One read source, drained in recvmmsg batches, like the UDP endpoint.
final class DTLSEndpoint {
    /// A DTLS 1.0 record (epoch 0, sequence 0) holding a fatal protocol_version (70) alert.
    static let protocolVersionAlert: [UInt8] = [21, 0xFE, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 70]

    /// Ids of DTLS clients carry this bit, so a ClientRoute tells them from TCP connections.
    static let idBit: UInt64 = 1 << 63

    let socket: Socket
    let bound: TransportAddress
    unowned let worker: Worker
    let index: Int
    /// Replaced on reload; established associations keep their own sessions.
    var listener: DTLSListener
    private var source: DispatchSourceRead?
    private var clients: [TransportAddress: DTLSClient] = [:]
    /// The same associations by id: relayed data finds its client with one hash lookup.
    private var clientsByID: [UInt64: DTLSClient] = [:]
    private var nextID: UInt64 = 0
    private var plain: [UInt8] = []
    private var datagrams: [[UInt8]] = []
    /// Associations one worker keeps at most (state exists only after a valid cookie, but a client
    /// that completes many handshakes must not exhaust memory).
    let maxClients = 10_000

    init(socket: Socket, bound: TransportAddress, worker: Worker, index: Int, listener: DTLSListener) {
        self.socket = socket
        self.bound = bound
        self.worker = worker
        self.index = index
        self.listener = listener
    }

    func start() {
        source = worker.makeReadSource(socket, readable: { [unowned self] in self.readable() })
    }

    func cancel() {
        for c in Array(clients.values) { drop(c, notify: true) }
        source?.cancel()
        source = nil
    }

    var clientCount: Int { clients.count }

    func client(id: UInt64) -> DTLSClient? {
        clientsByID[id]
    }

    private func readable() {
        let batch = worker.batch
        worker.drainDatagrams(socket.fd, datagram: { i in
            let from = TernSocketAddress.transportAddress(batch.recvNames + i)
            handle(batch.received(i), from: from, local: bound)
        }, batchDone: {}, failed: { _ in false })
    }

    private func handle(_ datagram: UnsafeRawBufferPointer, from: TransportAddress, local: TransportAddress) {
        guard let client = clients[from] else {
            // RFC 8996: DTLS 1.0 is deprecated; Tern speaks DTLS 1.2 only. A DTLS 1.0 ClientHello gets a
            // fatal protocol_version alert at once (15 bytes, smaller than the request: no amplification)
            // rather than silence, so the client falls back without waiting for its timers.
            if datagram.count >= 27, datagram[0] == 22, datagram[13] == 1,
               datagram[25] == 0xFE, datagram[26] == 0xFF {
                Self.protocolVersionAlert.withUnsafeBytes { sendTo(from, $0) }
                return
            }
            switch listener.handle(datagram: datagram, from: from.ip.bytes + [UInt8(from.port >> 8), UInt8(from.port & 0xFF)]) {
            case .drop:
                worker.handler.noteMalformed()
            case .reply(let bytes):
                bytes.withUnsafeBytes { sendTo(from, $0) }
            case .accept(let session):
                // Admission, as for a TCP/TLS connection: the per-IP connection count
                // (`connectionsPerIP`), the server's connections without an allocation, and a
                // handshake slot within the source's share.
                guard clients.count < maxClients else { return }
                guard worker.connectionLimiter.admit(from.ip) else {
                    worker.stats.tcpRefusedPerIP &+= 1
                    return
                }
                guard worker.admitUnallocated() else {
                    worker.connectionLimiter.release(from.ip)
                    return
                }
                guard worker.admitHandshake(from.ip) else {
                    worker.connectionLimiter.release(from.ip)
                    worker.connectionLimiter.releaseUnallocated()
                    return
                }
                nextID &+= 1
                let c = DTLSClient(id: Self.idBit | nextID, address: from, local: local, session: session, now: worker.handler.now)
                clients[from] = c
                clientsByID[c.id] = c
                flush(c)
            }
            return
        }
        client.lastActivity = worker.handler.now
        plain.removeAll(keepingCapacity: true)
        let progress: TLSProgress
        do {
            progress = try client.session.receive(datagram, plaintext: &plain)
        } catch {
            flush(client)
            drop(client, notify: true)
            return
        }
        flush(client)
        if client.session.handshakeComplete { worker.endHandshake(&client.handshaking, client: client.address.ip) }
        if !plain.isEmpty { deliver(client) }
        if progress == .closed { drop(client, notify: true) }
    }

    /// Splits decrypted bytes into STUN messages / ChannelData and hands each to the handler.
    private func deliver(_ client: DTLSClient) {
        let context = PacketContext(client: client.address, local: client.local, transport: .dtls,
                                    socket: index, connection: client.id)
        var start = 0
        while start < plain.count {
            let frame = plain.withUnsafeBytes {
                StreamFrame.frameLength(UnsafeRawBufferPointer(rebasing: $0[start...]), channels: ChannelData.rfc5766Channels)
            }
            var length = 0
            switch frame {
            case .stun(let n): length = n
            case .channelData:
                // No padding over DTLS: the length field says how much follows the 4-byte header.
                let l = plain.withUnsafeBytes { Int($0[start + 2]) << 8 | Int($0[start + 3]) }
                length = 4 + l
            case .needMore, .invalid:
                worker.handler.noteMalformed()
                return
            }
            guard length > 0, start + length <= plain.count else { worker.handler.noteMalformed(); return }
            let result = plain.withUnsafeBytes {
                worker.handler.handle(UnsafeRawBufferPointer(rebasing: $0[start..<(start + length)]),
                                      context: context, response: worker.streamResponse)
            }
            start += length
            if case .reply(let n) = result {
                send(client, UnsafeRawBufferPointer(rebasing: worker.streamResponse[0..<n]))
            }
            if client.unallocated,
               worker.handler.allocations.allocation(for: FiveTuple(client: client.address, server: client.local, transport: .dtls)) != nil {
                worker.endUnallocated(&client.unallocated)
            }
        }
    }

    /// Encrypts application bytes for a client and sends the resulting datagrams.
    func send(_ client: DTLSClient, _ bytes: UnsafeRawBufferPointer) {
        do {
            try client.session.send(bytes)
        } catch {
            return
        }
        flush(client)
    }

    private func flush(_ client: DTLSClient) {
        guard client.session.pendingOutput > 0 else { return }
        datagrams.removeAll(keepingCapacity: true)
        client.session.takeDatagrams(into: &datagrams)
        for d in datagrams { d.withUnsafeBytes { sendTo(client.address, $0) } }
    }

    private func sendTo(_ to: TransportAddress, _ bytes: UnsafeRawBufferPointer) {
        var storage = sockaddr_storage()
        let len = TernSocketAddress.write(to, into: &storage)
        let ok = withUnsafePointer(to: &storage) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { Posix.sendto(socket.fd, bytes, to: $0, length: len) }
        }
        if ok {
            worker.stats.datagramsSent &+= 1
            worker.stats.bytesSent &+= UInt64(bytes.count)
        } else {
            worker.stats.sendDropped &+= 1
        }
    }

    private func drop(_ client: DTLSClient, notify: Bool) {
        worker.endHandshake(&client.handshaking, client: client.address.ip)
        worker.endUnallocated(&client.unallocated)
        worker.connectionLimiter.release(client.address.ip)
        clients[client.address] = nil
        clientsByID[client.id] = nil
        // An allocation made over this association ends with it.
        worker.handler.streamClosed(client: client.address, local: client.local, transport: .dtls)
    }

    /// Once a second: handshake retransmissions (RFC 6347 section 4.2.4), handshakes that take too
    /// long, and associations idle past the stream idle timeout with no allocation.
    func tick(now: UInt64, handshakeTimeout: UInt64) {
        for c in Array(clients.values) {
            if !c.session.handshakeComplete {
                if c.createdAt &+ handshakeTimeout <= now {
                    worker.stats.tlsHandshakeTimeouts &+= 1
                    drop(c, notify: false)
                    continue
                }
                if (try? c.session.handleTimeout()) == nil { drop(c, notify: false); continue }
                flush(c)
                continue
            }
            if c.lastActivity &+ UInt64(worker.limits.streamIdleTimeout) <= now,
               worker.handler.allocations.allocation(for: FiveTuple(client: c.address, server: c.local, transport: .dtls)) == nil {
                worker.stats.tcpClosedIdle &+= 1
                drop(c, notify: false)
            }
        }
    }
}
