import Testing
@testable import STUN

@Suite("MessageWriter")
struct WriterTests {
    /// Writes a full response with every fast path, into a buffer of `size` bytes inside a larger
    /// canary-filled region. Returns the bytes written, or the error.
    func write(size: Int, canary: inout [UInt8]) -> Result<[UInt8], STUNEncodeError> {
        let tid = TransactionID(high: 1, low: 2)
        let key: [UInt8] = Array("key".utf8)
        return canary.withUnsafeMutableBytes { whole -> Result<[UInt8], STUNEncodeError> in
            let b = UnsafeMutableRawBufferPointer(rebasing: whole[8 ..< 8 + size])
            return Result { () throws(STUNEncodeError) -> [UInt8] in
                var w = try MessageWriter(buffer: b, type: .bindingSuccess, transactionID: tid)
                try w.appendXORAddress(.xorMappedAddress, TransportAddress("[2001:db8::1]:3478")!)
                try w.appendAddress(.mappedAddress, TransportAddress("192.0.2.1:1")!)
                try w.appendUInt32(type: .lifetime, 600)
                try w.appendErrorCode(code: 438, reason: "Stale Nonce")
                try w.appendString(.realm, "example.org")
                try w.appendSoftware(Array("tern".utf8))
                try w.appendUnknownAttributes([AttributeType(rawValue: 2)])
                try w.append(.evenPort(reserve: true))
                try w.appendMessageIntegrity(key: key)
                try w.appendMessageIntegritySHA256(key: key)
                try w.appendFingerprint()
                return Array(w.bytes)
            }
        }
    }

    @Test func tooSmallBuffersNeverOverflow() throws {
        var big = [UInt8](repeating: 0xAA, count: 400)
        let full = try write(size: 380, canary: &big).get()
        let n = full.count
        // The same message through Message.encode.
        let expected = Message(type: .bindingSuccess, transactionID: TransactionID(high: 1, low: 2), attributes: [
            .xorMappedAddress(TransportAddress("[2001:db8::1]:3478")!), .mappedAddress(TransportAddress("192.0.2.1:1")!),
            .lifetime(600), .errorCode(code: 438, reason: "Stale Nonce"), .realm("example.org"), .software("tern"),
            .unknownAttributes([AttributeType(rawValue: 2)]), .evenPort(reserve: true),
        ]).encode(integrityKey: Array("key".utf8), integritySHA256Key: Array("key".utf8), fingerprint: true)
        #expect(full == expected)

        for size in 0 ... n + 8 {
            var region = [UInt8](repeating: 0xAA, count: size + 16)
            let r = write(size: size, canary: &region)
            // Nothing outside [8, 8 + size) was touched.
            #expect(region.prefix(8).allSatisfy { $0 == 0xAA } && region.suffix(8).allSatisfy { $0 == 0xAA }, "size \(size)")
            switch r {
            case .success(let bytes):
                #expect(size >= n)
                #expect(bytes == full)
            case .failure(let e):
                #expect(size < n)
                #expect(e == .bufferTooSmall)
            }
        }
    }

    @Test func failedAppendLeavesMessageIntact() throws {
        var buf = [UInt8](repeating: 0, count: 40)
        try buf.withUnsafeMutableBytes { b throws in
            var w = try MessageWriter(buffer: b, type: .bindingRequest, transactionID: .random())
            try w.appendUInt32(type: .priority, 1)
            let before = Array(w.bytes)
            #expect(throws: STUNEncodeError.bufferTooSmall) { try w.appendMessageIntegrity(key: [1]) }
            #expect(Array(w.bytes) == before)
            #expect(w.count == 28)
            try w.appendFingerprint()
            #expect(w.count == 36)
            _ = try Message.decode(Array(w.bytes))
        }
    }

    @Test func headerAndValidation() throws {
        var buf = [UInt8](repeating: 0xFF, count: 64)
        try buf.withUnsafeMutableBytes { b throws in
            var w = try MessageWriter(buffer: b, type: MessageType(method: .allocate, class: .errorResponse), transactionID: TransactionID(high: 0, low: 0))
            #expect(w.count == 20)
            #expect(Array(w.bytes) == [0x01, 0x13, 0, 0, 0x21, 0x12, 0xA4, 0x42] + [UInt8](repeating: 0, count: 12))
            #expect(throws: STUNEncodeError.invalidValue(.errorCode)) { try w.appendErrorCode(code: 99, reason: "") }
            #expect(throws: STUNEncodeError.valueTooLong(.realm)) { try w.appendString(.realm, String(repeating: "r", count: 764)) }
            try w.appendErrorCode(code: 500, reason: "x" as StaticString)
            // Zero padding, length updated.
            #expect(Array(w.bytes.suffix(12)) == [0x00, 0x09, 0x00, 0x05, 0, 0, 5, 0, 0x78, 0, 0, 0])
            #expect(w.count == 32)
            #expect(b[32] == 0xFF)
            let m = try Message.decode(Array(w.bytes))
            #expect(m.errorCode?.code == 500)
            #expect(m.errorCode?.reason == "x")
            w.type = .bindingSuccess
            #expect(try Message.decode(Array(w.bytes)).type == .bindingSuccess)
        }
    }
}
