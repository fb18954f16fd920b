import STUN

/// Settings the handler needs, derived once from the config (no per-packet lookups).
public struct HandlerConfiguration: Sendable {
    /// SOFTWARE attribute value (RFC 8489 section 14.14); nil sends none.
    public var software: [UInt8]?
    /// TURN (RFC 8656); nil serves STUN Binding only.
    public var turn: TurnContext?
    /// Per-source budgets for every answer that is not authenticated, shared by all workers.
    public var throttle: ReplyThrottle
    /// RFC 5780 NAT behaviour discovery (nil: off, CHANGE-REQUEST gets 420).
    public var natBehavior: NatBehaviorAddresses?

    /// `throttle` defaults to one with the rates of `turn`'s limits (or the config's defaults).
    public init(software: String? = nil, turn: TurnContext? = nil, throttle: ReplyThrottle? = nil,
                natBehavior: NatBehaviorAddresses? = nil) {
        self.software = software.map { Array($0.utf8.prefix(763)) }
        self.turn = turn
        self.throttle = throttle ?? ReplyThrottle(limits: turn?.settings.limits ?? LimitsConfig())
        self.natBehavior = natBehavior
    }

    /// From the config (`software`, `limits`, `natBehavior`) and the TURN context built from it (nil: TURN off).
    public init(config: TernConfig, turn: TurnContext?) {
        self.init(software: config.software, turn: turn, throttle: ReplyThrottle(limits: config.limits),
                  natBehavior: config.natBehaviorAddresses)
    }
}

/// Turns one received datagram (or one framed stream message) into at most one reply, written into a
/// caller-provided buffer. No sockets, no clock reads per packet, no allocation on the Binding path: the event loop
/// owns one handler per worker and calls it on that worker's queue only.
///
/// RFC 8489 section 6.3: a message that fails the basic checks is discarded; section 6.3.1: requests
/// with unknown comprehension-required attributes get 420; section 12 (basic server behaviour): the success response
/// carries XOR-MAPPED-ADDRESS with the request's source transport address.
public final class RequestHandler {
    public let configuration: HandlerConfiguration
    public internal(set) var stats = HandlerStats()
    /// Requests answered, by method and result (success or error code).
    public internal(set) var requests = RequestCounters()

    // TURN state, owned by this handler's worker.
    /// Credentials, policy and settings for new requests; `reconfigure(turn:)` swaps it on reload.
    public private(set) var turn: TurnContext?
    /// Set while the server drains (SIGTERM): Allocate is refused, everything else goes on.
    public var draining: DrainConfig?
    /// The event loop side: relay sockets. Set by the worker before any packet arrives. Unowned, not
    /// weak: the worker owns this handler, and a weak reference would give the worker a side table,
    /// which sends every retain and release of it down the runtime's slow path (about 1.5% of the CPU
    /// per relayed packet in the two-way profile).
    public unowned var relayIO: RelayIO?
    /// The kernel fast path (`io.offload`), told of every change to what an allocation relays.
    public var fastPath: FastPath?
    public internal(set) var allocations = AllocationTable()
    public internal(set) var turnCounters = TurnCounters()
    /// Traffic of this worker's ended allocations, by user (live ones are read from the allocations).
    public internal(set) var endedByUser: [String: AllocationCounters] = [:]
    var indicationIDs = IndicationIDs()
    /// The worker this handler belongs to (RFC 6062 connection ids name their owner).
    public var workerIndex = 0
    /// Where `tick()` reads the time: the system's clocks in the server, a `ManualClock` in tests.
    public let clock: CoarseClock
    /// The clock's readings at the last `tick()` (once a second): reading a clock per packet would
    /// cost more than the whole lookup. `now` is monotonic seconds (lifetimes), `unixNow`
    /// wall-clock seconds (nonces and TURN REST API usernames).
    public private(set) var now: UInt64
    public private(set) var unixNow: UInt64

    public init(configuration: HandlerConfiguration, clock: CoarseClock) {
        self.configuration = configuration
        self.turn = configuration.turn
        self.clock = clock
        self.now = clock.monotonicSeconds
        self.unixNow = clock.unixSeconds
    }

    /// Takes the clock's readings (the start of every `tick()`).
    func readClock() {
        now = clock.monotonicSeconds
        unixNow = clock.unixSeconds
    }

