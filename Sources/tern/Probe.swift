import ArgumentParser
import Foundation
import STUN
import TernCore
import TernIO

/// `tern probe URL`: diagnoses any STUN/TURN server (Tern or not) the way a WebRTC client uses it.
///
/// - Binding (RFC 8489 section 6) on the URL's transport: the mapped address and the round-trip time.
/// - For `turn:` URLs, with credentials: the 401 challenge (realm, PASSWORD-ALGORITHMS offered), an
///   Allocate (RFC 8656 section 7: relayed address, lifetime), two allocations relaying to each
///   other through channels (section 12: N datagrams each way, loss, RTT percentiles), the largest
///   datagram that relays without loss (stepping up), and Refresh with LIFETIME 0.
///
/// Exit status 0 when every check passed, 1 when one failed, 2 on a usage error.
struct Probe: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Diagnose a STUN/TURN server: Binding, authentication, Allocate, relaying through channels, the largest relayed datagram.",
        discussion: """
            Examples:
              tern probe stun:stun.example.com
              tern probe "turn:turn.example.com:3478?transport=tcp" --user alice --password secret
              tern probe turn:turn.example.com --secret SHARED-SECRET      (a TURN REST credential is made)

            Exit status: 0 when every check passed, 1 when one failed, 2 on a usage error.
            """)

    @Argument(help: "A stun: or turn: URI (RFC 7064, RFC 7065), e.g. turn:turn.example.com:3478?transport=udp.")
    var url: String

    @Option(help: "TURN username (long-term credentials).")
    var user: String?

    @Option(help: "TURN password.")
    var password: String?

    @Option(help: "A TURN REST shared secret: the probe makes a one-hour credential for user \"probe\" with it.")
    var secret: String?

    @Option(help: "Datagrams sent each way through the relay.")
    var count: Int = 50

    @Option(help: "Milliseconds to wait for each answer.")
    var timeout: Int = 2000

    @Flag(help: "Print the report as JSON.")
    var json = false

    @Option(help: ArgumentHelp("turns:/stuns: trust the certificates in this PEM file instead of the system's.", valueName: "file"))
    var ca: String?

    @Flag(help: "turns:/stuns: accept any certificate (a test server's self-signed one).")
    var insecure = false

    /// Usage errors exit 2 (the issue's contract; ArgumentParser's own would be 64).
    func validate() throws {
        func usage(_ message: String) -> ExitCode {
            FileHandle.standardError.write(Data("tern probe: \(message)\n".utf8))
            return ExitCode(2)
        }
        let uri: TurnURI
        do { uri = try TurnURI(parsing: url) } catch { throw usage("\"\(url)\" is not a STUN/TURN URI: \(error)") }
        if uri.scheme == .turns, uri.transport == "udp" {
            throw usage("turns: over DTLS (?transport=udp) is not probed yet; probe turns: over TLS (?transport=tcp) or the turn: URL")
        }
        if let t = uri.transport, t != "udp", t != "tcp" { throw usage("transport \(t) is not supported (udp or tcp)") }
        if uri.scheme == .turn || uri.scheme == .turns {
            let haveStatic = user != nil && password != nil
            guard haveStatic != (secret != nil) else { throw usage("a turn: URL needs --user and --password, or --secret") }
        }
        guard (1...10_000).contains(count) else { throw usage("--count must be 1...10000") }
        guard (50...60_000).contains(timeout) else { throw usage("--timeout must be 50...60000 milliseconds") }
    }

    func run() throws {
        let uri = try TurnURI(parsing: url)
        var report = ProbeReport(url: uri.description)
        let secure = uri.scheme == .turns || uri.scheme == .stuns
        let transport: ClientTransport = secure ? .tls : uri.transport == "tcp" ? .tcp : .udp
        report.transport = transport.description
        guard let ip = Posix.resolve(uri.host).first else {
            report.fail("resolve", "\(uri.host) does not resolve")
            finish(report)
        }
        let server = TransportAddress(ip: ip, port: uri.port ?? (secure ? 5349 : 3478))
        report.server = "\(server)"
        var host = uri.host
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        let tls = secure ? ProbeConnection.TLSOptions(serverName: host, caFile: ca, verify: !insecure) : nil
        let runner = ProbeRunner(server: server, transport: transport, timeout: timeout, count: count, tls: tls)
        if tls != nil && !runner.tlsHandshake(&report) { finish(report) }
        runner.binding(&report)
        if uri.scheme == .turn || uri.scheme == .turns {
            let (username, password) = credentials()
            runner.turn(&report, username: username, password: password)
        }
        finish(report)
    }

    func credentials() -> (String, String) {
        if let secret {
            let name = "\(UInt64(Date().timeIntervalSince1970) + 3600):probe"
            return (name, CredentialStore.restPassword(secret: secret, username: name))
        }
        return (user ?? "", password ?? "")
    }

    func finish(_ report: ProbeReport) -> Never {
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: (try? encoder.encode(report)) ?? Data(), as: UTF8.self))
        } else {
            print(report.text)
        }
        fflush(stdout)
        Foundation.exit(report.passed ? 0 : 1)
    }
}

