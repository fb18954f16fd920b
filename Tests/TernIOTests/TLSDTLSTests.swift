import COpenSSL
import Foundation
import Testing
@testable import TernIO

@Suite("DTLS engine and stateless cookie exchange (TLS)")
struct TLSDTLSTests {
    let fixture = TLSFixture.shared
    let clientA: [UInt8] = [4, 127, 0, 0, 1, 0xC3, 0x50]   // any stable encoding of IP+port
    let clientB: [UInt8] = [4, 127, 0, 0, 1, 0xC3, 0x51]

    func dtlsContext() throws -> TLSServerContext {
        try TLSServerContext.dtls(certificateChainPath: fixture.cert, privateKeyPath: fixture.key)
    }

    /// Shuttles datagrams until quiet. Each server `receive` gets exactly one datagram.
    func pumpDatagrams(_ client: TLSTestClient, _ server: TLSSession, serverPlaintext: inout [UInt8]) throws {
        for _ in 0..<32 {
            if !client.handshakeDone { client.handshake() }
            let toServer = client.output()   // one flight; memory BIO keeps no boundaries, DTLS copes
            if !toServer.isEmpty { _ = try server.receive(toServer, plaintext: &serverPlaintext) }
            var datagrams: [[UInt8]] = []
            server.takeDatagrams(into: &datagrams)
            for d in datagrams {
                #expect(d.count <= server.datagramMTU)
                client.feed(d)
            }
            if toServer.isEmpty && datagrams.isEmpty { break }
        }
    }

    @Test func helloVerifyRequestThenAccept() throws {
        let context = try dtlsContext()
        let listener = try DTLSListener(context: context)
        let client = TLSTestClient(dtls: true, alpn: ["stun.turn"], trust: fixture.cert)

        // 1. ClientHello without a cookie → HelloVerifyRequest, no session.
        client.handshake()
        let hello1 = client.output()
        #expect(!hello1.isEmpty)
        guard case .reply(let hvr) = listener.handle(datagram: hello1, from: clientA) else {
            Issue.record("expected a HelloVerifyRequest"); return
        }
        #expect(hvr[0] == 22 && hvr[13] == 3, "handshake record holding HelloVerifyRequest (type 3)")
        #expect(hvr.count < hello1.count, "no amplification")

        // 2. ClientHello with the cookie.
        client.feed(hvr)
        client.handshake()
        let hello2 = client.output()
        #expect(!hello2.isEmpty)

        // The same cookie from another address does not verify: another HelloVerifyRequest.
        guard case .reply = listener.handle(datagram: hello2, from: clientB) else {
            Issue.record("a cookie made for another address must not be accepted"); return
        }
        // From the right address: accepted, and the session already answered the ClientHello.
        guard case .accept(let session) = listener.handle(datagram: hello2, from: clientA) else {
            Issue.record("expected accept"); return
        }
        #expect(session.isDatagram)
        #expect(session.pendingOutput > 0)

        var plaintext: [UInt8] = []
        try pumpDatagrams(client, session, serverPlaintext: &plaintext)
        #expect(session.handshakeComplete)
        #expect(client.handshakeDone)
        #expect(client.verifyResult == Int(X509_V_OK))
        #expect(session.protocolVersion == "DTLSv1.2")
        #expect(session.negotiatedALPN == "stun.turn")
        #expect(session.retransmitTimeout == nil)

        // Application data both ways, one datagram each.
        client.write(stunBindingRequest)
        #expect(try session.receive(client.output(), plaintext: &plaintext) == .data)
        #expect(plaintext == stunBindingRequest)
        try session.send(stunBindingRequest)
        var datagrams: [[UInt8]] = []
        session.takeDatagrams(into: &datagrams)
        #expect(datagrams.count == 1)
        client.feed(datagrams[0])
        #expect(client.read().bytes == stunBindingRequest)

        // Garbage datagrams are discarded by DTLS, not fatal.
        plaintext = []
        #expect(try session.receive([0x17, 0xFE, 0xFD, 1, 2, 3], plaintext: &plaintext) == .needMore)
        #expect(try session.receive(Array(repeating: 0xAB, count: 100), plaintext: &plaintext) == .needMore)
        #expect(plaintext.isEmpty)

        // close_notify.
        client.shutdown()
        #expect(try session.receive(client.output(), plaintext: &plaintext) == .closed)

        // The listener keeps working for the next client (it replaced its SSL).
        let client2 = TLSTestClient(dtls: true)
        client2.handshake()
        guard case .reply = listener.handle(datagram: client2.output(), from: clientB) else {
            Issue.record("listener should answer a new client"); return
        }
    }