    /// Reload: new requests use `newTurn` (users, secrets, policy, limits); live allocations keep
    /// relaying. The caller keeps `shared` and the nonce key from the old context so that quotas,
    /// reservations and outstanding nonces stay valid.
    public func reconfigure(turn newTurn: TurnContext?) {
        turn = newTurn
    }

    /// Handles one packet. `response` must be at least 548 bytes (RFC 8489 section 6.2.1's floor for
    /// an unfragmented response path); the reply is written at its start.
    public func handle(_ packet: UnsafeRawBufferPointer, context: PacketContext,
                       response: UnsafeMutableRawBufferPointer) -> HandlerResult {
        guard let first = packet.first else {
            stats.malformed &+= 1
            return .malformed
        }
        // RFC 8656 section 12: the first two bits tell STUN (0b00) from ChannelData (0b01).
        if first & 0xC0 == 0x40 {
            return handleChannelData(packet, context: context)
        }
        let reader: MessageReader
        do {
            reader = try MessageReader(packet)
        } catch {
            stats.malformed &+= 1
            return .malformed
        }
        // RFC 8489 section 14.7: a message whose FINGERPRINT does not match is not STUN: drop it.
        if reader.hasFingerprint && !reader.fingerprintIsValid() {
            stats.badFingerprint &+= 1
            return .noReply
        }
        let type = reader.type
        guard type.messageClass == .request else {
            if type.messageClass == .indication, type.method == .send, turn != nil {
                return handleSendIndication(reader, context: context)
            }
            // Indications (Binding indications are keep-alives, RFC 8489 section 6.3.2) and responses
            // (section 6.3.3: a server has no transactions of its own) need no answer.
            stats.ignored &+= 1
            return .noReply
        }
        let result = handleRequest(reader, context: context, response: response)
        if case .reply(let n) = result { requests.record(method: type.method, response: response, count: n) }
        return result
    }

    @inline(__always)
    private func handleRequest(_ reader: MessageReader, context: PacketContext,
                               response: UnsafeMutableRawBufferPointer) -> HandlerResult {
        switch reader.type.method {
        case .binding:
            stats.bindingRequests &+= 1
            if let result = rejectUnknownAttributes(reader, response: response) {
                return throttleUnauthenticated(result, context: context)
            }
            // A Binding request is what STUN is for: answered on its own, higher per-source budget.
            guard configuration.throttle.admitBinding(context.client.ip, now: now) else {
                stats.droppedBindingRate &+= 1
                return .noReply
            }
            if let nat = configuration.natBehavior, context.transport == .udp, nat.contains(context.local) {
                return handleNatBehaviorBinding(reader, nat: nat, context: context, response: response)
            }
            return handleBinding(reader, context: context, response: response)
        case .allocate, .refresh, .createPermission, .channelBind, .connect, .connectionBind:
            if let turn {
                if let result = rejectUnknownAttributes(reader, response: response) {
                    return throttleUnauthenticated(result, context: context)
                }
                return handleTurnRequest(reader, turn: turn, context: context, response: response)
            }
            stats.unsupportedMethodErrors &+= 1
            return throttleUnauthenticated(errorResponse(reader, code: 400, reason: "TURN is not enabled", response: response),
                                           context: context)
        default:
            // RFC 8489 section 6.3.1: the server answers what it cannot process with an error response.
            stats.unsupportedMethodErrors &+= 1
            return throttleUnauthenticated(errorResponse(reader, code: 400, reason: "Unsupported method", response: response),
                                           context: context)
        }
    }

    /// An answer to a request that did not authenticate (a 401/438 challenge, or a 400/420/441 sent
    /// before or instead of a credential check, whatever the method) goes out only while its source
    /// IP is within `limits.unauthenticatedRatePerIP` per second (`ReplyThrottle`). Such requests
    /// cost the sender nothing to spoof (RFC 8656 section 21.1 on reflection), so past the rate they
    /// are dropped without an answer and counted; a real client retransmits and gets its answer in
    /// the next second.
    func throttleUnauthenticated(_ result: HandlerResult, context: PacketContext) -> HandlerResult {
        guard case .reply = result else { return result }
        if configuration.throttle.admitUnauthenticated(context.client.ip, now: now) { return result }
        turnCounters.droppedUnauthenticatedRate &+= 1
        return .noReply
    }

