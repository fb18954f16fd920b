import STUN
import TernCore

/// The bodies of the libFuzzer targets (`Fuzz/`, built with `-sanitize=fuzzer`), kept in a library
/// so that the test suite replays the committed corpus and every regression input through exactly
/// the same code on each run. Each target returns normally for any input; a failed invariant is a
/// `precondition`, i.e. a crash the fuzzer reports.
public enum FuzzTargets {
    /// The message decoder: `MessageReader` (the server's zero-copy parser) and `Message.decode`
    /// must agree, and whatever decodes re-encodes to a message that decodes to the same value.
    public static func decode(_ data: UnsafeRawBufferPointer) {
        let reader = try? MessageReader(data)
        let message = try? Message.decode(data, verifyFingerprint: false)
        if let reader {
            var count = 0
            reader.forEachAttribute { _, value in
                precondition(value.count <= data.count, "attribute value longer than the datagram")
                count += 1
            }
            _ = reader.hasFingerprint && reader.fingerprintIsValid()
            _ = reader.checkMessageIntegrity(key: fixedKey)
            _ = reader.checkMessageIntegritySHA256(key: fixedKey)
            _ = try? reader.xorAddress(.xorPeerAddress)
            _ = try? reader.string(.username)
            _ = try? reader.lifetime()
            precondition(count <= data.count / 4, "more attributes than 4-byte slots")
        }
        if let message {
            precondition(reader != nil, "Message.decode accepted what MessageReader refused")
            let again = message.encode()
            guard let round = try? Message.decode(again, verifyFingerprint: false) else {
                preconditionFailure("a decoded message does not decode after re-encoding")
            }
            precondition(round.type == message.type && round.transactionID == message.transactionID,
                         "re-encoding changed the header")
        }
        // ChannelData parsing of the same bytes.
        if let parsed = try? ChannelData.parse(data, channels: ChannelData.rfc5766Channels) {
            precondition(parsed.payload.count + 4 <= data.count, "ChannelData payload past the datagram")
        }
    }

    /// The stream framer as a TCP/TLS connection uses it: bytes arrive in chunks whose sizes come
    /// from the input, frames are cut by `StreamFrame.frameLength` and each is parsed. A frame is
    /// never cut past the bytes received, and an `.invalid` prefix ends the stream.
    public static func frame(_ data: UnsafeRawBufferPointer) {
        guard data.count >= 1 else { return }
        let chunk = Int(data[0] % 61) + 1
        let stream = UnsafeRawBufferPointer(rebasing: data[1...])
        var buffered = 0      // bytes of `stream` received so far
        var consumed = 0      // bytes of `stream` cut into frames
        while buffered < stream.count {
            buffered = min(stream.count, buffered + chunk)
            while consumed < buffered {
                let pending = UnsafeRawBufferPointer(rebasing: stream[consumed..<buffered])
                switch StreamFrame.frameLength(pending, channels: ChannelData.rfc5766Channels) {
                case .needMore:
                    break
                case .invalid:
                    return
                case .stun(let n), .channelData(let n):
                    precondition(n >= 4 && n <= 20 + 65_535 + 3, "frame length out of bounds: \(n)")
                    guard pending.count >= n else { break }
                    let frame = UnsafeRawBufferPointer(rebasing: pending[0..<n])
                    if frame[0] & 0xC0 == 0x40 {
                        _ = try? ChannelData.parse(frame, channels: ChannelData.rfc5766Channels)
                    } else {
                        _ = try? MessageReader(frame)
                    }
                    consumed += n
                    continue
                }
                break
            }
        }
        precondition(consumed <= stream.count)
    }

    /// The request handler, fed whole datagrams with a fixed clock: a sequence of records
    /// `[kind][length][bytes]`. Kinds: a raw datagram from one of four clients; a request from a
    /// client signed with valid long-term credentials (method and attributes from the input, so that
    /// the fuzzer reaches Allocate, Refresh, CreatePermission and ChannelBind past authentication);
    /// a datagram from a peer to a relay; the clock moving on. Afterwards every allocation is ended
    /// and every relay socket must have been given back.
    @discardableResult
    public static func handle(_ data: UnsafeRawBufferPointer) -> HandlerRunSummary {
        let harness = HandlerHarness()
        var i = 0
        while i + 3 <= data.count {
            let kind = data[i]
            let length = Int(data[i + 1]) << 8 | Int(data[i + 2])
            let start = i + 3
            let end = min(data.count, start + length)
            i = end
            let body = UnsafeRawBufferPointer(rebasing: data[start..<end])
            switch kind % 5 {
            case 0, 1: harness.datagram(body, client: Int(kind >> 3))
            case 2: harness.signedRequest(body, client: Int(kind >> 3))
            case 3: harness.peerData(body, selector: Int(kind >> 3))
            default: harness.advance(seconds: UInt64(body.first ?? 1))
            }
        }
        let summary = HandlerRunSummary(allocationsCreated: Int(harness.handler.turnCounters.allocationsCreated),
                                        replies: harness.replies, sentToPeers: harness.relays.sent,
                                        forwardedToClients: harness.forwarded)
        harness.finish()
        return summary
    }

