import STUN
import Testing
@testable import TernCore

/// No answer to an unauthenticated request may be more than a small constant factor larger than
/// the request: such requests are spoofable, so a large answer would make the server a reflection
/// amplifier (RFC 8656 section 21.1). Every class of unauthenticated request is sent to a handler
/// configured as the default server is (realm "tern"), with a long SOFTWARE string configured to
/// show it stays out of these answers, and the worst reply/request ratio is checked against the
/// figure the README states.
@Suite("Amplification of unauthenticated requests")
struct AmplificationTests {
    /// The README's figure: the worst case is a 112-byte 401 challenge (ERROR-CODE, REALM "tern", a
    /// 45-byte NONCE, PASSWORD-ALGORITHMS) answering a bare 20-byte TURN request: 5.6x.
    static let documentedWorstFactor = 5.6

    let handler: RequestHandler = {
        let turn = TurnContext(realm: TernConfig.defaultRealm,
                               credentials: CredentialStore(realm: TernConfig.defaultRealm, users: ["alice": "pw"], secrets: []),
                               nonces: NonceIssuer(key: NonceIssuer.randomKey()),
                               policy: PeerPolicy(allow: [], deny: []), settings: TurnSettings())
        var settings = TurnSettings()
        settings.limits.unauthenticatedRatePerIP = 1_000_000
        let h = RequestHandler(configuration: HandlerConfiguration(software: String(repeating: "s", count: 700),
                                                                   turn: TurnContext(realm: turn.realm, credentials: turn.credentials,
                                                                                     nonces: turn.nonces, policy: turn.policy, settings: settings)),
                               clock: ManualClock(monotonic: 100, unix: 1_800_000_000))
        return h
    }()
    let context = PacketContext(client: TransportAddress("198.51.100.7:4000")!, local: TransportAddress("192.0.2.1:3478")!,
                                transport: .udp)

    func factor(_ request: [UInt8]) -> Double {
        var out = [UInt8](repeating: 0, count: 2048)
        let r = request.withUnsafeBytes { p in out.withUnsafeMutableBytes { handler.handle(p, context: context, response: $0) } }
        guard case .reply(let n) = r else { return 0 }
        return Double(n) / Double(request.count)
    }

    static let methods: [Method] = [.binding, .allocate, .refresh, .createPermission, .channelBind, .connect, .connectionBind,
                                    Method(rawValue: 0x0FF)]

    func request(_ method: Method, _ attributes: [Attribute], fingerprint: Bool = false, integrityKey: [UInt8]? = nil) -> [UInt8] {
        Message(type: MessageType(method: method, class: .request), attributes: attributes)
            .encode(integrityKey: integrityKey, fingerprint: fingerprint)
    }

    @Test("The worst reply/request ratio over every unauthenticated request class is the README's figure")
    func worstFactor() {
        var worst: [String: Double] = [:]
        func note(_ label: String, _ f: Double) { worst[label] = max(worst[label] ?? 0, f) }
        for m in Self.methods {
            note("bare request", factor(request(m, [])))
            note("with FINGERPRINT", factor(request(m, [], fingerprint: true)))
            note("unknown comprehension-required attribute", factor(request(m, [.unknown(type: AttributeType(rawValue: 0x0041), value: [])])))
            note("MESSAGE-INTEGRITY without NONCE", factor(request(m, [.username("alice")], integrityKey: Array(repeating: 1, count: 16))))
            note("stale NONCE", factor(request(m, [.username("alice"), .realm("tern"), .nonce("obMatJos2wAAAx")],
                                               integrityKey: Array(repeating: 1, count: 16))))
        }
        // Random requests: any method, up to 8 random attributes of random types and sizes.
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<3000 {
            let m = Self.methods[Int.random(in: 0..<Self.methods.count, using: &rng)]
            let attrs: [Attribute] = (0..<Int.random(in: 0...8, using: &rng)).map { _ in
                .unknown(type: AttributeType(rawValue: UInt16.random(in: 0...0xFFFF, using: &rng)),
                         value: (0..<Int.random(in: 0...12, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) })
            }.filter { ![.messageIntegrity, .messageIntegritySHA256, .fingerprint].contains($0.type) }
            note("random", factor(request(m, attrs, fingerprint: Bool.random(using: &rng))))
        }
        let overall = worst.values.max() ?? 0
        print("amplification by class: \(worst.sorted { $0.key < $1.key }.map { "\($0.key) \(String(format: "%.2f", $0.value))" }.joined(separator: ", "))")
        #expect(overall > 1, "no reply at all: the check measured nothing")
        #expect(overall <= Self.documentedWorstFactor, "worst factor \(overall) by class \(worst)")
    }
}

@Suite("Per-source limit keys")
struct SourceRateTableTests {
    @Test("IPv6 sources are counted per /64, IPv4 per address; a new second refills; the table stays bounded")
    func keysAndBounds() {
        let t = SourceRateTable(capacity: 4)
        let a = IPAddress("2001:db8:1:2::1")!, b = IPAddress("2001:db8:1:2:ffff::9")!, c = IPAddress("2001:db8:1:3::1")!
        #expect(t.admit(a, now: 10, limit: 2))
        #expect(t.admit(b, now: 10, limit: 2))      // same /64 as a: its second event
        #expect(!t.admit(a, now: 10, limit: 2))
        #expect(t.admit(c, now: 10, limit: 2))      // another /64
        #expect(t.admit(IPAddress("192.0.2.1")!, now: 10, limit: 1))
        #expect(t.admit(IPAddress("192.0.2.2")!, now: 10, limit: 1))
        #expect(!t.admit(IPAddress("192.0.2.1")!, now: 10, limit: 1))
        // Full (4 sources this second): a fifth source waits for the next second.
        #expect(!t.admit(IPAddress("192.0.2.3")!, now: 10, limit: 1))
        #expect(t.refusedFull == 1)
        #expect(t.admit(IPAddress("192.0.2.3")!, now: 11, limit: 1))
        #expect(t.admit(a, now: 11, limit: 2))
        #expect(t.count <= 4)
    }
}
