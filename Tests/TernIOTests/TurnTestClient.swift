#if canImport(Glibc)
import Glibc
#endif
import STUN
@testable import TernIO

/// A small TURN client over a real UDP socket, for driving every path of the server. It answers the
/// 401 challenge once (RFC 8489 section 9.2.3), like any long-term-credential client.
final class TurnTestClient {
    let socket: TestSocket
    var username: String
    var password: String
    var realm: String?
    var nonce: String?
    var useSHA256 = false
    var useUserhash = false

    let kind: TestSocket.Kind
    /// TLS over the TCP socket (RFC 8656 section 3.1, `turns:`), when set.
    var tls: TLSStream?

    /// Sends bytes on the wire (through TLS when the client has it).
    func sendRaw(_ bytes: [UInt8]) {
        if let tls { tls.send(bytes) } else { socket.send(bytes) }
    }

    func receiveExactly(_ n: Int) -> [UInt8]? {
        if let tls { return tls.receiveExactly(n) }
        return socket.receiveExactly(n)
    }

    init(server: TransportAddress, username: String, password: String, transport: TestSocket.Kind = .udp,
         timeoutMs: Int = 2000) throws {
        kind = transport
        socket = try TestSocket.connect(transport, to: server, timeoutMs: timeoutMs)
        self.username = username
        self.password = password
    }

    deinit { socket.close() }

    var key: [UInt8] {
        useSHA256 ? LongTermKey.sha256(username: username, realm: realm ?? "", password: password)
                  : LongTermKey.md5(username: username, realm: realm ?? "", password: password)
    }

    /// Builds a request with credentials (when a realm/nonce is known).
    func encode(_ method: Method, _ attributes: [Attribute], id: TransactionID, authenticated: Bool = true) -> [UInt8] {
        var attrs = attributes
        var mi: [UInt8]? = nil
        var mi256: [UInt8]? = nil
        if authenticated, let realm, let nonce {
            if useUserhash {
                attrs.append(.userhash(userhash(username: username, realm: realm)))
            } else {
                attrs.append(.username(username))
            }
            attrs += [.realm(realm), .nonce(nonce)]
            if useSHA256 {
                attrs.append(.passwordAlgorithms([PasswordAlgorithmEntry(.md5), PasswordAlgorithmEntry(.sha256)]))
                attrs.append(.passwordAlgorithm(.sha256, params: []))
                mi256 = key
            } else {
                mi = key
            }
        }
        return Message(type: MessageType(method: method, class: .request), transactionID: id, attributes: attrs)
            .encode(integrityKey: mi, integritySHA256Key: mi256, fingerprint: true)
    }

    /// Sends a request and waits for its response, retrying once after a 401/438 challenge.
    func request(_ method: Method, _ attributes: [Attribute] = [], authenticated: Bool = true) throws -> Message {
        var response = try exchange(encode(method, attributes, id: .random(), authenticated: authenticated))
        if authenticated, let code = response.errorCode?.code, code == 401 || code == 438,
           case .realm(let r)? = response.first(.realm), case .nonce(let n)? = response.first(.nonce) {
            let retry = realm == nil || code == 438
            realm = r
            nonce = n
            if retry {
                response = try exchange(encode(method, attributes, id: .random()))
            }
        }
        return response
    }

    /// Sends bytes and returns the next STUN response with the same transaction id.
    func exchange(_ bytes: [UInt8]) throws -> Message {
        sendRaw(bytes)
        let id = try Message.decode(bytes, verifyFingerprint: false).transactionID
        for _ in 0..<20 {
            guard let reply = receiveOne() else { break }
            if let m = try? Message.decode(reply), m.transactionID == id { return m }
        }
        throw TestFailure("no response to \(id)")
    }

    /// One datagram, or one frame from the stream (STUN by its length, ChannelData padded to 4).
    func receiveOne() -> [UInt8]? {
        guard kind == .tcp else { return socket.receive() }
        guard let head = receiveExactly(4) else { return nil }
        let length = Int(head[2]) << 8 | Int(head[3])
        let rest = head[0] & 0xC0 == 0x40 ? (length + 3) & ~3 : length + 16
        guard let body = receiveExactly(rest) else { return nil }
        return head + body
    }