    /// The PROXY protocol header parser as a connection feeds it: every prefix of the input, shortest
    /// first (up to just past `maxLength`). The answers must be `.needMore` for a while and then one
    /// final answer that longer prefixes repeat: the same `.complete(header, length)` (so every
    /// prefix shorter than `length` was `.needMore` and exactly `length` bytes parse to the same
    /// header), or the same `.invalid`. `.needMore` only below `maxLength` (107 for a v1 line), and
    /// a complete header within the bytes given and `maxLength`. The spec: HAProxy's "The PROXY
    /// protocol" versions 1 and 2 (parser in Sources/TernCore/Proxy/ProxyHeader.swift).
    public static func proxyHeader(_ data: UnsafeRawBufferPointer) {
        let v1MaxLength = 107  // the spec's section 2.1: a v1 line's CRLF is within its first 107 bytes
        var final: ProxyHeaderParse?
        for n in 0...min(data.count, ProxyHeader.maxLength + 8) {
            let result = ProxyHeader.parse(UnsafeRawBufferPointer(rebasing: data[0..<n]))
            if let final {
                precondition(result == final, "a longer prefix changed the answer: \(final) then \(result) at \(n)")
                continue
            }
            switch result {
            case .needMore:
                precondition(n < ProxyHeader.maxLength, "needMore at \(n) bytes")
                precondition(n < v1MaxLength || data[0] != UInt8(ascii: "P"), "v1 needMore at \(n) bytes")
            case .complete(let header, let length):
                precondition(length == n, "complete at \(n) bytes with length \(length)")
                precondition(length <= ProxyHeader.maxLength && length <= data.count, "length \(length) out of bounds")
                precondition((header.source == nil) == (header.destination == nil), "one address of two")
                if let s = header.source, let d = header.destination {
                    precondition(s.ip.family == d.ip.family, "source and destination families differ")
                }
                if header.version == .v1 {
                    precondition(length <= v1MaxLength && data[length - 1] == 0x0A, "v1 line end")
                } else {
                    precondition(length >= 16, "v2 shorter than its preamble")
                }
                final = result
            case .invalid:
                final = result
            }
        }
        if data.count > ProxyHeader.maxLength {
            precondition(final != nil, "needMore past maxLength")
        }
    }

    static let fixedKey: [UInt8] = Array(repeating: 0x5A, count: 16)
}

/// What one run of the handler target did (the corpus test checks that seeds reach deep paths).
public struct HandlerRunSummary: Sendable, Equatable {
    public var allocationsCreated: Int
    public var replies: Int
    public var sentToPeers: Int
    public var forwardedToClients: Int
}

/// One handler with TURN on, a clock only the harness moves, and in-memory relays.
final class HandlerHarness {
    static let realm = "fuzz.example"
    static let user = "alice"
    static let password = "wonderland"
    let relays = MemoryRelayIO()
    let handler: RequestHandler
    let nonces = NonceIssuer(key: Array(repeating: 7, count: 32))
    let clock = ManualClock(monotonic: 1_000, unix: 1_800_000_000)
    let key = LongTermKey.md5(username: HandlerHarness.user, realm: HandlerHarness.realm, password: HandlerHarness.password)
    var response = [UInt8](repeating: 0, count: 1500)
    var replies = 0
    var forwarded = 0
    var output = [UInt8](repeating: 0, count: 70_000)
    let local = TransportAddress("192.0.2.1:3478")!
    static let clients = [TransportAddress("198.51.100.1:40000")!, TransportAddress("198.51.100.1:40001")!,
                          TransportAddress("198.51.100.2:5000")!, TransportAddress("[2001:db8::2]:6000")!]
    static let peers = [TransportAddress("203.0.113.5:7000")!, TransportAddress("203.0.113.6:7001")!,
                        TransportAddress("[2001:db8::5]:7002")!, TransportAddress("127.0.0.1:7003")!]

