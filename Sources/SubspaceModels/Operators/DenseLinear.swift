import SubspaceCore

/// The default operator: one dense weight `W[out, in]` (PyTorch's and Hugging Face's layout),
/// `y = x W^T`, named `<slot path>.weight`. It is `Linear`'s three GEMMs, called with the
/// same arguments as before slots became operators, so results are bit for bit those of
/// the dense model (and of the parity fixtures).
///
/// It keeps no activations of its own: dW needs only the input, which the model provides.
public final class DenseLinear: LinearOperator {
    public let weight: Parameter
    public let inFeatures: Int
    public let outFeatures: Int
    public var parameters: [Parameter] { [weight] }
    /// bf16 runs the three products with bf16 operands and fp32 accumulation (`Linear`).
    public var precision: MatmulPrecision = .fp32

    /// Wraps an existing `[out, in]` weight.
    public init(weight: Parameter) {
        precondition(weight.shape.count == 2, "a dense weight is a matrix")
        self.weight = weight
        outFeatures = weight.shape[0]
        inFeatures = weight.shape[1]
    }

    public func forward(
        _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, rows: Int, accumulate: Bool, mode: ForwardMode
    ) {
        Linear.forward(x: x, weight: weight.value.data, y: y, rows: rows, inFeatures: inFeatures, outFeatures: outFeatures, accumulate: accumulate, precision: precision)
    }

    public func backwardInput(_ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>, rows: Int, accumulate: Bool) {
        Linear.backwardInput(dy: dy, weight: weight.value.data, dx: dx, rows: rows, inFeatures: inFeatures, outFeatures: outFeatures, accumulateInput: accumulate, precision: precision)
    }

    public func accumulateGradients(dy: UnsafePointer<Float>, x: UnsafePointer<Float>, rows: Int) {
        guard weight.requiresGrad else { return }
        Linear.backwardWeight(dy: dy, x: x, dWeight: weight.gradient().data, rows: rows, inFeatures: inFeatures, outFeatures: outFeatures, precision: precision)
    }

    /// Dense weights from N(0, initStd^2), as transformers initialises `nn.Linear` in LLaMA.
    public struct Kind: LinearOperatorKind {
        /// False for a frozen dense slot (the slots without an adapter in a PEFT-style fine-tune).
        public let trainable: Bool
        public init(trainable: Bool = true) { self.trainable = trainable }
        public var name: String { "dense" }

        public func parameterSpecs(for slot: LinearSlotSpec) -> [ParameterSpec] {
            [ParameterSpec(name: slot.path + ".weight", role: slot.role, shape: [slot.outFeatures, slot.inFeatures], trainable: trainable)]
        }

        public func make(for slot: LinearSlotSpec, initializer: ParameterInitializer) throws -> any LinearOperator {
            DenseLinear(weight: initializer.normal(parameterSpecs(for: slot)[0]))
        }
    }
}