    @Test func listenerDropsWhatIsNotAClientHello() throws {
        let listener = try DTLSListener(context: try dtlsContext())
        #expect(isDrop(listener.handle(datagram: [], from: clientA)))
        #expect(isDrop(listener.handle(datagram: Array(repeating: 0, count: 64), from: clientA)))
        #expect(isDrop(listener.handle(datagram: stunBindingRequest, from: clientA)))
        // Looks like a DTLS ClientHello record but is junk inside.
        var junk: [UInt8] = [22, 0xFE, 0xFD] + Array(repeating: 0, count: 10) + [1] + Array(repeating: 0xFF, count: 60)
        #expect(isDrop(listener.handle(datagram: junk, from: clientA)))
        junk[11] = 0; junk[12] = 61
        #expect(isDrop(listener.handle(datagram: junk, from: clientA)))
        // Random "ClientHello-looking" datagrams never trap.
        for _ in 0..<300 {
            var d = (0..<Int.random(in: 25...400)).map { _ in UInt8.random(in: 0...255) }
            d[0] = 22; d[1] = 0xFE; d[13] = 1
            if case .accept = listener.handle(datagram: d, from: clientA) { Issue.record("junk accepted") }
        }
        // Still answers a real client afterwards.
        let client = TLSTestClient(dtls: true)
        client.handshake()
        guard case .reply = listener.handle(datagram: client.output(), from: clientA) else {
            Issue.record("listener should still answer"); return
        }
    }

    @Test func listenerNeedsADTLSContext() throws {
        let error = #expect(throws: TLSError.self) { try DTLSListener(context: try fixture.serverContext()) }
        #expect(error?.kind == .configuration)
    }

    /// Shuttles a DTLS client through the cookie exchange; returns the server's session and its first flight.
    private func acceptedSession(_ context: TLSServerContext) throws -> (TLSSession, [[UInt8]])? {
        let listener = try DTLSListener(context: context)
        let client = TLSTestClient(dtls: true)
        client.handshake()
        guard case .reply(let hvr) = listener.handle(datagram: client.output(), from: clientA) else {
            Issue.record("expected HVR"); return nil
        }
        client.feed(hvr)
        client.handshake()
        guard case .accept(let session) = listener.handle(datagram: client.output(), from: clientA) else {
            Issue.record("expected accept"); return nil
        }
        var first: [[UInt8]] = []
        session.takeDatagrams(into: &first)
        #expect(!first.isEmpty)
        return (session, first)
    }

    @Test("The server's first flight starts OpenSSL's default retransmission timer (at most 2 s); nothing is resent before it expires")
    func retransmissionTimerRunsAfterTheFirstFlight() throws {
        guard let (session, first) = try acceptedSession(try dtlsContext()) else { return }
        let records = first.flatMap { dtlsRecords($0) }
        #expect(Set(records.map(\.sequence)).count == records.count && records.count >= 3, "one flight: \(records)")
        // The server flight is "lost": a timer runs, and nothing is retransmitted before it expires.
        let timeout = try #require(session.retransmitTimeout)
        #expect(timeout > .zero && timeout <= .seconds(2))
        try session.handleTimeout()
        #expect(session.pendingOutput == 0)
    }