    init() {
        var settings = TurnSettings()
        settings.limits.allocationsPerUser = 8
        settings.limits.allocationsPerIP = 6
        settings.limits.allocationRatePerIP = 20
        settings.limits.bandwidthPerAllocation = 4000
        settings.limits.permissionsPerAllocation = 4
        settings.limits.channelsPerAllocation = 4
        // The per-source answer budgets stay on, but high enough that a long run still reaches every
        // reply encoder (one handler lives for the whole run, on a clock the inputs move).
        settings.limits.unauthenticatedRatePerIP = 1000
        settings.limits.bindingRatePerIP = 1000
        let turn = TurnContext(realm: Self.realm,
                               credentials: CredentialStore(realm: Self.realm, users: [Self.user: Self.password],
                                                            secrets: ["fuzz-secret"]),
                               nonces: nonces,
                               policy: PeerPolicy(allow: [CIDR("203.0.113.0/24")!, CIDR("2001:db8::/32")!], deny: []),
                               settings: settings)
        handler = RequestHandler(configuration: HandlerConfiguration(software: "fuzz", turn: turn), clock: clock)
        handler.relayIO = relays
    }

    func context(_ client: Int) -> PacketContext {
        let c = Self.clients[client % Self.clients.count]
        return PacketContext(client: c, local: c.ip.family == .ipv4 ? local : TransportAddress("[2001:db8::1]:3478")!,
                             transport: .udp)
    }

    func datagram(_ bytes: UnsafeRawBufferPointer, client: Int) {
        let ctx = context(client)
        let result = response.withUnsafeMutableBytes { handler.handle(bytes, context: ctx, response: $0) }
        check(result)
    }

    /// `body[0]` picks the method, the rest is taken as attributes (type, length, value; cut where
    /// they stop fitting), then USERNAME, REALM, a valid NONCE and MESSAGE-INTEGRITY are appended.
    func signedRequest(_ body: UnsafeRawBufferPointer, client: Int) {
        guard let first = body.first else { return }
        let methods: [Method] = [.allocate, .refresh, .createPermission, .channelBind, .binding, .connect]
        let method = methods[Int(first) % methods.count]
        let ctx = context(client)
        var request = [UInt8](repeating: 0, count: 1400)
        let n: Int? = request.withUnsafeMutableBytes { buf -> Int? in
            do {
                var w = try MessageWriter(buffer: buf, type: MessageType(method: method, class: .request),
                                          transactionID: TransactionID(high: UInt32(body.count), low: UInt64(first)))
                var j = 1
                while j + 4 <= body.count {
                    let type = UInt16(body[j]) << 8 | UInt16(body[j + 1])
                    let len = min(Int(UInt16(body[j + 2]) << 8 | UInt16(body[j + 3])), body.count - j - 4)
                    let value = UnsafeRawBufferPointer(rebasing: body[(j + 4)..<(j + 4 + len)])
                    let t = AttributeType(rawValue: type)
                    // The harness appends these itself.
                    if t != .messageIntegrity && t != .messageIntegritySHA256 && t != .fingerprint
                        && t != .username && t != .realm && t != .nonce {
                        try w.appendRaw(type: t, value: value)
                    }
                    j += 4 + len
                }
                try w.appendString(.username, Self.user)
                try w.appendString(.realm, Self.realm)
                try w.appendString(.nonce, nonces.issue(for: ctx.client.ip, now: clock.unixSeconds))
                try w.appendMessageIntegrity(key: key)
                if first & 0x80 != 0 { try w.appendFingerprint() }
                return w.count
            } catch {
                return nil
            }
        }
        guard let n else { return }
        request.withUnsafeBytes { datagram(UnsafeRawBufferPointer(rebasing: $0[0..<n]), client: client) }
    }

    func peerData(_ body: UnsafeRawBufferPointer, selector: Int) {
        guard let relay = relays.handle(at: selector) else { return }
        let peer = Self.peers[selector % Self.peers.count]
        let result = output.withUnsafeMutableBytes { handler.handlePeerData(relay: relay, peer: peer, payload: body, output: $0) }
        if case .forward(_, let length) = result {
            forwarded += 1
            precondition(length >= body.count && length <= output.count, "peer data forwarded with a bad length")
        }
    }

    func advance(seconds: UInt64) {
        clock.advance(by: seconds)
        handler.tick()
    }

    func check(_ result: HandlerResult) {
        switch result {
        case .reply(let n):
            replies += 1
            precondition(n >= 20 && n <= response.count, "reply length out of bounds: \(n)")
            // Every reply is a well-formed STUN message.
            response.withUnsafeBytes { r in
                precondition((try? MessageReader(UnsafeRawBufferPointer(rebasing: r[0..<n]))) != nil, "the server wrote a reply it cannot parse")
            }
        case .bindDataConnection:
            preconditionFailure("ConnectionBind over UDP")
        case .replyFrom:
            preconditionFailure("RFC 5780 is off in the fuzz target")
        case .noReply, .malformed:
            break
        }
    }

    /// Ends everything; every relay socket and reservation must come back.
    func finish() {
        handler.deallocateAll()
        advance(seconds: 3600)
        precondition(handler.allocations.count == 0, "allocations left after deallocateAll")
        precondition(relays.openCount == 0, "relay sockets leaked: \(relays.openCount)")
    }
}
