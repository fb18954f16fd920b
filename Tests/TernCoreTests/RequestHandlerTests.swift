import STUN
import Testing
@testable import TernCore

/// The handler in isolation: bytes in, reply bytes out, no sockets.
@Suite("RequestHandler: Binding")
struct RequestHandlerTests {
    let context = PacketContext(client: TransportAddress("192.0.2.1:32853")!,
                                local: TransportAddress("198.51.100.7:3478")!, transport: .udp)

    func run(_ handler: RequestHandler, _ packet: [UInt8]) -> (HandlerResult, [UInt8]) {
        var out = [UInt8](repeating: 0xEE, count: 1500)
        let result = packet.withUnsafeBytes { p in
            out.withUnsafeMutableBytes { handler.handle(p, context: context, response: $0) }
        }
        if case .reply(let n) = result { return (result, Array(out[0..<n])) }
        return (result, [])
    }

    @Test("Binding success mirrors the transaction and reports the client's address")
    func success() throws {
        let handler = RequestHandler(configuration: HandlerConfiguration(software: "Tern"), clock: ManualClock())
        let id = TransactionID.random()
        let request = Message(type: MessageType(method: .binding, class: .request), transactionID: id, attributes: []).encode(fingerprint: true)
        let (result, reply) = run(handler, request)
        guard case .reply = result else { Issue.record("no reply: \(result)"); return }
        let m = try Message.decode(reply)
        #expect(m.transactionID == id)
        // No SOFTWARE in replies to unauthenticated requests (they must stay small).
        #expect(m.attributes.map(\.type) == [.xorMappedAddress, .fingerprint])
        #expect(m.first(.xorMappedAddress) == .xorMappedAddress(context.client))
        #expect(handler.stats.bindingSuccesses == 1)
    }

    @Test("The IPv6 reflexive address is encoded too")
    func ipv6() throws {
        let handler = RequestHandler(configuration: HandlerConfiguration(), clock: ManualClock())
        var ctx = context
        ctx.client = TransportAddress("[2001:db8::1]:4000")!
        var out = [UInt8](repeating: 0, count: 1500)
        let request = Message(type: MessageType(method: .binding, class: .request), transactionID: .random(), attributes: []).encode()
        let result = request.withUnsafeBytes { p in out.withUnsafeMutableBytes { handler.handle(p, context: ctx, response: $0) } }
        guard case .reply(let n) = result else { Issue.record("no reply"); return }
        #expect(try Message.decode(Array(out[0..<n])).first(.xorMappedAddress) == .xorMappedAddress(ctx.client))
    }

    @Test("Malformed input is reported as such and counted", arguments: [
        [UInt8](), [0x00], [0x00, 0x01, 0x00, 0x00], [UInt8](repeating: 0xFF, count: 20),
        Array("\u{16}\u{03}\u{01} TLS ClientHello-ish".utf8),
    ])
    func malformed(_ bytes: [UInt8]) {
        let handler = RequestHandler(configuration: HandlerConfiguration(), clock: ManualClock())
        #expect(run(handler, bytes).0 == .malformed)
        #expect(handler.stats.malformed == 1)
    }

    @Test("ChannelData with no channel bound is dropped without a reply")
    func channelData() {
        let handler = RequestHandler(configuration: HandlerConfiguration(), clock: ManualClock())
        #expect(run(handler, [0x40, 0x00, 0x00, 0x04, 1, 2, 3, 4]).0 == .noReply)
        #expect(handler.stats.unboundChannelData == 1)
        // Reserved channel numbers (0x5000-0x7FFF, RFC 8656 section 12) are malformed.
        #expect(run(handler, [0x50, 0x00, 0x00, 0x00]).0 == .malformed)
    }

    @Test("A response too large for the buffer is counted, never written past the end")
    func tinyBuffer() {
        let handler = RequestHandler(configuration: HandlerConfiguration(software: String(repeating: "x", count: 700)), clock: ManualClock())
        let request = Message(type: MessageType(method: .binding, class: .request), transactionID: .random(), attributes: []).encode()
        var out = [UInt8](repeating: 0, count: 24)
        let result = request.withUnsafeBytes { p in out.withUnsafeMutableBytes { handler.handle(p, context: context, response: $0) } }
        #expect(result == .noReply)
        #expect(handler.stats.encodeFailures == 1)
    }
}
