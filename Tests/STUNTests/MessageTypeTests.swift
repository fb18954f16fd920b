import Testing
@testable import STUN

@Suite("Message type, transaction ID, attribute type")
struct MessageTypeTests {
    @Test func roundTripsAllMethodsAndClasses() {
        var seen = Set<UInt16>()
        for m in UInt16(0) ..< 4096 {
            for c in MessageClass.allCases {
                let t = MessageType(method: Method(rawValue: m), class: c)
                let raw = t.rawValue
                #expect(raw & 0xC000 == 0)
                let back = MessageType(rawValue: raw)
                if back != t { Issue.record("method \(m) class \(c) -> \(raw) -> \(back)") }
                seen.insert(raw)
            }
        }
        #expect(seen.count == 4096 * 4)  // a bijection onto the 14-bit space
    }

    @Test func knownRawValues() {
        #expect(MessageType(method: .binding, class: .request).rawValue == 0x0001)
        #expect(MessageType(method: .binding, class: .indication).rawValue == 0x0011)
        #expect(MessageType(method: .binding, class: .successResponse).rawValue == 0x0101)
        #expect(MessageType(method: .binding, class: .errorResponse).rawValue == 0x0111)
        #expect(MessageType(method: .allocate, class: .request).rawValue == 0x0003)
        #expect(MessageType(method: .allocate, class: .successResponse).rawValue == 0x0103)
        #expect(MessageType(method: .allocate, class: .errorResponse).rawValue == 0x0113)
        #expect(MessageType(method: .send, class: .indication).rawValue == 0x0016)
        #expect(MessageType(method: .data, class: .indication).rawValue == 0x0017)
        #expect(MessageType(method: .channelBind, class: .request).rawValue == 0x0009)
        #expect(MessageType(method: .connectionAttempt, class: .indication).rawValue == 0x001C)
        #expect(MessageType(method: Method(rawValue: 0xFFF), class: .errorResponse).rawValue == 0x3FFF)
        #expect(MessageType(rawValue: 0x0113) == MessageType(method: .allocate, class: .errorResponse))
        #expect(MessageType(rawValue: 0x0017).description == "Data indication")
        #expect(MessageType.bindingRequest.successResponse == .bindingSuccess)
        #expect(MessageType.bindingRequest.errorResponse == .bindingError)
        #expect(Method.createPermission.description == "CreatePermission")
        #expect(Method(rawValue: 0x123).description == "Method(0x123)")
    }

    @Test func transactionID() throws {
        let bytes: [UInt8] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
        let id = try #require(TransactionID(bytes: bytes))
        #expect(id.bytes == bytes)
        #expect(id.high == 0x0102_0304)
        #expect(id.low == 0x0506_0708_090A_0B0C)
        #expect(id.description == "0102030405060708090a0b0c")
        #expect(id.withBytes { Array($0) } == bytes)
        #expect(TransactionID(bytes: [UInt8](repeating: 0, count: 11)) == nil)
        #expect(TransactionID(bytes: [UInt8](repeating: 0, count: 13)) == nil)
        #expect(MemoryLayout<TransactionID>.size <= 16)
        // Random IDs differ (2^-96 chance of a false failure).
        var ids = Set<TransactionID>()
        for _ in 0 ..< 100 { ids.insert(.random()) }
        #expect(ids.count == 100)
    }

    @Test func attributeTypes() {
        #expect(AttributeType.xorMappedAddress.isComprehensionRequired)
        #expect(!AttributeType.software.isComprehensionRequired)
        #expect(AttributeType(rawValue: 0x7FFF).isComprehensionRequired)
        #expect(!AttributeType(rawValue: 0x8000).isComprehensionRequired)
        #expect(AttributeType.xorMappedAddress.description == "XOR-MAPPED-ADDRESS")
        #expect(AttributeType.messageIntegritySHA256.description == "MESSAGE-INTEGRITY-SHA256")
        #expect(AttributeType(rawValue: 0x1234).description == "0x1234")
        #expect(AttributeType(rawValue: 0x00AB).hex == "0x00AB")
        #expect(AttributeType.connectionID.rawValue == 0x002A)
        #expect(AttributeType.icmp.rawValue == 0x8004)
        #expect(AttributeType.fingerprint.isKnown)
        #expect(!AttributeType(rawValue: 0x0002).isKnown)
    }
}