    @Test("An expired timer resends the whole flight and starts a longer one, before which nothing is resent; the client completes the handshake through the copies (test-set timers, no waiting)")
    func retransmissionWhenTheTimerExpires() throws {
        let context = try dtlsContext()
        // The timer durations come from the test (OpenSSL's DTLS_set_timer_cb, installed on each SSL of
        // this context as its handshake starts; see `testDTLSTimer`): the first flight's timer is 1 us,
        // which OpenSSL counts as expired at once (it treats under 15 ms left as expired), so no real
        // time has to pass. OpenSSL checks the timer whenever a handshake read finds nothing, here the
        // read right after the flight inside `receive`, and sends the flight again there; a session
        // whose timer expires later does the same from `handleTimeout` (the worker's tick).
        SSL_CTX_set_info_callback(context.ctx, installTestDTLSTimer)
        let listener = try DTLSListener(context: context)
        let client = TLSTestClient(dtls: true)
        client.handshake()
        guard case .reply(let hvr) = listener.handle(datagram: client.output(), from: clientA) else {
            Issue.record("expected HVR"); return
        }
        client.feed(hvr)
        client.handshake()
        guard case .accept(let session) = listener.handle(datagram: client.output(), from: clientA) else {
            Issue.record("expected accept"); return
        }
        var datagrams: [[UInt8]] = []
        session.takeDatagrams(into: &datagrams)
        // The flight, then the same flight again: same records, later sequence numbers (RFC 6347
        // section 4.2.4: a retransmission is the whole flight).
        let records = datagrams.flatMap { dtlsRecords($0) }
        #expect(records.count >= 6 && records.count % 2 == 0, "\(records)")
        let flight = records.prefix(records.count / 2), copy = records.suffix(records.count / 2)
        #expect(flight.map(\.type) == copy.map(\.type) && flight.map(\.length) == copy.map(\.length), "\(records)")
        #expect((copy.map(\.sequence).min() ?? 0) > (flight.map(\.sequence).max() ?? .max), "\(records)")

        // The next timer (a minute, from the test's callback: the back-off) runs and has not expired:
        // handleTimeout sends nothing.
        #expect(try #require(session.retransmitTimeout) > .seconds(50))
        try session.handleTimeout()
        #expect(session.pendingOutput == 0)

        // The client takes the flight and ignores the copy.
        for d in datagrams { client.feed(d) }
        var plaintext: [UInt8] = []
        try pumpDatagrams(client, session, serverPlaintext: &plaintext)
        #expect(client.handshakeDone)
        #expect(session.handshakeComplete)
    }

    private func isDrop(_ r: DTLSListenResult) -> Bool {
        if case .drop = r { return true }
        return false
    }
}

/// OpenSSL's `DTLS_timer_cb` for the retransmission test: a flight's first timer (`previous` 0) is
/// 1 us, every later one (after a retransmission) a minute.
private let testDTLSTimer: @convention(c) (OpaquePointer?, UInt32) -> UInt32 = { _, previous in
    previous == 0 ? 1 : 60_000_000
}

/// An info callback that gives each SSL of the context `testDTLSTimer` as soon as it is in use.
private let installTestDTLSTimer: @convention(c) (OpaquePointer?, Int32, Int32) -> Void = { ssl, _, _ in
    DTLS_set_timer_cb(ssl, testDTLSTimer)
}

/// The records of one DTLS datagram: content type, epoch, sequence number and length (RFC 6347 section 4.1).
func dtlsRecords(_ datagram: [UInt8]) -> [(type: UInt8, epoch: UInt16, sequence: UInt64, length: Int)] {
    var out: [(type: UInt8, epoch: UInt16, sequence: UInt64, length: Int)] = []
    var i = 0
    while i + 13 <= datagram.count {
        let epoch = UInt16(datagram[i + 3]) << 8 | UInt16(datagram[i + 4])
        var sequence: UInt64 = 0
        for b in datagram[(i + 5)..<(i + 11)] { sequence = sequence << 8 | UInt64(b) }
        let length = Int(datagram[i + 11]) << 8 | Int(datagram[i + 12])
        out.append((datagram[i], epoch, sequence, length))
        i += 13 + length
    }
    return out
}
