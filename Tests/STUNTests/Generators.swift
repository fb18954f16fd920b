@testable import STUN

/// Random, valid attributes and messages for round-trip tests, from a seeded generator.
struct Gen {
    var rng: SplitMix64

    init(seed: UInt64) { rng = SplitMix64(seed: seed) }

    mutating func address() -> TransportAddress {
        let port = UInt16.random(in: 0 ... .max, using: &rng)
        if rng.bool() { return TransportAddress(ip: .v4(.random(in: 0 ... .max, using: &rng)), port: port) }
        return TransportAddress(ip: .v6(rng.next(), rng.next()), port: port)
    }

    /// Text mixing ASCII and multi-byte UTF-8, at most `maxBytes` bytes.
    mutating func text(maxBytes: Int) -> String {
        let pieces = ["a", "Z", "0", " ", ":", "é", "\u{30DE}", "\u{1F600}", "/", "="]
        var s = ""
        let target = rng.int(0 ... min(maxBytes, 40))
        while true {
            let p = pieces[rng.int(0 ... pieces.count - 1)]
            if s.utf8.count + p.utf8.count > target { break }
            s += p
        }
        return s
    }

    mutating func bytes(_ r: ClosedRange<Int>) -> [UInt8] { rng.bytes(rng.int(r)) }

    mutating func family() -> AddressFamily { rng.bool() ? .ipv4 : .ipv6 }

    mutating func errorCode() -> Int { rng.int(300 ... 699) }

    /// An attribute of unregistered type (so it decodes back as `.unknown`).
    mutating func unknownType() -> AttributeType {
        while true {
            let t = AttributeType(rawValue: .random(in: 0 ... .max, using: &rng))
            if !t.isKnown { return t }
        }
    }

    /// One of every case (except the integrity/fingerprint ones, which must be last), at random.
    mutating func attribute() -> Attribute {
        switch rng.int(0 ... 36) {
        case 0: return .mappedAddress(address())
        case 1: return .xorMappedAddress(address())
        case 2: return .xorPeerAddress(address())
        case 3: return .xorRelayedAddress(address())
        case 4: return .alternateServer(address())
        case 5: return .responseOrigin(address())
        case 6: return .otherAddress(address())
        case 7: return .username(text(maxBytes: TextLimit.username))
        case 8: return .realm(text(maxBytes: TextLimit.realm))
        case 9: return .nonce(text(maxBytes: TextLimit.nonce))
        case 10: return .software(text(maxBytes: TextLimit.software))
        case 11: return .alternateDomain(text(maxBytes: TextLimit.alternateDomain))
        case 12: return .userhash(rng.bytes(32))
        case 13: return .errorCode(code: errorCode(), reason: text(maxBytes: 763))
        case 14: return .unknownAttributes((0 ..< rng.int(0 ... 5)).map { _ in AttributeType(rawValue: .random(in: 0 ... .max, using: &rng)) })
        case 15:
            return .passwordAlgorithm(PasswordAlgorithm(rawValue: rng.bool() ? 1 : 2), params: bytes(0 ... 6))
        case 16:
            return .passwordAlgorithms((0 ..< rng.int(0 ... 3)).map { _ in
                PasswordAlgorithmEntry(PasswordAlgorithm(rawValue: .random(in: 0 ... 3, using: &rng)), params: bytes(0 ... 5))
            })
        case 17: return .channelNumber(.random(in: 0x4000 ... 0x4FFF, using: &rng))
        case 18: return .lifetime(.random(in: 0 ... .max, using: &rng))
        case 19: return .data(bytes(0 ... 100))
        case 20: return .requestedAddressFamily(family())
        case 21: return .additionalAddressFamily(family())
        case 22: return .addressErrorCode(family: family(), code: errorCode(), reason: text(maxBytes: 763))
        case 23: return .evenPort(reserve: rng.bool())
        case 24: return .requestedTransport(protocolNumber: rng.bool() ? 17 : 6)
        case 25: return .dontFragment
        case 26: return .reservationToken(rng.bytes(8))
        case 27: return .icmp(type: .random(in: 0 ... 255, using: &rng), code: .random(in: 0 ... 255, using: &rng),
                              data: .random(in: 0 ... .max, using: &rng))
        case 28: return .connectionID(.random(in: 0 ... .max, using: &rng))
        case 29: return .priority(.random(in: 0 ... .max, using: &rng))
        case 30: return .useCandidate
        case 31: return .iceControlled(rng.next())
        case 32: return .iceControlling(rng.next())
        case 33: return .changeRequest(changeIP: rng.bool(), changePort: rng.bool())
        default: return .unknown(type: unknownType(), value: bytes(0 ... 13))
        }
    }

    /// A message of 0...12 attributes, optionally ending with raw integrity/fingerprint attributes.
    mutating func message() -> Message {
        let type = MessageType(method: Method(rawValue: .random(in: 0 ... 0xFFF, using: &rng)),
                               class: MessageClass(rawValue: .random(in: 0 ... 3, using: &rng)) ?? .request)
        let tid = TransactionID(high: .random(in: 0 ... .max, using: &rng), low: rng.next())
        var attrs = (0 ..< rng.int(0 ... 12)).map { _ in attribute() }
        if rng.int(0 ... 3) == 0 { attrs.append(.messageIntegrity(rng.bytes(20))) }
        if rng.int(0 ... 3) == 0 { attrs.append(.messageIntegritySHA256(rng.bytes(4 * rng.int(4 ... 8)))) }
        return Message(type: type, transactionID: tid, attributes: attrs)
    }
}
