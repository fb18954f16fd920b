import Testing
@testable import STUN

@Suite("ChannelData and stream framing")
struct ChannelDataTests {
    func parse(_ bytes: [UInt8]) throws(STUNDecodeError) -> (UInt16, [UInt8]) {
        let r: Result<(UInt16, [UInt8]), STUNDecodeError> = bytes.withUnsafeBytes { b in
            Result { () throws(STUNDecodeError) in
                let (c, p) = try ChannelData.parse(b)
                return (c, Array(p))
            }
        }
        return try r.get()
    }

    func kind(_ bytes: [UInt8]) -> STUNDecodeError.Kind? {
        do { _ = try parse(bytes); return nil } catch { return error.kind }
    }

    @Test func parses() throws {
        #expect(try parse([0x40, 0x00, 0x00, 0x00]) == (0x4000, []))
        #expect(try parse([0x4F, 0xFF, 0x00, 0x02, 9, 8]) == (0x4FFF, [9, 8]))
        // Padding over UDP is optional: 0...3 bytes after the payload, content ignored.
        #expect(try parse([0x40, 0x01, 0x00, 0x02, 9, 8, 0xEE]) == (0x4001, [9, 8]))
        #expect(try parse([0x40, 0x01, 0x00, 0x02, 9, 8, 0, 0]) == (0x4001, [9, 8]))
        #expect(try parse([0x40, 0x01, 0x00, 0x04, 1, 2, 3, 4]) == (0x4001, [1, 2, 3, 4]))
    }

    @Test func rejects() {
        #expect(kind([]) == .channelDataTruncatedHeader)
        #expect(kind([0x40, 0x00, 0x00]) == .channelDataTruncatedHeader)
        #expect(kind([0x3F, 0xFF, 0x00, 0x00]) == .badChannelNumber(0x3FFF))
        #expect(kind([0x50, 0x00, 0x00, 0x00]) == .badChannelNumber(0x5000))  // reserved
        #expect(kind([0x7F, 0xFF, 0x00, 0x00]) == .badChannelNumber(0x7FFF))  // reserved
        #expect(kind([0x00, 0x01, 0x00, 0x00]) == .badChannelNumber(0x0001))
        #expect(kind([0x40, 0x00, 0x00, 0x05, 1, 2, 3, 4]) == .channelDataTruncated)
        #expect(kind([0x40, 0x00, 0x00, 0x02, 1, 2, 0, 0, 0]) == .channelDataTrailingBytes)
        #expect(kind([0x40, 0x00, 0x00, 0x00, 0]) == .channelDataTrailingBytes)
        #expect(ChannelData.isValidChannelNumber(0x4000) && ChannelData.isValidChannelNumber(0x4FFF))
        #expect(!ChannelData.isValidChannelNumber(0x3FFF) && !ChannelData.isValidChannelNumber(0x5000))
    }

    @Test func writes() throws {
        var buf = [UInt8](repeating: 0xAA, count: 16)
        let payload: [UInt8] = [1, 2, 3, 4, 5]
        let n = try buf.withUnsafeMutableBytes { try ChannelData.write(channel: 0x4001, payload: payload, into: $0, padded: false) }
        #expect(n == 9)
        #expect(Array(buf.prefix(9)) == [0x40, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5])
        #expect(buf[9] == 0xAA)
        let p = try buf.withUnsafeMutableBytes { try ChannelData.write(channel: 0x4FFF, payload: payload, into: $0, padded: true) }
        #expect(p == 12)
        #expect(Array(buf.prefix(13)) == [0x4F, 0xFF, 0x00, 0x05, 1, 2, 3, 4, 5, 0, 0, 0, 0xAA])
        #expect(try parse(Array(buf.prefix(12))) == (0x4FFF, payload))

        // Too small: exact sizes 0..<needed throw and write nothing.
        for size in 0 ..< 12 {
            var small = [UInt8](repeating: 0xAA, count: 16)
            let r = small.withUnsafeMutableBytes { b -> STUNEncodeError? in
                do { _ = try ChannelData.write(channel: 0x4000, payload: payload, into: UnsafeMutableRawBufferPointer(rebasing: b[0 ..< size]), padded: true); return nil }
                catch let e as STUNEncodeError { return e } catch { return nil }
            }
            #expect(r == .bufferTooSmall)
            #expect(small == [UInt8](repeating: 0xAA, count: 16))
        }
        var b = [UInt8](repeating: 0, count: 16)
        b.withUnsafeMutableBytes { m in
            #expect(throws: STUNEncodeError.invalidChannelData) { try ChannelData.write(channel: 0x5000, payload: [], into: m, padded: false) }
            #expect(throws: STUNEncodeError.invalidChannelData) { try ChannelData.writeHeader(channel: 0x4000, payloadLength: 0x10000, into: m, padded: false) }
        }
    }

    func frame(_ bytes: [UInt8]) -> FrameLength { bytes.withUnsafeBytes { StreamFrame.frameLength($0) } }

    @Test func streamFraming() {
        #expect(frame([]) == .needMore)
        #expect(frame([0x00, 0x01, 0x00]) == .needMore)
        #expect(frame([0x40, 0x00]) == .needMore)
        #expect(frame([0x00, 0x01, 0x00, 0x08]) == .stun(28))
        #expect(frame([0x00, 0x01, 0x00, 0x08, 0x21, 0x12, 0xA4, 0x42]) == .stun(28))
        #expect(frame([0x00, 0x01, 0x00, 0x08, 0x21, 0x12, 0xA4, 0x43]) == .invalid)  // bad cookie
        #expect(frame([0x00, 0x01, 0x00, 0x07]) == .invalid)  // length not a multiple of 4
        #expect(frame([0x00, 0x01, 0xFF, 0xFC]) == .stun(20 + 0xFFFC))
        #expect(frame([0x40, 0x00, 0x00, 0x00]) == .channelData(4))
        #expect(frame([0x40, 0x00, 0x00, 0x05]) == .channelData(12))
        #expect(frame([0x4F, 0xFF, 0xFF, 0xFF]) == .channelData(4 + 0x10000))
        #expect(frame([0x50, 0x00, 0x00, 0x04]) == .invalid)  // reserved channel
        #expect(frame([0x80, 0x00, 0x00, 0x00]) == .invalid)
        #expect(frame([0xC0, 0x00, 0x00, 0x00]) == .invalid)
        // The framer agrees with the encoders.
        let stun = Message(type: .bindingRequest, attributes: [.software("x")]).encode(fingerprint: true)
        #expect(frame(stun) == .stun(stun.count))
        #expect(frame(Array(stun.prefix(4))) == .stun(stun.count))
    }

    @Test func demultiplexing() {
        let stun = Message(type: .bindingRequest).encode()
        #expect(stun.withUnsafeBytes { MessageReader.looksLikeSTUN($0) })
        #expect(![0x40, 0, 0, 0].withUnsafeBytes { MessageReader.looksLikeSTUN($0) })
        #expect(!Array(stun.prefix(19)).withUnsafeBytes { MessageReader.looksLikeSTUN($0) })
        var bad = stun
        bad[4] = 0
        #expect(!bad.withUnsafeBytes { MessageReader.looksLikeSTUN($0) })
        bad = stun
        bad[0] |= 0x80
        #expect(!bad.withUnsafeBytes { MessageReader.looksLikeSTUN($0) })
    }
}
