import Foundation
import STUN
import TernCore
import TernIO

/// One connection from `tern probe` to a STUN/TURN server: UDP datagrams, or STUN and ChannelData
/// framed off a TCP stream (RFC 8489 section 6.2.2, RFC 8656 section 12.5: padded to 4 bytes).
final class ProbeConnection {
    let socket: ClientSocket
    let server: TransportAddress
    private var buffered: [UInt8] = []
    /// TLS over the TCP connection (`turns:`/`stuns:`), after its handshake.
    let tls: TLSClientSession?

    /// How a `turns:`/`stuns:` connection checks the server's certificate.
    struct TLSOptions {
        var serverName: String
        var caFile: String?
        var verify: Bool
    }

    init(_ transport: ClientTransport, to server: TransportAddress, timeoutMilliseconds: Int, tls options: TLSOptions? = nil) throws {
        self.server = server
        socket = try ClientSocket(transport == .udp ? .udp : .tcp, to: server, timeoutMilliseconds: timeoutMilliseconds)
        guard let options else { tls = nil; return }
        let session = try TLSClientSession(serverName: options.serverName, caFile: options.caFile, verify: options.verify)
        let deadline = Date().addingTimeInterval(Double(timeoutMilliseconds) / 1000)
        while try !session.handshake() {
            let out = session.takeOutput()
            if !out.isEmpty { _ = socket.send(out) }
            let left = Int(deadline.timeIntervalSinceNow * 1000)
            guard left > 0, let more = socket.receive(milliseconds: left), !more.isEmpty else {
                throw TLSError(.handshakeFailed, "no TLS handshake from \(server) within \(timeoutMilliseconds) ms")
            }
            session.feed(more)
        }
        let out = session.takeOutput()
        if !out.isEmpty { _ = socket.send(out) }
        tls = session
    }

    var isStream: Bool { socket.isStream }

    func send(_ bytes: [UInt8]) -> Bool {
        guard let tls else { return socket.send(bytes) }
        tls.write(bytes)
        return socket.send(tls.takeOutput())
    }

    /// One read from the socket, decrypted when TLS is on.
    private func readMore(milliseconds: Int) -> [UInt8]? {
        guard let more = socket.receive(milliseconds: milliseconds), !more.isEmpty else { return nil }
        guard let tls else { return more }
        tls.feed(more)
        let reply = tls.takeOutput()  // session tickets and key updates need no answer, but alerts might
        if !reply.isEmpty { _ = socket.send(reply) }
        return tls.read()
    }

    /// The next datagram, or the next whole frame of the stream, within `milliseconds`.
    func receive(milliseconds: Int) -> [UInt8]? {
        guard isStream else { return socket.receive(milliseconds: milliseconds) }
        let deadline = Date().addingTimeInterval(Double(milliseconds) / 1000)
        while true {
            let frame = buffered.withUnsafeBytes { StreamFrame.frameLength($0, channels: ChannelData.rfc5766Channels) }
            switch frame {
            case .stun(let n), .channelData(let n):
                if buffered.count >= n {
                    let out = Array(buffered[0..<n])
                    buffered.removeFirst(n)
                    return out
                }
            case .invalid:
                buffered.removeAll()
                return nil
            case .needMore:
                break
            }
            let left = Int(deadline.timeIntervalSinceNow * 1000)
            guard left > 0, let more = readMore(milliseconds: left) else { return nil }
            buffered += more
        }
    }
}

/// A TURN client for the probe: long-term credentials (RFC 8489 section 9.2, answering the 401
/// challenge and a 438 stale nonce), retransmission over UDP (section 6.2.1, bounded), ChannelData.
final class ProbeClient {
    let connection: ProbeConnection
    let username: String
    let password: String
    private(set) var realm: String?
    private(set) var nonce: String?
    /// PASSWORD-ALGORITHMS the server offered (RFC 8489 section 14.11), by name.
    private(set) var offeredAlgorithms: [String] = []
    let timeoutMilliseconds: Int
    /// ChannelData received while waiting for a response (kept for the caller).
    private var channelData: [[UInt8]] = []

    init(_ connection: ProbeConnection, username: String, password: String, timeoutMilliseconds: Int) {
        self.connection = connection
        self.username = username
        self.password = password
        self.timeoutMilliseconds = timeoutMilliseconds
    }

