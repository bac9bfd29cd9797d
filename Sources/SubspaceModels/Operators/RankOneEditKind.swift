import SubspaceCore

extension RankOneEditLinear {
    /// One slot's Perfusion edit as an operator kind, so that a model is built with the edit
    /// in place (`LinearOperators.replacing([path], with: kind)`) and the planner prices it.
    ///
    /// Holds the edit's vectors by value: i* and C⁻¹ i* `[in]`, o*'s starting value `[out]`,
    /// and the gate's beta and tau. W is drawn like a dense slot's and is meant to be
    /// overwritten by the source model's weight (`loadDense(from:)`; it is `DenseBased`).
    /// Parameters, in checkpoint order: `<path>.weight` (frozen), `<path>.edit.key`
    /// (frozen), `<path>.edit.metric_key` (frozen), `<path>.edit.output` (trainable).
    public struct Kind: LinearOperatorKind {
        public let key: [Float]
        public let metricKey: [Float]
        public let output: [Float]
        public let beta: Float
        public let tau: Float

        public init(key: [Float], metricKey: [Float], output: [Float], beta: Float, tau: Float) {
            self.key = key; self.metricKey = metricKey; self.output = output; self.beta = beta; self.tau = tau
        }

        public var name: String { "rank-one-edit" }

        public func parameterSpecs(for slot: LinearSlotSpec) -> [ParameterSpec] {
            let p = slot.path
            return [
                ParameterSpec(name: p + ".weight", role: slot.role, shape: [slot.outFeatures, slot.inFeatures], trainable: false),
                ParameterSpec(name: p + ".edit.key", role: slot.role, shape: [slot.inFeatures], trainable: false),
                ParameterSpec(name: p + ".edit.metric_key", role: slot.role, shape: [slot.inFeatures], trainable: false),
                ParameterSpec(name: p + ".edit.output", role: slot.role, shape: [slot.outFeatures]),
            ]
        }

        /// A training pass keeps s(e), one float per row.
        public func activationBytes(for slot: LinearSlotSpec, rows: Int, mode: ForwardMode) -> Int {
            mode == .training ? rows * MemoryLayout<Float>.size : 0
        }

        /// - Throws: `ConfigurationError` when the vectors do not fit the slot, or as
        ///   `RankOneEditLinear.init` does.
        public func make(for slot: LinearSlotSpec, initializer: ParameterInitializer) throws -> any LinearOperator {
            guard key.count == slot.inFeatures, metricKey.count == slot.inFeatures, output.count == slot.outFeatures else {
                throw ConfigurationError(
                    "the edit's key (\(key.count)), metric key (\(metricKey.count)) and output (\(output.count)) do not fit \(slot)")
            }
            let specs = parameterSpecs(for: slot)
            func vector(_ spec: ParameterSpec, _ values: [Float]) -> Parameter { Parameter(spec, value: Tensor(shape: spec.shape, values: values)) }
            return try RankOneEditLinear(
                weight: initializer.normal(specs[0]), key: vector(specs[1], key), metricKey: vector(specs[2], metricKey),
                output: vector(specs[3], output), beta: beta, tau: tau)
        }
    }
}
