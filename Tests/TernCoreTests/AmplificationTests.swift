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
    /// The README's Binding figure: a 44-byte success response (XOR-MAPPED-ADDRESS of an IPv6
    /// client) to a bare 20-byte Binding request: 2.2x.
    static let documentedBindingFactor = 2.2

    /// The handler as the default server builds it, with the default limits on (the per-source
    /// throttles included) and a long SOFTWARE configured.
    static func makeHandler(turnOn: Bool = true, limits: LimitsConfig = LimitsConfig()) -> RequestHandler {
        var settings = TurnSettings()
        settings.limits = limits
        let turn = TurnContext(realm: TernConfig.defaultRealm,
                               credentials: CredentialStore(realm: TernConfig.defaultRealm, users: ["alice": "pw"], secrets: []),
                               nonces: NonceIssuer(key: NonceIssuer.randomKey()),
                               policy: PeerPolicy(allow: [], deny: []), settings: settings)
        return RequestHandler(configuration: HandlerConfiguration(software: String(repeating: "s", count: 700),
                                                                  turn: turnOn ? turn : nil,
                                                                  throttle: ReplyThrottle(limits: limits)),
                              clock: ManualClock(monotonic: 100, unix: 1_800_000_000))
    }

    let handler = Self.makeHandler()

    static func context(_ client: String = "198.51.100.7:4000") -> PacketContext {
        PacketContext(client: TransportAddress(client)!, local: TransportAddress("192.0.2.1:3478")!, transport: .udp)
    }

    /// Each measured request comes from a new source, so that the per-source throttle (on, at its
    /// default) answers it: the figure is what one answered request costs.
    func factor(_ request: [UInt8], handler h: RequestHandler? = nil, ipv6: Bool = false) -> Double {
        var rng = SystemRandomNumberGenerator()
        let source = ipv6
            ? "[2001:db8:\(String(UInt16.random(in: 1...0xFFFF, using: &rng), radix: 16))::1]:\(UInt16.random(in: 1024...65535, using: &rng))"
            : "203.0.\(UInt8.random(in: 0...255, using: &rng)).\(UInt8.random(in: 1...254, using: &rng)):\(UInt16.random(in: 1024...65535, using: &rng))"
        var out = [UInt8](repeating: 0, count: 2048)
        let r = request.withUnsafeBytes { p in out.withUnsafeMutableBytes { (h ?? handler).handle(p, context: Self.context(source), response: $0) } }
        guard case .reply(let n) = r else { return 0 }
        return Double(n) / Double(request.count)
    }

    static let methods: [Method] = [.binding, .allocate, .refresh, .createPermission, .channelBind, .connect, .connectionBind,
                                    Method(rawValue: 0x0FF)]

    static func request(_ method: Method, _ attributes: [Attribute], fingerprint: Bool = false, integrityKey: [UInt8]? = nil) -> [UInt8] {
        Message(type: MessageType(method: method, class: .request), attributes: attributes)
            .encode(integrityKey: integrityKey, fingerprint: fingerprint)
    }
    func request(_ method: Method, _ attributes: [Attribute], fingerprint: Bool = false, integrityKey: [UInt8]? = nil) -> [UInt8] {
        Self.request(method, attributes, fingerprint: fingerprint, integrityKey: integrityKey)
    }

    @Test("The worst reply/request ratio over every unauthenticated request class, with the limits on, is the README's figure")
    func worstFactor() {
        let turnOff = Self.makeHandler(turnOn: false)
        var worst: [String: Double] = [:]
        func note(_ label: String, _ f: Double) { worst[label] = max(worst[label] ?? 0, f) }
        for m in Self.methods {
            note("bare request", factor(request(m, [])))
            note("with FINGERPRINT", factor(request(m, [], fingerprint: true)))
            note("TURN off", factor(request(m, [], fingerprint: true), handler: turnOff))
            note("TURN off, bare", factor(request(m, []), handler: turnOff))
            note("bare request, IPv6 source", factor(request(m, []), ipv6: true))
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
        // Binding on its own: its success response carries the source's address.
        let binding = max(factor(request(.binding, [])), factor(request(.binding, []), ipv6: true))
        #expect(binding > 1 && binding <= Self.documentedBindingFactor, "Binding factor \(binding)")
        let overall = worst.values.max() ?? 0
        print("amplification by class: \(worst.sorted { $0.key < $1.key }.map { "\($0.key) \(String(format: "%.2f", $0.value))" }.joined(separator: ", "))")
        #expect(overall > 1, "no reply at all: the check measured nothing")
        #expect(overall <= Self.documentedWorstFactor, "worst factor \(overall) by class \(worst)")
    }
}

/// Every answer to a request that did not authenticate goes through one per-source throttle,
/// whatever the method and whether TURN is on; Binding has its own, higher budget.
@Suite("Unauthenticated answers are throttled, every method")
struct ThrottleEveryMethodTests {
    /// Sends `count` copies of `request` from one source in one second; how many were answered.
    static func answered(_ h: RequestHandler, _ request: [UInt8], count: Int, from client: String = "198.51.100.9:5000") -> Int {
        var out = [UInt8](repeating: 0, count: 2048)
        var n = 0
        for _ in 0..<count {
            let r = request.withUnsafeBytes { p in out.withUnsafeMutableBytes { h.handle(p, context: AmplificationTests.context(client), response: $0) } }
            if case .reply = r { n += 1 }
        }
        return n
    }

