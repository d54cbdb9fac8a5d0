// libFuzzer entry point for the `engineioPayload` target (scripts/fuzz.sh builds and runs it).
import FuzzTargets

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    Fuzz.engineioPayload(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}