/// What the probe found: one line per check, and the figures behind them.
struct ProbeReport: Encodable {
    struct Check: Encodable {
        var name: String
        var ok: Bool
        var detail: String
    }
    struct Relay: Encodable {
        var sent = 0
        var receivedByPeer = 0
        var echoedBack = 0
        var lossPercent = 0.0
        var rttMs: [String: Double] = [:]
    }

    var url: String
    var transport = ""
    var server = ""
    var checks: [Check] = []
    var mappedAddress: String?
    var bindingRTTMs: Double?
    var realm: String?
    var algorithms: [String]?
    var relayedAddress: String?
    var lifetimeSeconds: UInt32?
    var relay: Relay?
    var largestDatagram: Int?
    /// RFC 5780 (when the server sends OTHER-ADDRESS): the NAT's behaviour between probe and server.
    var otherAddress: String?
    var natMapping: String?
    var natFiltering: String?
    var hairpinning: Bool?

    var passed: Bool { !checks.isEmpty && checks.allSatisfy(\.ok) }

    mutating func pass(_ name: String, _ detail: String) { checks.append(Check(name: name, ok: true, detail: detail)) }
    mutating func fail(_ name: String, _ detail: String) { checks.append(Check(name: name, ok: false, detail: detail)) }

    var text: String {
        var lines = ["tern probe \(url) (\(transport) to \(server))"]
        for c in checks { lines.append("  \(c.ok ? "ok  " : "FAIL") \(c.name): \(c.detail)") }
        lines.append(passed ? "all checks passed" : "\(checks.filter { !$0.ok }.count) check(s) failed")
        return lines.joined(separator: "\n")
    }
}

/// The checks themselves, in order; each adds to the report and returns what the next one needs.
struct ProbeRunner {
    let server: TransportAddress
    let transport: ClientTransport
    let timeout: Int
    let count: Int
    var tls: ProbeConnection.TLSOptions? = nil

    func openConnection() -> ProbeConnection? {
        try? ProbeConnection(transport, to: server, timeoutMilliseconds: timeout, tls: tls)
    }

    /// `turns:`/`stuns:`: the TLS handshake on its own, so that a certificate problem is named.
    func tlsHandshake(_ report: inout ProbeReport) -> Bool {
        do {
            let c = try ProbeConnection(transport, to: server, timeoutMilliseconds: timeout, tls: tls)
            let alpn = c.tls?.alpn.map { ", ALPN \($0)" } ?? ""
            report.pass("tls", "\(c.tls?.version ?? "TLS") handshake\(alpn)\(tls?.verify == false ? " (certificate not checked)" : ", certificate trusted")")
            return true
        } catch {
            report.fail("tls", "\(error)")
            return false
        }
    }

