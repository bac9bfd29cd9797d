import SubspaceCore

/// What a trainable tensor is for. Optimizers route on it: by default the memory-efficient
/// methods take `.attention` and `.mlp` matrices, and AdamW takes the rest (GaLore's and
/// Muon's reference routing).
public enum ParameterRole: String, Codable, Sendable, CaseIterable {
    case embedding, attention, mlp, norm, head
}

/// A trainable tensor with its Hugging Face LLaMA name, role and gradient.
///
/// The gradient buffer is created on first use (`gradient()`), accumulated into by the
/// backward pass, and may be released (`releaseGradient()`) by the per-layer update mode as
/// soon as the parameter has been stepped.
public final class Parameter: @unchecked Sendable {
    /// Stable Hugging Face name, e.g. `model.layers.3.self_attn.q_proj.weight`.
    public let name: String
    public let role: ParameterRole
    public let value: Tensor
    /// The accumulated gradient, or nil when none is resident.
    public private(set) var grad: Tensor?
    /// When false the backward pass skips this parameter's gradient (frozen weights).
    public var requiresGrad: Bool = true

    public init(name: String, role: ParameterRole, value: Tensor) {
        self.name = name
        self.role = role
        self.value = value
    }

    /// A parameter as `spec` describes it (name, role, trainable or frozen) holding `value`.
    public convenience init(_ spec: ParameterSpec, value: Tensor) {
        precondition(value.shape == spec.shape, "\(spec.name): value of shape \(value.shape), spec \(spec.shape)")
        self.init(name: spec.name, role: spec.role, value: value)
        requiresGrad = spec.trainable
    }

    public var shape: [Int] { value.shape }
    public var count: Int { value.count }
    // `layerIndex` comes from `ParameterInfo` (ParameterSpec.swift).

    /// The gradient buffer, created zeroed if absent.
    @discardableResult
    public func gradient() -> Tensor {
        if let g = grad { return g }
        let g = Tensor(zeros: value.shape)
        grad = g
        return g
    }

    /// Drops the gradient buffer (its memory is returned at once).
    public func releaseGradient() { grad = nil }

    /// Zeroes the gradient if it is resident.
    public func zeroGradient() { grad?.zero() }
}
