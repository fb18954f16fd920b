import STUN
import Testing
@testable import TernCore

/// RFC 5780 on the server: OTHER-ADDRESS, RESPONSE-ORIGIN, CHANGE-REQUEST and RESPONSE-PORT.
@Suite("RFC 5780 NAT behaviour discovery in the handler")
struct NatBehaviorTests {
    static let primary = TransportAddress("192.0.2.1:3478")!
    static let other = TransportAddress("192.0.2.2:3479")!
    static let client = TransportAddress("198.51.100.7:4000")!

    static func handler(nat: Bool = true, limits: LimitsConfig = LimitsConfig()) -> RequestHandler {
        RequestHandler(configuration: HandlerConfiguration(throttle: ReplyThrottle(limits: limits),
                                                           natBehavior: nat ? NatBehaviorAddresses(primary: primary, other: other) : nil),
                       clock: ManualClock())
    }

    static func send(_ h: RequestHandler, _ attributes: [Attribute], to local: TransportAddress = primary,
                     from client: TransportAddress = client) -> (HandlerResult, Message?) {
        let request = Message(type: MessageType(method: .binding, class: .request), attributes: attributes).encode()
        var out = [UInt8](repeating: 0, count: 1500)
        let r = request.withUnsafeBytes { p in out.withUnsafeMutableBytes {
            h.handle(p, context: PacketContext(client: client, local: local, transport: .udp), response: $0) } }
        switch r {
        case .reply(let n), .replyFrom(let n, _, _): return (r, try? Message.decode(Array(out[0..<n])))
        default: return (r, nil)
        }
    }

    @Test("A Binding on any of the four addresses carries OTHER-ADDRESS (the address differing in IP and port) and RESPONSE-ORIGIN")
    func otherAddressAndOrigin() {
        let h = Self.handler()
        let (r, m) = Self.send(h, [])
        if case .reply = r {} else { Issue.record("a plain Binding is answered in place: \(r)") }
        #expect(m?.first(.otherAddress) == .otherAddress(Self.other))
        #expect(m?.first(.responseOrigin) == .responseOrigin(Self.primary))
        #expect(m?.xorMappedAddress == Self.client)
        let (_, fromOther) = Self.send(h, [], to: Self.other)
        #expect(fromOther?.first(.otherAddress) == .otherAddress(Self.primary))
        let a1p2 = TransportAddress("192.0.2.1:3479")!
        let (_, crossed) = Self.send(h, [], to: a1p2)
        #expect(crossed?.first(.otherAddress) == .otherAddress(TransportAddress("192.0.2.2:3478")!))
    }

    @Test("CHANGE-REQUEST moves the source to the other IP and/or port; RESPONSE-PORT the destination")
    func changeRequestAndResponsePort() {
        let h = Self.handler()
        for (ip, port, expected) in [(true, true, "192.0.2.2:3479"), (true, false, "192.0.2.2:3478"), (false, true, "192.0.2.1:3479")] {
            let (r, m) = Self.send(h, [.changeRequest(changeIP: ip, changePort: port)])
            guard case .replyFrom(_, let source, let destination) = r else { Issue.record("\(ip) \(port): \(r)"); continue }
            #expect(source == TransportAddress(expected)!)
            #expect(destination == Self.client)
            #expect(m?.first(.responseOrigin) == .responseOrigin(TransportAddress(expected)!))
        }
        let (r, _) = Self.send(h, [.unknown(type: AttributeType(rawValue: 0x0027), value: [0x1F, 0x90, 0, 0])])
        guard case .replyFrom(_, let source, let destination) = r else { Issue.record("\(r)"); return }
        #expect(source == Self.primary)
        #expect(destination == TransportAddress("198.51.100.7:8080")!)
        // A malformed RESPONSE-PORT or CHANGE-REQUEST is a 400.
        #expect(Self.send(h, [.unknown(type: AttributeType(rawValue: 0x0027), value: [0, 0, 0, 0])]).1?.errorCode?.code == 400)
        #expect(Self.send(h, [.unknown(type: .changeRequest, value: [0, 0])]).1?.errorCode?.code == 400)
    }

    @Test("Off (the default): CHANGE-REQUEST and RESPONSE-PORT get 420, and no OTHER-ADDRESS is sent")
    func offByDefault() {
        let h = Self.handler(nat: false)
        #expect(Self.send(h, [.changeRequest(changeIP: true, changePort: true)]).1?.errorCode?.code == 420)
        #expect(Self.send(h, [.unknown(type: AttributeType(rawValue: 0x0027), value: [0x1F, 0x90, 0, 0])]).1?.errorCode?.code == 420)
        #expect(Self.send(h, []).1?.first(.otherAddress) == nil)
        // On, but a request on another local address (not one of the four) is a plain Binding.
        #expect(Self.send(Self.handler(), [], to: TransportAddress("192.0.2.9:3478")!).1?.first(.otherAddress) == nil)
    }

    @Test("Redirected answers draw on the unauthenticated per-source budget")
    func redirectedAnswersAreThrottled() {
        var limits = LimitsConfig()
        limits.unauthenticatedRatePerIP = 3
        let h = Self.handler(limits: limits)
        var redirected = 0
        for _ in 0..<10 {
            if case .replyFrom = Self.send(h, [.changeRequest(changeIP: true, changePort: true)]).0 { redirected += 1 }
        }
        #expect(redirected == 3)
        // Plain Bindings still go out on the Binding budget.
        if case .reply = Self.send(h, []).0 {} else { Issue.record("plain Binding dropped") }
    }

    @Test("natBehavior in the config: the primary is the first udp listener of the family, concrete; errors name the key")
    func config() throws {
        let c = try parse(#"{"listeners": [{"transport": "udp", "address": "192.0.2.1", "port": 3478}], "natBehavior": {"otherAddress": "192.0.2.2", "otherPort": 3479}}"#)
        #expect(c.natBehaviorAddresses == NatBehaviorAddresses(primary: Self.primary, other: Self.other))
        #expect(c.natBehaviorListeners.map(\.description) == ["udp 192.0.2.1:3479", "udp 192.0.2.2:3478", "udp 192.0.2.2:3479"])
        #expect(try parse("{}").natBehaviorListeners.isEmpty)
        #expect(parseError(#"{"natBehavior": {"otherAddress": "192.0.2.2", "otherPort": 3479}}"#)?.message.contains("concrete address") == true)
        let base = #""listeners": [{"transport": "udp", "address": "192.0.2.1", "port": 3478}]"#
        #expect(parseError("{\(base), \"natBehavior\": {\"otherAddress\": \"192.0.2.1\", \"otherPort\": 3479}}")?.path == "natBehavior.otherAddress")
        #expect(parseError("{\(base), \"natBehavior\": {\"otherAddress\": \"192.0.2.2\", \"otherPort\": 3478}}")?.path == "natBehavior.otherPort")
        #expect(parseError("{\(base), \"natBehavior\": {\"otherAddress\": \"2001:db8::2\", \"otherPort\": 3479}}")?.path == "natBehavior")
        #expect(parseError("{\(base), \"natBehavior\": {\"otherAddress\": \"192.0.2.2\"}}")?.path == "natBehavior")
    }
}
