import Testing
@testable import TernCore

/// `io.offload` and `io.offloadInterfaces`: the defaults, what parses, and the errors.
@Suite("io.offload config")
struct OffloadConfigTests {
    @Test func offByDefault() throws {
        let c = try parse("{}")
        #expect(c.io.offload == .off)
        #expect(c.io.offloadInterfaces == nil)
    }

    @Test func tcWithInterfaces() throws {
        let c = try parse(#"{"io": {"offload": "tc", "offloadInterfaces": ["lo", "eth0"]}}"#)
        #expect(c.io.offload == .tc)
        #expect(c.io.offloadInterfaces == ["lo", "eth0"])
        #expect(try parse(#"{"io": {"offload": "off", "offloadInterfaces": null}}"#).io.offloadInterfaces == nil)
    }

    @Test func errorsSayWhatIsExpected() {
        let cases: [(String, String)] = [
            (#"{"io": {"offload": "xdp"}}"#, #""off" or "tc""#),
            (#"{"io": {"offload": true}}"#, #""off" or "tc""#),
            (#"{"io": {"offloadInterfaces": []}}"#, "a non-empty list of interface names"),
            (#"{"io": {"offloadInterfaces": "eth0"}}"#, "a list of interface names"),
            (#"{"io": {"offloadInterfaces": ["a-name-of-16-chr"]}}"#, "an interface name"),
            (#"{"io": {"offloadInterfaces": ["../x"]}}"#, "an interface name"),
            (#"{"io": {"offloadInterfaces": [""]}}"#, "an interface name"),
            (#"{"io": {"offlaod": "tc"}}"#, "offlaod"),
        ]
        for (json, expected) in cases {
            let error = parseError(json)
            #expect(error != nil, "\(json)")
            #expect("\(error.map { "\($0)" } ?? "")".contains(expected), "\(json): \(error.map { "\($0)" } ?? "no error")")
        }
    }
}
