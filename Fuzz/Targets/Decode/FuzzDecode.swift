import FuzzDriver
import TernFuzzing

/// libFuzzer target: FuzzTargets.decode (Sources/TernFuzzing/FuzzTargets.swift).
@_cdecl("fuzz_decode_main")
public func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runFuzzer(argc, argv) { FuzzTargets.decode($0) }
}
