import SubspaceCore

/// What routing and memory accounting need to know about a model tensor: its Hugging Face
/// name, role and shape, and whether it trains, without its values.
///
/// `Parameter` conforms (it has values and a gradient besides), and so does `ParameterSpec`,
/// a bare description. Selectors and optimizers' shape-only queries take any
/// `ParameterInfo`, so the memory planner can route and size a 7B model's parameters without
/// allocating them.
public protocol ParameterInfo {
    /// Stable Hugging Face name, e.g. `model.layers.3.self_attn.q_proj.weight`.
    var name: String { get }
    var role: ParameterRole { get }
    var shape: [Int] { get }
    /// False for a frozen tensor (an adapter's base weight, or everything outside the
    /// adapters in a PEFT-style fine-tune): no gradient, no optimizer state.
    var trainable: Bool { get }
}

extension ParameterInfo {
    /// Number of elements.
    public var count: Int { shape.reduce(1, *) }
    /// Index of the decoder layer (`model.layers.N.`), or nil for global parameters.
    public var layerIndex: Int? {
        let parts = name.split(separator: ".")
        guard parts.count > 2, parts[0] == "model", parts[1] == "layers" else { return nil }
        return Int(parts[2])
    }
}

extension Parameter: ParameterInfo {
    public var trainable: Bool { requiresGrad }
}

/// A parameter described by name, role and shape only (no storage).
public struct ParameterSpec: ParameterInfo, Equatable, Sendable, CustomStringConvertible {
    public let name: String
    public let role: ParameterRole
    public let shape: [Int]
    public let trainable: Bool

    public init(name: String, role: ParameterRole, shape: [Int], trainable: Bool = true) {
        self.name = name; self.role = role; self.shape = shape; self.trainable = trainable
    }

    /// The description of an existing parameter.
    public init(_ p: some ParameterInfo) { self.init(name: p.name, role: p.role, shape: p.shape, trainable: p.trainable) }

    /// The same tensor, trainable or frozen.
    public func with(trainable: Bool) -> ParameterSpec { ParameterSpec(name: name, role: role, shape: shape, trainable: trainable) }

    public var description: String { "\(name) \(role.rawValue) \(shape)\(trainable ? "" : " frozen")" }
}
