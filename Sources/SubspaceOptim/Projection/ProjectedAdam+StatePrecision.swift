import SubspaceCore
import SubspaceModels

/// `--state-precision bf16` for the rules built on `ProjectedAdam` (GaLore, Fira): their
/// projected moments (and the moments of anything they step unprojected) are stored as
/// bfloat16 (`StatePrecision`); the projector stays float32. 8-bit moments (GaLore-8bit) have
/// no bf16 form and refuse it.
extension ProjectedAdam {
    public mutating func useStatePrecision(_ precision: StatePrecision, rule: String) throws {
        if precision == .bf16, quantization != nil {
            throw ConfigurationError("--state-precision bf16 does not apply to '\(rule)', whose moments are 8-bit")
        }
        statePrecision = precision
    }
}

extension GaLore: StatePrecisionAdjustable {
    public var statePrecision: StatePrecision { settings.statePrecision }
    public func useStatePrecision(_ precision: StatePrecision) throws { try settings.useStatePrecision(precision, rule: name) }
    public func exportStateKeepingBF16(for p: Parameter) -> (tensors: [String: Tensor], bf16: [String: BFloat16Tensor]) {
        guard let s = states[p.name], s.step > 0 else { return ([:], [:]) }
        let half = s.moments.bf16Moments
        return (settings.encode(s, moments: half.isEmpty), half)
    }
}

extension Fira: StatePrecisionAdjustable {
    public var statePrecision: StatePrecision { settings.statePrecision }
    public func useStatePrecision(_ precision: StatePrecision) throws { try settings.useStatePrecision(precision, rule: name) }
    public func exportStateKeepingBF16(for p: Parameter) -> (tensors: [String: Tensor], bf16: [String: BFloat16Tensor]) {
        guard let s = states[p.name], s.base.step > 0 else { return ([:], [:]) }
        let half = s.base.moments.bf16Moments
        return (encode(s, moments: half.isEmpty), half)
    }
}
