import Testing

/// The suites that load the machine (coturn's uclient floods, headless Chromium with video) run one
/// after the other: on 2 cores, Chromium's media next to a uclient flood starved the browser enough
/// that its data-channel test timed out once. `.serialized` applies to the nested suites as well.
@Suite("Heavy interop suites, one at a time", .serialized)
struct HeavyInteropTests {}
