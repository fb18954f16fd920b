import STUN
import Testing
@testable import TernCore
import TernFuzzing

/// The limits the core tests turn, with the config's defaults. Mapped onto `TurnSettings` in ONE
/// place, `testSettings`, so that a change in how settings are built touches only that function.
/// The TURN settings of a test handler: the config's limits, as given.
func testSettings(_ limits: LimitsConfig) -> TurnSettings {
    var s = TurnSettings()
    s.limits = limits
    return s
}

/// One request handler with TURN on, over the in-memory relays, with a clock only the test moves:
/// the TURN methods driven as the event loop drives them, without a socket or a sleep.
final class TurnHarness {
    static let realm = "tern.test"
    static let users = ["alice": "wonderland", "bob": "builder"]
    static let secret = "s3cret"
    /// The peers' network: the only one the policy allows.
    static let allowed = ["203.0.113.0/24", "2001:db8:1::/48"]

    let clock = ManualClock(monotonic: 10_000, unix: 1_800_000_000)
    let relays: MemoryRelayIO
    let handler: RequestHandler
    let turn: TurnContext
    let local = TransportAddress("192.0.2.1:3478")!
    let local6 = TransportAddress("[2001:db8::1]:3478")!

    /// `ipv6: false` makes the relays refuse IPv6 (no relay address of that family: 440).
    init(allow: [String] = TurnHarness.allowed, ports: ClosedRange<UInt16> = 50_000...50_015, ipv6: Bool = true,
         shared: SharedTurnState = SharedTurnState(), limits adjust: (inout LimitsConfig) -> Void = { _ in }) {
        relays = MemoryRelayIO(ports: ports)
        relays.recordsSends = true
        if !ipv6 { relays.unavailableFamilies = [.ipv6] }
        // The config's defaults, with the bandwidth budget off (tests that need it turn it on).
        var limits = LimitsConfig()
        limits.bandwidthPerAllocation = 0
        adjust(&limits)
        turn = TurnContext(realm: Self.realm,
                           credentials: CredentialStore(realm: Self.realm, users: Self.users, secrets: [Self.secret]),
                           nonces: NonceIssuer(key: Array(repeating: 3, count: 32)),
                           policy: PeerPolicy(allow: allow.compactMap(CIDR.init), deny: []),
                           settings: testSettings(limits), shared: shared)
        handler = RequestHandler(configuration: HandlerConfiguration(software: "Tern test", turn: turn), clock: clock)
        handler.relayIO = relays
    }

    /// Moves the clock on and runs the handler's tick, as the worker's timer would.
    func advance(by seconds: UInt64) {
        clock.advance(by: seconds)
        handler.tick()
    }

    /// A client on its own 5-tuple.
    func client(_ address: String = "198.51.100.1:40000", username: String = "alice", password: String? = nil,
                transport: ClientTransport = .udp) -> TestClient {
        let a = TransportAddress(address)!
        return TestClient(harness: self, context: PacketContext(client: a, local: a.ip.family == .ipv4 ? local : local6,
                                                                transport: transport),
                          username: username, password: password ?? Self.users[username] ?? "")
    }

    /// A datagram from `peer` arriving at the relay bound to `relay`: what goes back to the client.
    func fromPeer(_ peer: TransportAddress, to relay: TransportAddress, _ payload: [UInt8]) -> [UInt8]? {
        guard let handle = relays.handle(boundTo: relay) else { return nil }
        var out = [UInt8](repeating: 0, count: 70_000)
        let result = payload.withUnsafeBytes { p in
            out.withUnsafeMutableBytes { handler.handlePeerData(relay: handle, peer: peer, payload: p, output: $0) }
        }
        guard case .forward(_, let n) = result else { return nil }
        return Array(out[0..<n])
    }

    /// Payloads the relays sent, to whom, from which relay address.
    var sent: [MemoryRelayIO.SentDatagram] { relays.datagrams }
}

/// A TURN client speaking to the harness's handler: builds requests, answers the 401 challenge
/// once (RFC 8489 section 9.2.3) and decodes the replies.
final class TestClient {
    let harness: TurnHarness
    let context: PacketContext
    var username: String
    var password: String
    var realm: String?
    var nonce: String?
    var useSHA256 = false
    /// USERHASH instead of USERNAME (RFC 8489 section 14.4).
    var useUserhash = false
    var fingerprint = true