    @Test("Every TURN method, a ConnectionBind on UDP, an unknown method and a 420 get at most unauthenticatedRatePerIP answers a second per source; the next second refills", arguments: [true, false])
    func everyMethod(turnOn: Bool) {
        var limits = LimitsConfig()
        limits.unauthenticatedRatePerIP = 7
        limits.bindingRatePerIP = 11
        for m in AmplificationTests.methods where m != .binding {
            let h = AmplificationTests.makeHandler(turnOn: turnOn, limits: limits)
            let bare = AmplificationTests.request(m, [])
            #expect(Self.answered(h, bare, count: 20) == 7, "\(m), TURN \(turnOn ? "on" : "off")")
            // Another source has its own budget.
            #expect(Self.answered(h, bare, count: 20, from: "198.51.100.10:5000") == 7, "\(m)")
            #expect(h.turnCounters.droppedUnauthenticatedRate == 26, "\(m)")
        }
        // A 420 to a Binding with an unknown comprehension-required attribute draws on the same budget.
        let h = AmplificationTests.makeHandler(turnOn: turnOn, limits: limits)
        let unknown = AmplificationTests.request(.binding, [.unknown(type: AttributeType(rawValue: 0x0041), value: [])])
        #expect(Self.answered(h, unknown, count: 20) == 7)
    }

    @Test("Binding is answered on its own per-source budget, higher than the challenge budget; 0 turns it off", arguments: [true, false])
    func bindingBudget(turnOn: Bool) {
        var limits = LimitsConfig()
        limits.unauthenticatedRatePerIP = 7
        limits.bindingRatePerIP = 11
        let h = AmplificationTests.makeHandler(turnOn: turnOn, limits: limits)
        let binding = AmplificationTests.request(.binding, [], fingerprint: true)
        #expect(Self.answered(h, binding, count: 30) == 11)
        #expect(h.stats.droppedBindingRate == 19)
        // The challenge budget is separate: a TURN request from the same source is still answered.
        #expect(Self.answered(h, AmplificationTests.request(.allocate, []), count: 1) == 1)
        // An IPv6 source is counted by its /64.
        #expect(Self.answered(h, binding, count: 6, from: "[2001:db8:1:2::1]:5000") == 6)
        #expect(Self.answered(h, binding, count: 10, from: "[2001:db8:1:2::99]:5000") == 5)
        // The next second refills.
        (h.clock as! ManualClock).advance(by: 1)
        h.tick()
        #expect(Self.answered(h, binding, count: 30) == 11)
        // The default budget is higher than the default challenge budget, and 0 means unlimited.
        #expect(LimitsConfig().bindingRatePerIP > LimitsConfig().unauthenticatedRatePerIP)
        limits.bindingRatePerIP = 0
        let unlimited = AmplificationTests.makeHandler(turnOn: turnOn, limits: limits)
        #expect(Self.answered(unlimited, binding, count: 3000) == 3000)
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
        #expect(t.count == 4)
        #expect(t.admit(IPAddress("192.0.2.3")!, now: 11, limit: 1))
        #expect(t.admit(a, now: 11, limit: 2))
        #expect(t.count <= 4)
        t.sweep(now: 11)
        #expect(t.count == 2)  // only the sources seen in second 11 stay
        #expect(t.admit(IPAddress("192.0.2.9")!, now: 12, limit: 0))  // 0: unlimited, not tracked
        #expect(t.count == 2)
    }

    @Test("A full table forgets the least recently seen source and admits the newcomer at once")
    func fullTableEvictsLeastRecentlySeen() {
        let t = SourceRateTable(capacity: 3)
        let ip = (1...5).map { IPAddress("192.0.2.\($0)")! }
        #expect(t.admit(ip[0], now: 10, limit: 1))
        #expect(t.admit(ip[1], now: 10, limit: 1))
        #expect(t.admit(ip[2], now: 10, limit: 1))
        #expect(!t.admit(ip[0], now: 10, limit: 1))   // seen again: now the most recent, and over its limit
        // Full, every source seen this second: a newcomer is admitted; ip[1], least recently seen, goes.
        #expect(t.admit(ip[3], now: 10, limit: 1))
        #expect(t.evicted == 1)
        #expect(t.count == 3)
        #expect(!t.admit(ip[0], now: 10, limit: 1))   // still tracked, still over its limit
        #expect(!t.admit(ip[2], now: 10, limit: 1))   // still tracked
        #expect(t.admit(ip[1], now: 10, limit: 1))    // forgotten: a fresh count (evicts ip[3])
        #expect(t.evicted == 2)
        // A flood of 10,000 spoofed sources cannot lock out a newcomer, and the table stays bounded.
        let flood = SourceRateTable(capacity: 64)
        for i in 0..<10_000 { _ = flood.admit(.v4(0x0A00_0000 | UInt32(i)), now: 20, limit: 1) }
        #expect(flood.count == 64)
        #expect(flood.admit(IPAddress("198.51.100.1")!, now: 20, limit: 1))
        #expect(flood.evicted == 10_000 - 64 + 1)
    }
}