    func allocate(_ extra: [Attribute] = []) throws -> Message {
        try request(.allocate, [.requestedTransport(protocolNumber: 17)] + extra)
    }

    func sendIndication(to peer: TransportAddress, _ data: [UInt8]) {
        sendRaw(Message(type: MessageType(method: .send, class: .indication), transactionID: .random(),
                            attributes: [.xorPeerAddress(peer), .data(data)]).encode())
    }

    func sendChannelData(_ channel: UInt16, _ data: [UInt8]) {
        var out = [UInt8](repeating: 0, count: data.count + 8)
        let padded = kind == .tcp  // RFC 8656 section 12.5: padded to 4 on streams
        let n = out.withUnsafeMutableBytes { (try? ChannelData.write(channel: channel, payload: data, into: $0, padded: padded)) ?? 0 }
        sendRaw(Array(out[0..<n]))
    }

    /// The next datagram from the server: a Data indication or ChannelData.
    func receiveRelayed() -> (peer: TransportAddress?, channel: UInt16?, data: [UInt8])? {
        for _ in 0..<20 {
            guard let bytes = receiveOne() else { return nil }
            if let first = bytes.first, first & 0xC0 == 0x40 {
                let parsed = bytes.withUnsafeBytes { b -> (UInt16, [UInt8])? in
                    guard let p = try? ChannelData.parse(b) else { return nil }
                    return (p.channel, Array(p.payload))
                }
                if let parsed { return (nil, parsed.0, parsed.1) }
            } else if let m = try? Message.decode(bytes), m.type == MessageType(method: .data, class: .indication),
                      case .xorPeerAddress(let peer)? = m.first(.xorPeerAddress), case .data(let d)? = m.first(.data) {
                return (peer, nil, d)
            }
        }
        return nil
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// A peer: an unconnected UDP socket on loopback that records what it receives.
struct TestPeer {
    let fd: Int32
    let address: TransportAddress

    init(ip: IPAddress = .loopbackV4, timeoutMs: Int = 2000) throws {
        let v6 = ip.family == .ipv6
        fd = socket(v6 ? AF_INET6 : AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var tv = timeval(tv_sec: timeoutMs / 1000, tv_usec: (timeoutMs % 1000) * 1000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let fd = self.fd
        let r = TernSocketAddress(TransportAddress(ip: ip, port: 0)).withSockAddr { Glibc.bind(fd, $0, $1) }
        guard r == 0 else { throw SystemError("bind", errno: errno) }
        address = (try Posix.localAddress(fd)).transportAddress
    }

    func send(_ bytes: [UInt8], to: TransportAddress) {
        let fd = self.fd
        _ = TernSocketAddress(to).withSockAddr { addr, len in
            bytes.withUnsafeBytes { Glibc.sendto(fd, $0.baseAddress, bytes.count, 0, addr, len) }
        }
    }

    func receive() -> (from: TransportAddress, data: [UInt8])? {
        var buf = [UInt8](repeating: 0, count: 65536)
        var storage = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let fd = self.fd
        let n = buf.withUnsafeMutableBytes { b in
            withUnsafeMutablePointer(to: &storage) { p in
                p.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(fd, b.baseAddress, 65536, 0, $0, &len) }
            }
        }
        guard n >= 0 else { return nil }
        return (TernSocketAddress(storage: storage).transportAddress, Array(buf[0..<n]))
    }

    func close() { Glibc.close(fd) }
}


/// A client with an allocation and channel 0x4000 bound to a peer socket of its own: the set-up of
/// every test that relays. Throws when the Allocate or the ChannelBind does not succeed. The caller
/// closes `peer`.
struct ChannelSession {
    let client: TurnTestClient
    let peer: TestPeer
    let relayed: TransportAddress

    init(server: TransportAddress, username: String = "alice", password: String = "wonderland") throws {
        client = try TurnTestClient(server: server, username: username, password: password)
        let allocated = try client.allocate()
        guard let relayed = relayedAddresses(allocated).first else { throw TestFailure("Allocate failed: \(allocated)") }
        self.relayed = relayed
        peer = try TestPeer()
        let bound = try client.request(.channelBind, [.channelNumber(0x4000), .xorPeerAddress(peer.address)])
        guard bound.type.messageClass == .successResponse else {
            peer.close()
            throw TestFailure("ChannelBind failed: \(bound)")
        }
    }
}
