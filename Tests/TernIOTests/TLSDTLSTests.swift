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

    @Test func retransmissionTimer() throws {
        let listener = try DTLSListener(context: try dtlsContext())
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
        var first: [[UInt8]] = []
        session.takeDatagrams(into: &first)
        #expect(!first.isEmpty)
        // The server flight is "lost": a timer runs, and nothing is retransmitted before it expires.
        let timeout = try #require(session.retransmitTimeout)
        #expect(timeout > .zero && timeout <= .seconds(2))
        try session.handleTimeout()
        #expect(session.pendingOutput == 0)
        // Once it expires, handleTimeout retransmits the flight.
        usleep(UInt32(timeout.components.seconds) * 1_000_000 + UInt32(timeout.components.attoseconds / 1_000_000_000_000) + 50_000)
        try session.handleTimeout()
        var again: [[UInt8]] = []
        session.takeDatagrams(into: &again)
        #expect(again.count == first.count)
        #expect(session.retransmitTimeout != nil)
    }

    private func isDrop(_ r: DTLSListenResult) -> Bool {
        if case .drop = r { return true }
        return false
    }
}
