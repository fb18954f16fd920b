/// TURN ChannelData messages, RFC 8656 section 12.4:
///
///     0                   1                   2                   3
///     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
///    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///    |         Channel Number        |            Length             |
///    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///    /                       Application Data                        /
///    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///
/// Length counts the application data only. Over TCP/TLS the message is padded to a multiple of
/// 4 bytes (the padding is not counted in Length); over UDP padding is not required but MAY be
/// included (RFC 8656 section 12.5).
public enum ChannelData {
    /// RFC 8656 section 12: channel numbers 0x4000 through 0x4FFF; 0x5000-0x7FFF are reserved.
    public static let validChannels: ClosedRange<UInt16> = 0x4000 ... 0x4FFF

    /// RFC 5766 section 11 allowed 0x4000 through 0x7FFF; RFC 5766 clients (coturn's own
    /// turnutils, older pjnath) still pick channels above 0x4FFF. A server may accept them.
    public static let rfc5766Channels: ClosedRange<UInt16> = 0x4000 ... 0x7FFF

    public static func isValidChannelNumber(_ n: UInt16) -> Bool { validChannels.contains(n) }

    /// Parses one ChannelData message occupying all of `buffer` (a UDP datagram, or a frame cut
    /// out of a stream by `StreamFrame`).
    ///
    /// Accepted: `4 + Length <= buffer.count <= 4 + roundUp4(Length)`. A buffer shorter than the
    /// claimed length is discarded, as RFC 8656 section 12.6 requires for UDP. Up to 3 trailing
    /// bytes are padding (optional over UDP, required over streams, section 12.5) and ignored
    /// whatever their content; anything longer is not a ChannelData message and is rejected, since
    /// the RFC defines no other trailing content.
    public static func parse(_ buffer: UnsafeRawBufferPointer, channels: ClosedRange<UInt16> = validChannels) throws(STUNDecodeError)
        -> (channel: UInt16, payload: UnsafeRawBufferPointer) {
        guard buffer.count >= 4 else { throw STUNDecodeError(.channelDataTruncatedHeader, at: buffer.count) }
        let channel = buffer.be16(at: 0)
        guard channels.contains(channel) else { throw STUNDecodeError(.badChannelNumber(channel), at: 0) }
        let length = Int(buffer.be16(at: 2))
        guard buffer.count - 4 >= length else { throw STUNDecodeError(.channelDataTruncated, at: buffer.count) }
        guard buffer.count <= 4 + roundUp4(length) else {
            throw STUNDecodeError(.channelDataTrailingBytes, at: 4 + roundUp4(length))
        }
        return (channel, buffer.slice(4, length))
    }

    /// The encoded size of a ChannelData message with `payloadLength` bytes of data.
    public static func encodedLength(payloadLength: Int, padded: Bool) -> Int {
        4 + (padded ? roundUp4(payloadLength) : payloadLength)
    }

    /// Writes a ChannelData message into `buffer` and returns its size. `padded` adds the zero
    /// padding to a multiple of 4 (required over TCP/TLS, optional over UDP; RFC 8656 section 12.5).
    public static func write(channel: UInt16, payload: UnsafeRawBufferPointer,
                             into buffer: UnsafeMutableRawBufferPointer, padded: Bool,
                             channels: ClosedRange<UInt16> = validChannels) throws(STUNEncodeError) -> Int {
        let n = try writeHeader(channel: channel, payloadLength: payload.count, into: buffer, padded: padded, channels: channels)
        if payload.count > 0 { buffer.slice(4, payload.count).copyMemory(from: payload) }
        return n
    }

    public static func write(channel: UInt16, payload: [UInt8],
                             into buffer: UnsafeMutableRawBufferPointer, padded: Bool) throws(STUNEncodeError) -> Int {
        let r: Result<Int, STUNEncodeError> = payload.withUnsafeBytes { p in
            Result { () throws(STUNEncodeError) in try write(channel: channel, payload: p, into: buffer, padded: padded) }
        }
        return try r.get()
    }

    /// Writes only the 4-byte header (and the zero padding, if `padded`) around a payload the
    /// caller has already placed at `buffer[4 ..< 4 + payloadLength]`, e.g. received straight into
    /// a relay buffer. Returns the message size.
    public static func writeHeader(channel: UInt16, payloadLength: Int,
                                   into buffer: UnsafeMutableRawBufferPointer, padded: Bool,
                                   channels: ClosedRange<UInt16> = validChannels) throws(STUNEncodeError) -> Int {
        guard channels.contains(channel), payloadLength >= 0, payloadLength <= 0xFFFF else { throw .invalidChannelData }
        let total = encodedLength(payloadLength: payloadLength, padded: padded)
        guard buffer.count >= total else { throw .bufferTooSmall }
        buffer.storeBE16(channel, at: 0)
        buffer.storeBE16(UInt16(truncatingIfNeeded: payloadLength), at: 2)
        for i in (4 + payloadLength) ..< total { buffer[i] = 0 }
        return total
    }
}
