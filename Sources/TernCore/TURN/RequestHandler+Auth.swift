import STUN

/// The credentials a request was authenticated with, reused to protect its response.
struct Authenticated {
    var username: String
    var key: [UInt8]
    var algorithm: PasswordAlgorithm
    /// The request carried MESSAGE-INTEGRITY-SHA256: the response does too (RFC 8489 section 9.2.4).
    var sha256: Bool
}

enum AuthOutcome {
    case ok(Authenticated)
    case reply(HandlerResult)
}

extension RequestHandler {
    /// RFC 8489 section 9.2.4 (long-term credentials, receiving a request), with RFC 8656 section 7.2's
    /// rule that requests on an allocation must use the credentials that created it (441).
    ///
    /// The user is looked up on every request, on an allocation too (as coturn does): a user removed
    /// by a reload, a TURN REST username past its expiry, or a key that no longer comes from the
    /// configured password or secrets gets a 401 challenge, so its Refresh, CreatePermission and
    /// ChannelBind fail and the allocation runs out. Users still valid go on unchanged.
    func authenticate(_ reader: MessageReader, turn: TurnContext, context: PacketContext,
                      allocation: Allocation?, response: UnsafeMutableRawBufferPointer) -> AuthOutcome {
        let hasMI = reader.hasMessageIntegrity
        let hasMI256 = reader.hasMessageIntegritySHA256
        guard hasMI || hasMI256 else {
            turnCounters.auth.challenged &+= 1
            return .reply(challenge(reader, turn: turn, context: context, code: 401, response: response))
        }
        guard let nonce = reader.value(of: .nonce), reader.contains(.realm),
              reader.contains(.username) || reader.contains(.userhash) else {
            turnCounters.auth.missingAttributes &+= 1
            return .reply(errorResponse(reader, code: 400, reason: "Missing USERNAME, REALM or NONCE", response: response))
        }
        // Section 9.2.4 step 3: a NONCE that is not ours, or no longer valid, gets 438 and a fresh one.
        if turn.nonces.check(nonce, for: context.client.ip, now: unixNow) != .valid {
            turnCounters.auth.staleNonce &+= 1
            return .reply(challenge(reader, turn: turn, context: context, code: 438, response: response))
        }
        // Section 9.2.5: bid-down protection. PASSWORD-ALGORITHM needs PASSWORD-ALGORITHMS equal to
        // what we offered; a PASSWORD-ALGORITHMS that differs from the offer is refused as well.
        var algorithm = PasswordAlgorithm.md5
        let offered = reader.value(of: .passwordAlgorithms)
        if let offered, !Self.sameBytes(offered, TurnContext.offeredAlgorithms) {
            turnCounters.auth.badPasswordAlgorithm &+= 1
            return .reply(errorResponse(reader, code: 400, reason: "PASSWORD-ALGORITHMS does not match", response: response))
        }
        if reader.contains(.passwordAlgorithm) {
            guard offered != nil, let chosen = try? reader.passwordAlgorithm(),
                  chosen == .md5 || chosen == .sha256 else {
                turnCounters.auth.badPasswordAlgorithm &+= 1
                return .reply(errorResponse(reader, code: 400, reason: "Bad PASSWORD-ALGORITHM", response: response))
            }
            algorithm = chosen
        }
        // The realm must be ours.
        guard let realmValue = reader.value(of: .realm), Self.sameBytes(realmValue, turn.realmBytes) else {
            turnCounters.auth.unknownUser &+= 1
            return .reply(challenge(reader, turn: turn, context: context, code: 401, response: response))
        }
        let username: String
        if let hash = reader.value(of: .userhash) {
            guard let name = turn.credentials.username(forUserhash: hash) else {
                turnCounters.auth.unknownUser &+= 1
                return .reply(challenge(reader, turn: turn, context: context, code: 401, response: response))
            }
            username = name
        } else {
            guard let name = try? reader.string(.username) else {
                turnCounters.auth.missingAttributes &+= 1
                return .reply(errorResponse(reader, code: 400, reason: "Bad USERNAME", response: response))
            }
            username = name
        }
        var candidates: [[UInt8]]
        if let allocation {
            guard allocation.username == username, allocation.algorithm == algorithm else {
                turnCounters.auth.wrongCredentials &+= 1
                return .reply(errorResponse(reader, code: 441, reason: "Wrong Credentials", response: response))
            }
            switch turn.credentials.lookup(username: username, algorithm: algorithm, now: unixNow) {
            case .keys(let keys) where keys.contains(allocation.key):
                candidates = [allocation.key]
            case .expired:
                turnCounters.auth.expiredCredentials &+= 1
                return .reply(challenge(reader, turn: turn, context: context, code: 401, response: response))
            case .keys, .unknownUser:
                turnCounters.auth.revoked &+= 1
                return .reply(challenge(reader, turn: turn, context: context, code: 401, response: response))
            }
        } else {
            switch turn.credentials.lookup(username: username, algorithm: algorithm, now: unixNow) {
            case .keys(let keys):
                candidates = keys
            case .unknownUser:
                turnCounters.auth.unknownUser &+= 1
                return .reply(challenge(reader, turn: turn, context: context, code: 401, response: response))
            case .expired:
                turnCounters.auth.expiredCredentials &+= 1
                return .reply(challenge(reader, turn: turn, context: context, code: 401, response: response))
            }
        }
        for key in candidates {
            let ok = hasMI256 ? reader.checkMessageIntegritySHA256(key: key) : reader.checkMessageIntegrity(key: key)
            if ok {
                return .ok(Authenticated(username: username, key: key, algorithm: algorithm, sha256: hasMI256))
            }
        }
        turnCounters.auth.badIntegrity &+= 1
        return .reply(challenge(reader, turn: turn, context: context, code: 401, response: response))
    }

