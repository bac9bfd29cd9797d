import SubspaceCore

/// What routing and memory accounting need to know about a trainable tensor: its Hugging
/// Face name, role and shape, without its values.
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

extension Parameter: ParameterInfo {}

/// A parameter described by name, role and shape only (no storage).
public struct ParameterSpec: ParameterInfo, Equatable, Sendable, CustomStringConvertible {
    public let name: String
    public let role: ParameterRole
    public let shape: [Int]

    public init(name: String, role: ParameterRole, shape: [Int]) {
        self.name = name; self.role = role; self.shape = shape
    }

    /// The description of an existing parameter.
    public init(_ p: some ParameterInfo) { self.init(name: p.name, role: p.role, shape: p.shape) }

    public var description: String { "\(name) \(role.rawValue) \(shape)" }
}
