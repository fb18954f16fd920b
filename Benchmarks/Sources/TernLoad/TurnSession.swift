#if canImport(Glibc)
import Glibc
#endif
import STUN

/// One TURN client: its own UDP socket (its own 5-tuple), an allocation and one channel to the sink.
/// Set-up runs in phases over many sessions at once (send to all, then collect), so that the
/// set-up rate measures the server, not one round trip after another.
final class TurnSession {
    private(set) var fd: Int32
    let server: TransportAddress
    let username: String
    let password: String
    var realm = ""
    var nonce = ""
    var pending: TransactionID?
    var relayed: TransportAddress?
    var failed: String?

    init(server: TransportAddress, username: String, password: String) {
        self.fd = UDP.socket(bindTo: TransportAddress(ip: .loopbackV4, port: 0))
        UDP.setReceiveTimeout(fd, milliseconds: 2000)
        self.server = server
        self.username = username
        self.password = password
    }

    func close() { Glibc.close(fd) }

    /// A fresh client socket (a new 5-tuple): the old port may still name an allocation on the
    /// server from an earlier case (it answers 437 then).
    func renew() {
        Glibc.close(fd)
        fd = UDP.socket(bindTo: TransportAddress(ip: .loopbackV4, port: 0))
        UDP.setReceiveTimeout(fd, milliseconds: 250)
        failed = nil
    }

    private func encode(_ method: Method, _ attributes: [Attribute], authenticated: Bool) -> [UInt8] {
        let id = TransactionID.random()
        pending = id
        var attrs = attributes
        var key: [UInt8]? = nil
        if authenticated {
            attrs += [.username(username), .realm(realm), .nonce(nonce)]
            key = LongTermKey.md5(username: username, realm: realm, password: password)
        }
        return Message(type: MessageType(method: method, class: .request), transactionID: id, attributes: attrs)
            .encode(integrityKey: key, fingerprint: true)
    }

    /// The request in flight, kept for retransmission (RFC 8489 section 6.2.1).
    var outstanding: [UInt8] = []

    func send(_ method: Method, _ attributes: [Attribute], authenticated: Bool = true) {
        outstanding = encode(method, attributes, authenticated: authenticated)
        UDP.send(fd, outstanding, to: server)
    }

    func retransmit() { UDP.send(fd, outstanding, to: server) }

    /// The response to the pending request (responses to earlier ones are skipped).
    func receive() -> Message? {
        for _ in 0..<8 {
            guard let bytes = UDP.receive(fd) else { return nil }
            if let m = try? Message.decode(bytes, verifyFingerprint: false), m.transactionID == pending { return m }
        }
        return nil
    }

    /// Takes REALM and NONCE from a 401/438.
    func learnChallenge(_ m: Message) {
        for a in m.attributes {
            if case .realm(let r) = a { realm = r }
            if case .nonce(let n) = a { nonce = n }
        }
    }
}

/// One request per session, sent to all of them, then the answers collected; sessions without an
/// answer retransmit (up to 7 times, 250 ms apart, as a UDP client would).
func exchange(_ sessions: [TurnSession], send: (TurnSession) -> Void, handle: (TurnSession, Message) -> Void) {
    for s in sessions { send(s) }
    var waiting = sessions
    for attempt in 0..<8 {
        var still: [TurnSession] = []
        for s in waiting {
            if let m = s.receive() { handle(s, m) } else { still.append(s) }
        }
        waiting = still
        if waiting.isEmpty { return }
        if attempt < 7 { for s in waiting { s.retransmit() } }
    }
    for s in waiting { s.failed = s.failed ?? "no response" }
}

/// Sets up `sessions` in phases: Allocate (challenge), Allocate (authenticated), then ChannelBind
/// to `peer` when given. Returns the seconds it took.
func setUp(_ sessions: [TurnSession], peer: TransportAddress?) -> Double {
    for s in sessions { UDP.setReceiveTimeout(s.fd, milliseconds: 250) }
    let start = monotonicNanos()
    let chunk = 256
    var i = 0
    while i < sessions.count {
        let batch = Array(sessions[i..<min(i + chunk, sessions.count)])
        var challenge = batch
        for _ in 0..<3 where !challenge.isEmpty {
            exchange(challenge, send: { $0.send(.allocate, [.requestedTransport(protocolNumber: 17)], authenticated: false) }) { s, m in
                if m.errorCode?.code == 401 { s.learnChallenge(m) } else { s.failed = "no 401 challenge (\(m.errorCode?.code ?? 0))" }
            }
            challenge = challenge.filter { $0.failed != nil }
            for s in challenge { s.renew() }
        }
        for s in challenge { s.failed = "no 401 challenge" }
        exchange(batch.filter { $0.failed == nil }, send: { $0.send(.allocate, [.requestedTransport(protocolNumber: 17), .lifetime(600)]) }) { s, m in
            guard m.type.messageClass == .successResponse else { s.failed = "Allocate: \(m.errorCode?.code ?? 0)"; return }
            for a in m.attributes { if case .xorRelayedAddress(let r) = a { s.relayed = r } }
        }
        if let peer {
            exchange(batch.filter { $0.failed == nil }, send: { $0.send(.channelBind, [.channelNumber(0x4000), .xorPeerAddress(peer)]) }) { s, m in
                if m.type.messageClass != .successResponse { s.failed = "ChannelBind: \(m.errorCode?.code ?? 0)" }
            }
        }
        i += chunk
    }
    return Double(monotonicNanos() - start) / 1e9
}

/// Ends every allocation (Refresh with LIFETIME 0), so that the next case starts clean.
func tearDown(_ sessions: [TurnSession]) {
    var i = 0
    while i < sessions.count {
        let batch = sessions[i..<min(i + 256, sessions.count)].filter { $0.failed == nil }
        exchange(batch, send: { $0.send(.refresh, [.lifetime(0)]) }) { _, _ in }
        i += 256
    }
    for s in sessions { s.close() }
}
