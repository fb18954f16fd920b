import Benchmark
import STUN
import TernCore

/// The hot path of the request handler, with malloc counting (ordo-one/benchmark): a relayed
/// ChannelData message (client to peer) and a Binding request must make no heap allocation.
/// Sockets are left out (a RelayIO that sends nowhere): the load generator measures those.
final class NullRelayIO: RelayIO {
    var next: Int32 = 1000
    func openRelay(family: AddressFamily, near: IPAddress, evenPort: Bool, reserveNext: Bool,
                   dontFragment: Bool) -> Result<OpenedRelay, RelayOpenError> {
        next += 1
        return .success(OpenedRelay(handle: RelayHandle(next), bound: TransportAddress(ip: .loopbackV4, port: UInt16(40000 + next))))
    }
    func adoptReserved(_ reserved: OpenedRelay.Reserved, dontFragment: Bool) -> OpenedRelay {
        OpenedRelay(handle: reserved.handle, bound: reserved.bound)
    }
    func closeRelay(_ handle: RelayHandle) {}
    func discardReserved(_ reserved: OpenedRelay.Reserved) {}
    func openTCPRelay(family: AddressFamily, near: IPAddress) -> Result<OpenedRelay, RelayOpenError> { .failure(.familyUnavailable) }
    func connectPeer(from relay: RelayHandle, to peer: TransportAddress, connectionID: UInt32) {}
    func sendToPeer(from handle: RelayHandle, to peer: TransportAddress, _ bytes: UnsafeRawBufferPointer) -> Bool { true }
}

/// A handler with one allocation and channel 0x4000 bound to a peer, as a UDP client made them.
struct Fixture {
    let handler: RequestHandler
    let io = NullRelayIO()
    let context = PacketContext(client: TransportAddress("127.0.0.1:50000")!, local: TransportAddress("127.0.0.1:3478")!,
                                transport: .udp, socket: 0)
    let response = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 16)

    init() {
        let realm = "bench"
        let turn = TurnContext(realm: realm, credentials: CredentialStore(realm: realm, users: ["bench": "bench"], secrets: []),
                               nonces: NonceIssuer(key: NonceIssuer.randomKey()),
                               policy: PeerPolicy(allow: [CIDR("127.0.0.0/8")!], deny: []), settings: TurnSettings())
        handler = RequestHandler(configuration: HandlerConfiguration(turn: turn),
                                 clock: ManualClock(monotonic: 1000, unix: 1_800_000_000))
        handler.relayIO = io
        let challenge = send(Message(type: MessageType(method: .allocate, class: .request),
                                     attributes: [.requestedTransport(protocolNumber: 17)]).encode())
        var nonce = ""
        for a in challenge?.attributes ?? [] { if case .nonce(let n) = a { nonce = n } }
        let key = LongTermKey.md5(username: "bench", realm: realm, password: "bench")
        let auth: [Attribute] = [.username("bench"), .realm(realm), .nonce(nonce)]
        let allocated = send(Message(type: MessageType(method: .allocate, class: .request),
                                     attributes: [.requestedTransport(protocolNumber: 17)] + auth).encode(integrityKey: key))
        precondition(allocated?.type.messageClass == .successResponse, "Allocate failed")
        let bound = send(Message(type: MessageType(method: .channelBind, class: .request),
                                 attributes: [.channelNumber(0x4000), .xorPeerAddress(TransportAddress("127.0.0.1:9000")!)] + auth)
            .encode(integrityKey: key))
        precondition(bound?.type.messageClass == .successResponse, "ChannelBind failed")
    }

    func send(_ bytes: [UInt8]) -> Message? {
        let result = bytes.withUnsafeBytes { handler.handle($0, context: context, response: response) }
        guard case .reply(let n) = result else { return nil }
        return try? Message.decode(Array(response[0..<n]))
    }
}

let benchmarks: @Sendable () -> Void = {
    let metrics: [BenchmarkMetric] = [.mallocCountTotal, .wallClock, .instructions]
    Benchmark.defaultConfiguration = .init(metrics: metrics, scalingFactor: .kilo, maxDuration: .seconds(3), maxIterations: 50)

    Benchmark("ChannelData relayed, client to peer (100 B)") { benchmark in
        let f = Fixture()
        var packet = [UInt8](repeating: 0xA5, count: 104)
        packet[0] = 0x40; packet[1] = 0x00; packet[2] = 0x00; packet[3] = 100
        benchmark.startMeasurement()
        packet.withUnsafeBytes { p in
            for _ in benchmark.scaledIterations {
                blackHole(f.handler.handle(p, context: f.context, response: f.response))
            }
        }
    }

    Benchmark("Binding request") { benchmark in
        let f = Fixture()
        let request = Message(type: MessageType(method: .binding, class: .request)).encode(fingerprint: true)
        benchmark.startMeasurement()
        request.withUnsafeBytes { p in
            for _ in benchmark.scaledIterations {
                blackHole(f.handler.handle(p, context: f.context, response: f.response))
            }
        }
    }
}