    var key: [UInt8] { LongTermKey.md5(username: username, realm: realm ?? "", password: password) }

    /// One transaction: the response with the request's transaction id, or nil after the
    /// retransmissions (UDP: 3 sends, RFC 8489's Rc shortened for a diagnostic tool; TCP: 1).
    func exchange(_ request: Message) -> Message? {
        let bytes = request.encode(integrityKey: request.attributes.contains { $0.type == .nonce } ? key : nil, fingerprint: true)
        let attempts = connection.isStream ? 1 : 3
        let perAttempt = connection.isStream ? timeoutMilliseconds : max(200, timeoutMilliseconds / 3)
        for _ in 0..<attempts {
            guard connection.send(bytes) else { return nil }
            let deadline = Date().addingTimeInterval(Double(perAttempt) / 1000)
            while deadline.timeIntervalSinceNow > 0 {
                guard let reply = connection.receive(milliseconds: max(1, Int(deadline.timeIntervalSinceNow * 1000))) else { break }
                if let first = reply.first, first & 0xC0 == 0x40 { channelData.append(reply); continue }
                if let m = try? Message.decode(reply), m.transactionID == request.transactionID { return m }
            }
        }
        return nil
    }

    /// A request with credentials, retried once after a 401 or 438 challenge.
    func request(_ method: Method, _ attributes: [Attribute] = []) -> Message? {
        func build() -> Message {
            var attrs = attributes
            if let realm, let nonce { attrs += [.username(username), .realm(realm), .nonce(nonce)] }
            return Message(type: MessageType(method: method, class: .request), transactionID: .random(), attributes: attrs)
        }
        var reply = exchange(build())
        for _ in 0..<2 {
            guard let m = reply, let code = m.errorCode?.code, code == 401 || code == 438,
                  case .realm(let r)? = m.first(.realm), case .nonce(let n)? = m.first(.nonce) else { break }
            let retry = realm == nil || code == 438
            realm = r
            nonce = n
            if case .passwordAlgorithms(let list)? = m.first(.passwordAlgorithms) {
                offeredAlgorithms = list.map { $0.algorithm == .md5 ? "MD5" : $0.algorithm == .sha256 ? "SHA-256" : "\($0.algorithm)" }
            }
            guard retry else { break }
            reply = exchange(build())
        }
        return reply
    }

    func sendChannelData(_ channel: UInt16, _ payload: [UInt8]) -> Bool {
        var out = [UInt8](repeating: 0, count: payload.count + 8)
        let n = out.withUnsafeMutableBytes { buffer in
            payload.withUnsafeBytes { (try? ChannelData.write(channel: channel, payload: Array($0), into: buffer, padded: connection.isStream)) ?? 0 }
        }
        return n > 0 && connection.send(Array(out[0..<n]))
    }

    /// The next ChannelData payload on `channel` within `milliseconds`.
    func receiveChannelData(_ channel: UInt16, milliseconds: Int) -> [UInt8]? {
        let deadline = Date().addingTimeInterval(Double(milliseconds) / 1000)
        while true {
            if let i = channelData.firstIndex(where: { Self.channel(of: $0) == channel }) {
                return Self.payload(of: channelData.remove(at: i))
            }
            let left = Int(deadline.timeIntervalSinceNow * 1000)
            guard left > 0, let bytes = connection.receive(milliseconds: left) else { return nil }
            if let first = bytes.first, first & 0xC0 == 0x40 { channelData.append(bytes) }
        }
    }

    static func channel(of bytes: [UInt8]) -> UInt16? {
        bytes.count >= 4 ? UInt16(bytes[0]) << 8 | UInt16(bytes[1]) : nil
    }

    static func payload(of bytes: [UInt8]) -> [UInt8]? {
        bytes.withUnsafeBytes { b in (try? ChannelData.parse(b)).map { Array($0.payload) } }
    }
}

extension Message {
    var relayedAddress: TransportAddress? {
        if case .xorRelayedAddress(let a)? = first(.xorRelayedAddress) { return a }
        return nil
    }

    var lifetimeSeconds: UInt32? {
        if case .lifetime(let l)? = first(.lifetime) { return l }
        return nil
    }

    var isSuccess: Bool { type.messageClass == .successResponse }
}
