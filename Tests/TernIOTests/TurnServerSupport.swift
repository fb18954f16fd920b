#if canImport(Glibc)
import Glibc
#endif
import Logging
import STUN
import TernCore
import Testing
@testable import TernIO

/// A TURN server on loopback with static users and a shared secret. Relay ports sit above Linux's
/// ephemeral range (32768-60999), so client sockets of parallel tests never take them.
func withTurnServer<R>(allow: [String] = ["127.0.0.0/8", "::1/128"], deny: [String] = [],
                       portRange: ClosedRange<UInt16> = 62000...62999,
                       relayIPv6: IPAddress? = .loopbackV6,
                       limits: LimitsConfig = LimitsConfig(),
                       tls: TLSContextHolder? = nil,
                       clock: ManualClock = testClock(),
                       settings: (inout TurnSettings) -> Void = { _ in },
                       _ body: (Server, TransportAddress) throws -> R) throws -> R {
    let (server, address) = try startTurnServer(allow: allow, deny: deny, portRange: portRange, relayIPv6: relayIPv6,
                                                limits: limits, tls: tls, clock: clock, settings: settings)
    defer { server.stop() }
    return try body(server, address)
}

/// A test server's clock: the real time at the start, then moved only by the test (`advance(by:)`,
/// then `Server.tick()`), so the workers' own once-a-second tick never moves time under a test.
func testClock() -> ManualClock { ManualClock(startingAt: SystemClock()) }

/// The users and secret of `startTurnServer`.
let testUsers = ["alice": "wonderland", "bob": "builder"]
let testSecrets = ["s3cret"]

func testTurnContext(users: [String: String] = testUsers, secrets: [String] = testSecrets,
                     allow: [String] = ["127.0.0.0/8", "::1/128"], deny: [String] = [],
                     settings: TurnSettings = TurnSettings(), shared: SharedTurnState = SharedTurnState(),
                     nonces: NonceIssuer = NonceIssuer(key: NonceIssuer.randomKey())) -> TurnContext {
    let realm = "tern.test"
    return TurnContext(
        realm: realm,
        credentials: CredentialStore(realm: realm, users: users, secrets: secrets),
        nonces: nonces,
        policy: PeerPolicy(allow: allow.compactMap(CIDR.init), deny: deny.compactMap(CIDR.init)),
        settings: settings, shared: shared)
}

/// Starts the server `withTurnServer` describes; the caller stops it. Returns its UDP IPv4 address.
func startTurnServer(allow: [String] = ["127.0.0.0/8", "::1/128"], deny: [String] = [],
                     portRange: ClosedRange<UInt16> = 62000...62999,
                     relayIPv6: IPAddress? = .loopbackV6,
                     limits: LimitsConfig = LimitsConfig(),
                     tls: TLSContextHolder? = nil,
                     io: IOConfig = IOConfig(),
                     clock: ManualClock = testClock(),
                     settings: (inout TurnSettings) -> Void = { _ in }) throws -> (Server, TransportAddress) {
    var turnSettings = TurnSettings()
    settings(&turnSettings)
    let context = testTurnContext(allow: allow, deny: deny, settings: turnSettings)
    var logger = Logger(label: "tern.test")
    logger.logLevel = .warning
    let server = Server(listeners: [ListenerConfig(transport: .udp, address: v4), ListenerConfig(transport: .udp, address: v6),
                                    ListenerConfig(transport: .tcp, address: v4)]
                            + (tls == nil ? [] : [ListenerConfig(transport: .tls, address: v4)]),
                        workerCount: 2, handlerConfiguration: HandlerConfiguration(software: "Tern test", turn: context),
                        relay: RelayConfig(ipv4: .loopbackV4, ipv6: relayIPv6, portRange: portRange),
                        limits: limits, tls: tls, io: io, clock: clock, logger: logger)
    let bound = try server.start()
    return (server, bound[0].address)
}

/// The TCP listener of a `withTurnServer` server (same port numbering as its UDP one is not implied).
func tcpAddress(_ server: Server) -> TransportAddress? {
    server.bound.first { $0.transport == .tcp }?.address
}

func relayedAddresses(_ m: Message) -> [TransportAddress] {
    m.attributes.compactMap { if case .xorRelayedAddress(let a) = $0 { return a } else { return nil } }
}
