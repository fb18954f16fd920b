import FuzzDriver
import TernFuzzing

/// libFuzzer target: FuzzTargets.proxyHeader (Sources/TernFuzzing/FuzzTargets.swift).
@_cdecl("fuzz_proxy_main")
public func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runFuzzer(argc, argv) { FuzzTargets.proxyHeader($0) }
}
