/// What the first bytes of a TCP/TLS stream say about the next frame.
public enum FrameLength: Hashable, Sendable {
    /// Fewer than 4 bytes: read more.
    case needMore
    /// A STUN message of this total size (20 + the header's length field), RFC 8489 section 6.2.2.
    case stun(Int)
    /// A ChannelData message of this total size (4 + length, rounded up to 4), RFC 8656 section 12.5.
    case channelData(Int)
    /// Neither: the stream is out of sync and should be closed.
    case invalid
}

/// Framing of STUN and ChannelData messages on a byte stream (TCP or TLS), allocation-free.
///
/// RFC 8489 section 6.2.2: over a stream, STUN messages are delimited by their own length field.
/// RFC 8656 section 12.5: over a stream, ChannelData messages are padded to a multiple of 4 bytes.
/// The first two bits tell them apart (RFC 8656 section 12): 00 is STUN, 01 is ChannelData,
/// 10 and 11 are invalid.
public enum StreamFrame {
    /// `StreamFrame.FrameLength` is the top-level `FrameLength`.
    public typealias FrameLength = STUN.FrameLength

    /// The size of the frame starting at `prefix[0]`, from its first 4 bytes (8 for STUN when
    /// available: a wrong magic cookie is reported as `.invalid` as soon as it is visible).
    ///
    /// - STUN: the length must be a multiple of 4.
    /// - ChannelData: the channel number must be in `channels` (RFC 8656: 0x4000-0x4FFF).
    public static func frameLength(_ prefix: UnsafeRawBufferPointer,
                                   channels: ClosedRange<UInt16> = ChannelData.validChannels) -> FrameLength {
        guard prefix.count >= 4 else { return .needMore }
        let first16 = prefix.be16(at: 0)
        let length = Int(prefix.be16(at: 2))
        switch first16 >> 14 {
        case 0b00:
            guard length % 4 == 0 else { return .invalid }
            if prefix.count >= 8, prefix.be32(at: 4) != stunMagicCookie { return .invalid }
            return .stun(20 + length)
        case 0b01:
            guard channels.contains(first16) else { return .invalid }
            return .channelData(4 + roundUp4(length))
        default:
            return .invalid
        }
    }
}