    static func ms(_ since: Date) -> Double { (Date().timeIntervalSince(since) * 10_000).rounded() / 10 }

    /// RFC 8489 section 6: a Binding request; the reflexive address and the best of three RTTs.
    func binding(_ report: inout ProbeReport) {
        guard let c = openConnection() else { return report.fail("binding", "cannot connect to \(server) over \(transport)") }
        let client = ProbeClient(c, username: "", password: "", timeoutMilliseconds: timeout)
        var rtts: [Double] = []
        var mapped: TransportAddress?
        var other: TransportAddress?
        for _ in 0..<3 {
            let start = Date()
            guard let m = client.exchange(Message(type: MessageType(method: .binding, class: .request), transactionID: .random(), attributes: [])),
                  m.isSuccess, let a = m.xorMappedAddress else { continue }
            rtts.append(Self.ms(start))
            mapped = a
            if case .otherAddress(let o)? = m.first(.otherAddress) { other = o }
        }
        guard let mapped, let best = rtts.min() else { return report.fail("binding", "no Binding response from \(server)") }
        report.mappedAddress = "\(mapped)"
        report.bindingRTTMs = best
        report.pass("binding", "mapped address \(mapped), RTT \(best) ms")
        if let other, transport == .udp { natBehavior(&report, other: other) }
    }

    /// RFC 5780 section 4: from one local port, Binding requests to the server's addresses tell the
    /// NAT's mapping behaviour (4.3: tests I-III), CHANGE-REQUEST tells its filtering (4.4), and a
    /// request to our own mapped address tells hairpinning (4.5).
    func natBehavior(_ report: inout ProbeReport, other: TransportAddress) {
        report.otherAddress = "\(other)"
        guard let socket = try? ClientSocket(unconnectedUDP: server.ip.family, timeoutMilliseconds: timeout) else {
            return report.fail("nat behavior", "cannot open a UDP socket")
        }
        let wait = min(timeout, 700)
        /// A Binding to `to` (with CHANGE-REQUEST flags); the response's XOR-MAPPED-ADDRESS, or nil.
        func binding(to: TransportAddress, changeIP: Bool = false, changePort: Bool = false) -> TransportAddress? {
            var attributes: [Attribute] = []
            if changeIP || changePort { attributes.append(.changeRequest(changeIP: changeIP, changePort: changePort)) }
            let request = Message(type: MessageType(method: .binding, class: .request), transactionID: .random(), attributes: attributes)
            for _ in 0..<3 {
                socket.send(request.encode(fingerprint: true), to: to)
                let deadline = Date().addingTimeInterval(Double(wait) / 1000)
                while deadline.timeIntervalSinceNow > 0,
                      let got = socket.receiveFrom(milliseconds: max(1, Int(deadline.timeIntervalSinceNow * 1000))) {
                    if let m = try? Message.decode(got.bytes), m.transactionID == request.transactionID, m.isSuccess { return m.xorMappedAddress }
                }
            }
            return nil
        }
        guard let mapped1 = binding(to: server) else { return report.fail("nat behavior", "no answer to test I from \(server)") }
        let local = socket.localAddress
        let hostAddresses = Posix.interfaceAddresses()
        let natted = !(local?.port == mapped1.port && hostAddresses.contains(mapped1.ip))
        // Mapping (section 4.3).
        var mapping = "endpoint-independent"
        if natted {
            let mapped2 = binding(to: TransportAddress(ip: other.ip, port: server.port))
            if mapped2 == nil { return report.fail("nat behavior", "no answer to test II from \(other.ip):\(server.port)") }
            if mapped2 != mapped1 {
                let mapped3 = binding(to: other)
                mapping = mapped3 == mapped2 ? "address-dependent" : "address-and-port-dependent"
            }
        }
        // Filtering (section 4.4).
        let filtering: String
        if binding(to: server, changeIP: true, changePort: true) != nil {
            filtering = "endpoint-independent"
        } else if binding(to: server, changePort: true) != nil {
            filtering = "address-dependent"
        } else {
            filtering = "address-and-port-dependent"
        }
        // Hairpinning (section 4.5): our own request comes back to us through the NAT.
        let probe = Message(type: MessageType(method: .binding, class: .request), transactionID: .random(), attributes: [])
        socket.send(probe.encode(fingerprint: true), to: mapped1)
        var hairpin = false
        let deadline = Date().addingTimeInterval(Double(wait) / 1000)
        while !hairpin, deadline.timeIntervalSinceNow > 0,
              let got = socket.receiveFrom(milliseconds: max(1, Int(deadline.timeIntervalSinceNow * 1000))) {
            hairpin = (try? Message.decode(got.bytes))?.transactionID == probe.transactionID
        }
        report.natMapping = natted ? mapping : "no NAT"
        report.natFiltering = filtering
        report.hairpinning = hairpin
        let kind = !natted ? "no NAT between the probe and the server"
            : mapping == "endpoint-independent" ? "a cone NAT (endpoint-independent mapping)" : "a symmetric NAT (\(mapping) mapping)"
        report.pass("nat behavior", "\(kind); filtering \(filtering); hairpinning \(hairpin ? "yes" : "no") (RFC 5780, other address \(other))")
    }

