import STUN

extension RequestHandler {
    /// RFC 5780 section 6.1 (server): a Binding request on one of the four NAT-behaviour addresses.
    /// The response carries XOR-MAPPED-ADDRESS, RESPONSE-ORIGIN (section 7.3: where it is sent from)
    /// and OTHER-ADDRESS (section 7.4: the address differing in IP and port). CHANGE-REQUEST (section
    /// 7.2) moves the source to the other IP and/or port; RESPONSE-PORT (section 7.5) sends it to
    /// another port of the client. Such redirected answers can be aimed at a victim's other port, so
    /// they draw on the lower, unauthenticated per-source budget as well (section 9 asks servers to
    /// limit them).
    func handleNatBehaviorBinding(_ reader: MessageReader, nat: NatBehaviorAddresses, context: PacketContext,
                                  response: UnsafeMutableRawBufferPointer) -> HandlerResult {
        var changeIP = false, changePort = false
        if let v = reader.value(of: .changeRequest) {
            guard v.count == 4 else { return throttleUnauthenticated(errorResponse(reader, code: 400, reason: "Bad CHANGE-REQUEST", response: response), context: context) }
            changeIP = v[3] & 0x04 != 0
            changePort = v[3] & 0x02 != 0
        }
        var destination = context.client
        if let v = reader.value(of: Self.responsePort) {
            guard v.count == 4 else { return throttleUnauthenticated(errorResponse(reader, code: 400, reason: "Bad RESPONSE-PORT", response: response), context: context) }
            destination.port = UInt16(v[0]) << 8 | UInt16(v[1])
            guard destination.port != 0 else {
                return throttleUnauthenticated(errorResponse(reader, code: 400, reason: "Bad RESPONSE-PORT", response: response), context: context)
            }
        }
        let source = nat.source(for: context.local, changeIP: changeIP, changePort: changePort)
        let redirected = source != context.local || destination != context.client
        if redirected, !configuration.throttle.admitUnauthenticated(context.client.ip, now: now) {
            turnCounters.droppedUnauthenticatedRate &+= 1
            return .noReply
        }
        do {
            var w = try MessageWriter(buffer: response, type: MessageType(method: .binding, class: .successResponse),
                                      transactionID: reader.transactionID)
            try w.appendXORAddress(.xorMappedAddress, context.client)
            try w.appendAddress(.responseOrigin, source)
            try w.appendAddress(.otherAddress, nat.otherAddress(for: context.local))
            try appendTrailer(&w, request: reader)
            stats.bindingSuccesses &+= 1
            return redirected ? .replyFrom(w.count, source: source, destination: destination) : .reply(w.count)
        } catch {
            stats.encodeFailures &+= 1
            return .noReply
        }
    }
}