    /// Counts a datagram dropped by the event loop before it reached `handle` (e.g. not DTLS).
    public func noteMalformed() { stats.malformed &+= 1 }

    /// Comprehension-required attributes (RFC 8489 section 14, range 0x0000-0x7FFF) this server
    /// understands in a request: every type the codec knows (`AttributeType.isKnown`, the one list)
    /// but RFC 5780's CHANGE-REQUEST, which this server does not act on, so a client that asks for
    /// it learns so from a 420. Anything else in that range earns a 420 too.
    @inline(__always)
    static func understands(_ type: AttributeType) -> Bool {
        type.isKnown && type != .changeRequest
    }

    /// RESPONSE-PORT (RFC 5780 section 7.5), comprehension-required; the codec has no typed case.
    static let responsePort = AttributeType(rawValue: 0x0027)

    /// With RFC 5780 on: CHANGE-REQUEST and RESPONSE-PORT are understood too.
    @inline(__always)
    static func understandsWithNatBehavior(_ type: AttributeType) -> Bool {
        type.isKnown || type == responsePort
    }

    private func handleBinding(_ reader: MessageReader, context: PacketContext,
                               response: UnsafeMutableRawBufferPointer) -> HandlerResult {
        do {
            var w = try MessageWriter(buffer: response,
                                      type: MessageType(method: .binding, class: .successResponse),
                                      transactionID: reader.transactionID)
            try w.appendXORAddress(.xorMappedAddress, context.client)
            try appendTrailer(&w, request: reader)
            stats.bindingSuccesses &+= 1
            return .reply(w.count)
        } catch {
            stats.encodeFailures &+= 1
            return .noReply
        }
    }

    /// RFC 8489 section 6.3.1.1: list the unknown comprehension-required attributes in a 420 response.
    /// The codec writes the list straight from the request, allocation-free, at most 64 distinct
    /// types: a hostile request full of distinct unknown types can make this neither allocate, nor
    /// scan quadratically, nor answer with more than a few hundred bytes (no amplification).
    func rejectUnknownAttributes(_ reader: MessageReader,
                                 response: UnsafeMutableRawBufferPointer) -> HandlerResult? {
        let known: (AttributeType) -> Bool = configuration.natBehavior == nil ? Self.understands : Self.understandsWithNatBehavior
        guard reader.firstUnknownComprehensionRequired(isKnown: known) != nil else { return nil }
        stats.unknownAttributeErrors &+= 1
        do {
            var w = try MessageWriter(buffer: response,
                                      type: MessageType(method: reader.type.method, class: .errorResponse),
                                      transactionID: reader.transactionID)
            try w.appendErrorCode(code: 420, reason: "Unknown Attribute")
            try w.appendUnknownAttributes(from: reader, limit: 64, isKnown: known)
            try appendTrailer(&w, request: reader)
            return .reply(w.count)
        } catch {
            stats.encodeFailures &+= 1
            return .noReply
        }
    }

    func errorResponse(_ reader: MessageReader, code: Int, reason: StaticString,
                               response: UnsafeMutableRawBufferPointer) -> HandlerResult {
        do {
            var w = try MessageWriter(buffer: response,
                                      type: MessageType(method: reader.type.method, class: .errorResponse),
                                      transactionID: reader.transactionID)
            try w.appendErrorCode(code: code, reason: reason)
            try appendTrailer(&w, request: reader)
            return .reply(w.count)
        } catch {
            stats.encodeFailures &+= 1
            return .noReply
        }
    }

    /// The end of a reply to a request that was not authenticated (Binding, challenges, errors
    /// before the credentials are checked): FINGERPRINT when the request had one (RFC 8489 section 7:
    /// a server answers in kind). No SOFTWARE here, though configured: it is optional (RFC 8489
    /// section 14.14, diagnostics only) and up to 763 bytes, and a spoofed 20-byte request must not
    /// earn a reply forty times its size. Authenticated responses carry it.
    @inline(__always)
    func appendTrailer(_ w: inout MessageWriter, request: MessageReader) throws(STUNEncodeError) {
        if request.hasFingerprint {
            try w.appendFingerprint()
        }
    }
}