    /// The TURN checks, with two allocations of `username`.
    func turn(_ report: inout ProbeReport, username: String, password: String) {
        guard let ca = openConnection(), let cb = openConnection() else { return report.fail("connect", "cannot connect to \(server) over \(transport)") }
        let a = ProbeClient(ca, username: username, password: password, timeoutMilliseconds: timeout)
        let b = ProbeClient(cb, username: username, password: password, timeoutMilliseconds: timeout)
        // RFC 8489 section 9.2.3: the first Allocate is challenged.
        let udp = Attribute.requestedTransport(protocolNumber: 17)
        let first = a.exchange(Message(type: MessageType(method: .allocate, class: .request), transactionID: .random(), attributes: [udp]))
        guard let challenge = first, challenge.errorCode?.code == 401, case .realm(let realm)? = challenge.first(.realm) else {
            return report.fail("authentication", "no 401 challenge to an unauthenticated Allocate (got \(first.map { "\($0.type)" } ?? "nothing"))")
        }
        let allocated = a.request(.allocate, [udp])
        report.realm = realm
        report.algorithms = a.offeredAlgorithms.isEmpty ? ["MD5"] : a.offeredAlgorithms
        guard let m = allocated, m.isSuccess, let relayA = m.relayedAddress else {
            report.fail("authentication", "realm \"\(realm)\"; the authenticated Allocate was answered \(allocated?.errorCode.map { "\($0.code) \($0.reason)" } ?? "by nothing")")
            return
        }
        report.pass("authentication", "realm \"\(realm)\", algorithms offered: \((report.algorithms ?? []).joined(separator: ", "))")
        report.relayedAddress = "\(relayA)"
        report.lifetimeSeconds = m.lifetimeSeconds
        report.pass("allocate", "relayed address \(relayA), lifetime \(m.lifetimeSeconds.map { "\($0) s" } ?? "not given")")
        guard let mb = b.request(.allocate, [udp]), mb.isSuccess, let relayB = mb.relayedAddress else {
            return report.fail("second allocation", "a second Allocate failed")
        }
        // Each binds a channel to the other's relayed address (RFC 8656 section 11).
        let bindA = a.request(.channelBind, [.channelNumber(0x4000), .xorPeerAddress(relayB)])
        let bindB = b.request(.channelBind, [.channelNumber(0x4001), .xorPeerAddress(relayA)])
        guard bindA?.isSuccess == true, bindB?.isSuccess == true else {
            let why = [bindA, bindB].compactMap { $0?.errorCode.map { "\($0.code) \($0.reason)" } }.joined(separator: ", ")
            return report.fail("channels", "ChannelBind between the two allocations failed: \(why.isEmpty ? "no answer" : why)")
        }
        relay(&report, a, b)
        largestDatagram(&report, a, b)
        for (name, client) in [("refresh 0 (first)", a), ("refresh 0 (second)", b)] {
            let r = client.request(.refresh, [.lifetime(0)])
            if r?.isSuccess == true { report.pass(name, "allocation deleted") } else {
                report.fail(name, "Refresh with LIFETIME 0 answered \(r?.errorCode.map { "\($0.code) \($0.reason)" } ?? "by nothing")")
            }
        }
    }