    static func sameBytes(_ a: UnsafeRawBufferPointer, _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var i = 0
        while i < a.count {
            if a[i] != b[i] { return false }
            i += 1
        }
        return true
    }

    /// 401 or 438 with REALM, a fresh NONCE and PASSWORD-ALGORITHMS (RFC 8489 section 9.2.4), no integrity.
    func challenge(_ reader: MessageReader, turn: TurnContext, context: PacketContext, code: Int,
                   response: UnsafeMutableRawBufferPointer) -> HandlerResult {
        turnCounters.errors[code, default: 0] &+= 1
        do {
            var w = try MessageWriter(buffer: response,
                                      type: MessageType(method: reader.type.method, class: .errorResponse),
                                      transactionID: reader.transactionID)
            try w.appendErrorCode(code)
            try w.appendString(.realm, turn.realm)
            try w.appendString(.nonce, turn.nonces.issue(for: context.client.ip, now: unixNow))
            try w.append(TurnContext.offeredAlgorithmsAttribute)
            try appendTrailer(&w, request: reader)
            return .reply(w.count)
        } catch {
            stats.encodeFailures &+= 1
            return .noReply
        }
    }

    /// A response to an authenticated request: `build` appends the method's attributes, then
    /// SOFTWARE, MESSAGE-INTEGRITY(-SHA256) with the request's key, and FINGERPRINT if asked for.
    func authenticatedResponse(_ reader: MessageReader, auth: Authenticated, errorCode: Int? = nil,
                               reason: StaticString? = nil, response: UnsafeMutableRawBufferPointer,
                               _ build: (inout MessageWriter) throws(STUNEncodeError) -> Void = { _ in }) -> HandlerResult {
        if let errorCode { turnCounters.errors[errorCode, default: 0] &+= 1 }
        do {
            var w = try MessageWriter(buffer: response,
                                      type: MessageType(method: reader.type.method,
                                                        class: errorCode == nil ? .successResponse : .errorResponse),
                                      transactionID: reader.transactionID)
            if let errorCode {
                if let reason { try w.appendErrorCode(code: errorCode, reason: reason) } else { try w.appendErrorCode(errorCode) }
            }
            try build(&w)
            if let software = configuration.software { try w.appendSoftware(software) }
            if auth.sha256 {
                try w.appendMessageIntegritySHA256(key: auth.key)
            } else {
                try w.appendMessageIntegrity(key: auth.key)
            }
            if reader.hasFingerprint { try w.appendFingerprint() }
            return .reply(w.count)
        } catch {
            stats.encodeFailures &+= 1
            return .noReply
        }
    }
}