    init(harness: TurnHarness, context: PacketContext, username: String, password: String) {
        self.harness = harness
        self.context = context
        self.username = username
        self.password = password
    }

    var key: [UInt8] {
        useSHA256 ? LongTermKey.sha256(username: username, realm: realm ?? "", password: password)
                  : LongTermKey.md5(username: username, realm: realm ?? "", password: password)
    }

    /// Hands bytes to the handler; the reply, if any.
    func send(_ bytes: [UInt8]) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: 1500)
        let result = bytes.withUnsafeBytes { p in
            out.withUnsafeMutableBytes { harness.handler.handle(p, context: context, response: $0) }
        }
        guard case .reply(let n) = result else { return nil }
        return Array(out[0..<n])
    }

    func encode(_ method: Method, _ attributes: [Attribute], id: TransactionID = .random(),
                authenticated: Bool = true) -> [UInt8] {
        var attrs = attributes
        var mi: [UInt8]? = nil, mi256: [UInt8]? = nil
        if authenticated, let realm, let nonce {
            attrs.append(useUserhash ? .userhash(userhash(username: username, realm: realm)) : .username(username))
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
            .encode(integrityKey: mi, integritySHA256Key: mi256, fingerprint: fingerprint)
    }

    /// One exchange: the decoded reply (nil when the handler did not answer).
    func exchange(_ bytes: [UInt8]) -> Message? {
        guard let reply = send(bytes) else { return nil }
        return try? Message.decode(reply)
    }

    /// A request with credentials, retried once after a 401/438 challenge. The reply, or nil.
    @discardableResult
    func request(_ method: Method, _ attributes: [Attribute] = [], authenticated: Bool = true) -> Message? {
        var response = exchange(encode(method, attributes, authenticated: authenticated))
        if authenticated, let m = response, let code = m.errorCode?.code, code == 401 || code == 438,
           let r = m.realm, let n = m.nonce {
            let retry = realm == nil || code == 438
            realm = r
            nonce = n
            if retry { response = exchange(encode(method, attributes)) }
        }
        return response
    }

    /// Allocate with REQUESTED-TRANSPORT UDP unless `attributes` name a transport.
    @discardableResult
    func allocate(_ attributes: [Attribute] = []) -> Message? {
        let hasTransport = attributes.contains { $0.type == .requestedTransport }
        return request(.allocate, hasTransport ? attributes : [.requestedTransport(protocolNumber: 17)] + attributes)
    }

    /// The relayed addresses of a successful allocation.
    func relayed(_ m: Message?) -> [TransportAddress] {
        m?.attributes.compactMap { if case .xorRelayedAddress(let a) = $0 { return a } else { return nil } } ?? []
    }

    /// RFC 8656 section 10.1: a Send indication (never answered).
    func sendIndication(to peer: TransportAddress, _ data: [UInt8]) {
        let bytes = Message(type: MessageType(method: .send, class: .indication),
                            attributes: [.xorPeerAddress(peer), .data(data)]).encode()
        #expect(send(bytes) == nil)
    }

    /// RFC 8656 section 12: ChannelData (never answered), padded to 4 bytes on streams (section 12.5).
    func sendChannelData(_ channel: UInt16, _ data: [UInt8]) {
        var bytes = [UInt8(channel >> 8), UInt8(channel & 0xFF), UInt8(data.count >> 8), UInt8(data.count & 0xFF)] + data
        if context.transport.isStream { bytes += [UInt8](repeating: 0, count: (4 - data.count % 4) % 4) }
        #expect(send(bytes) == nil)
    }
}

extension Message {
    var isSuccess: Bool { type.messageClass == .successResponse }
    var code: Int? { errorCode?.code }
}

extension Optional where Wrapped == Message {
    var isSuccess: Bool { self?.isSuccess ?? false }
    var code: Int? { self?.errorCode?.code }
}

/// The peers of the tests, inside `TurnHarness.allowed`.
enum Peers {
    static let a = TransportAddress("203.0.113.5:7000")!
    static let b = TransportAddress("203.0.113.6:7001")!
    static let aOtherPort = TransportAddress("203.0.113.5:7009")!
    static let v6 = TransportAddress("[2001:db8:1::5]:7002")!
    /// Outside the allowed networks: the policy refuses it (403).
    static let denied = TransportAddress("10.0.0.1:5000")!
}