    /// `count` datagrams from the first allocation to the second through the relay, each echoed back.
    func relay(_ report: inout ProbeReport, _ a: ProbeClient, _ b: ProbeClient) {
        var r = ProbeReport.Relay()
        var rtts: [Double] = []
        let wait = min(timeout, 1000)
        for seq in 0..<count {
            var payload = withUnsafeBytes(of: UInt32(seq).bigEndian) { Array($0) } + Array("tern-probe".utf8)
            payload += [UInt8](repeating: 0x5A, count: 100 - payload.count)
            let start = Date()
            guard a.sendChannelData(0x4000, payload) else { continue }
            r.sent += 1
            guard let got = b.receiveChannelData(0x4001, milliseconds: wait), got.prefix(4) == payload.prefix(4) else { continue }
            r.receivedByPeer += 1
            guard b.sendChannelData(0x4001, got) else { continue }
            if let back = a.receiveChannelData(0x4000, milliseconds: wait), back.prefix(4) == payload.prefix(4) {
                r.echoedBack += 1
                rtts.append(Self.ms(start))
            }
        }
        let lost = (r.sent - r.receivedByPeer) + (r.receivedByPeer - r.echoedBack)
        r.lossPercent = r.sent == 0 ? 100 : (Double(lost) * 1000 / Double(2 * r.sent)).rounded() / 10
        rtts.sort()
        func p(_ q: Double) -> Double { rtts.isEmpty ? 0 : rtts[min(rtts.count - 1, Int((Double(rtts.count) * q).rounded(.up)) - 1)] }
        if !rtts.isEmpty { r.rttMs = ["p50": p(0.5), "p90": p(0.9), "p99": p(0.99), "max": rtts.last ?? 0] }
        report.relay = r
        let detail = "\(r.sent) sent, \(r.receivedByPeer) relayed one way, \(r.echoedBack) back, loss \(r.lossPercent)%"
            + (rtts.isEmpty ? "" : ", RTT p50 \(p(0.5)) ms, p90 \(p(0.9)) ms, p99 \(p(0.99)) ms")
        if r.sent > 0 && r.echoedBack == r.sent { report.pass("relay", detail) } else { report.fail("relay", detail) }
    }

    /// Steps the payload size up; the largest that arrives whole, three times out of three.
    func largestDatagram(_ report: inout ProbeReport, _ a: ProbeClient, _ b: ProbeClient) {
        let sizes = [200, 500, 1000, 1200, 1280, 1400, 1472, 2000, 4000, 8000, 16_000, 32_000, 65_000]
        var largest = 0
        for size in sizes {
            var ok = 0
            for i in 0..<3 {
                let payload = [UInt8](repeating: UInt8(truncatingIfNeeded: size &+ i), count: size)
                guard a.sendChannelData(0x4000, payload) else { break }
                if let got = b.receiveChannelData(0x4001, milliseconds: min(timeout, 1000)), got.count == size { ok += 1 }
            }
            guard ok == 3 else { break }
            largest = size
        }
        report.largestDatagram = largest
        if largest > 0 { report.pass("largest datagram", "\(largest) bytes relay without loss") } else {
            report.fail("largest datagram", "even \(sizes[0])-byte datagrams were lost")
        }
    }
}
