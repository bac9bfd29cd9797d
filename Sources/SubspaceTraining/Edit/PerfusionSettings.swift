import SubspaceCore
import SubspaceModels

/// The defaults of a Perfusion edit (Tewel, Gal, Chechik, Atzmon, "Key-Locked Rank One
/// Editing for Text-to-Image Personalization", SIGGRAPH 2023; `lucidrains/perfusion-pytorch`)
/// applied to a decoder-only language model to teach it a new word. Each default and where
/// it comes from:
public struct PerfusionSettings: Codable, Equatable, Sendable {
    /// The module path of the edited slot; nil = `defaultSlot(layers:)`, the down projection
    /// of the middle layer. Perfusion edits the K/V projections of cross-attention, which a
    /// decoder-only model does not have; its rank-one "key → value" edit is ROME's (Meng et
    /// al., "Locating and Editing Factual Associations in GPT", 2022), whose causal tracing
    /// places a subject's associations in the MLP output projection of the middle layers at
    /// the subject's last token (the MLP as a key-value memory, Geva et al. 2021). So the
    /// key i* is the down projection's input at the new word's last token.
    public var slot: String?
    /// The gate's threshold and temperature: the paper's training values (eq. 4: 0.75, 0.1;
    /// inference 0.70 / 0.15). A key-like input (s = 1) opens the gate to
    /// sigmoid(2.5) = 0.92; an unrelated one (s ≈ 0) to sigmoid(-7.5) = 5.5e-4.
    public var beta: Float = 0.75
    public var tau: Float = 0.1
    /// AdamW steps on o* over all the example sentences at once (one forward and backward of
    /// the examples each, about 0.1 s on `tiny`). The reference trains for hundreds of steps on
    /// a handful of images. Measured on `tiny` (`results/perfusion/`): at lr 0.5 the fitting
    /// loss flattens by step 100 (6.088 -> 5.807); at the default 0.1 it is still falling
    /// slowly (-> 5.938), which keeps o* near its start and unrelated text unchanged.
    public var steps = 100
    /// AdamW's learning rate for o* (constant, no weight decay, betas 0.9/0.999). ROME fits
    /// its value vector with Adam at lr 0.5 for 20 steps. Measured on `tiny` after 300
    /// steps (`results/perfusion/`): 1e-2 barely moves the examples' loss (6.086 -> 6.067),
    /// 0.1 lowers it to 5.938 with the validation loss +0.0007, 0.5 to 5.807 at +0.004. 0.1
    /// is the default: of those three, the largest that keeps unrelated text within 0.001 nat.
    public var learningRate: Float = 0.1
    /// Ridge added to the input second moment as a fraction of its mean eigenvalue:
    /// C = E[e eᵀ] + ridge · (tr E[e eᵀ] / n) · I, so that C is positive definite (the
    /// Cholesky solve needs it) however few corpus rows there are, while barely changing the
    /// well-estimated directions. 1e-3 keeps C's condition number under ~1e3 · max/mean
    /// eigenvalue, well inside float32's range.
    public var ridge: Float = 1e-3
    /// Corpus batches (of the run's shape, 8 x 256 by default) over which C is estimated:
    /// 16 x 2,048 = 32,768 rows, about 48 per dimension for `tiny`'s 688-wide down
    /// projection input.
    public var covarianceBatches = 16

    public init() {}

    /// `model.layers.<layers / 2>.mlp.down_proj` (see `slot`).
    public static func defaultSlot(layers: Int) -> String { "model.layers.\(layers / 2).mlp.down_proj" }

    /// The slot path these settings edit on a model with `config`.
    public func slotPath(for config: LlamaConfig) -> String { slot ?? Self.defaultSlot(layers: config.layers) }

    /// - Throws: `ConfigurationError` naming the first bad value.
    public func validate() throws {
        guard steps >= 0 else { throw ConfigurationError("--steps must be 0 or more, got \(steps)") }
        guard learningRate > 0, learningRate.isFinite else { throw ConfigurationError("--lr must be positive, got \(learningRate)") }
        guard tau > 0, tau.isFinite else { throw ConfigurationError("--tau must be positive, got \(tau)") }
        guard beta.isFinite else { throw ConfigurationError("--beta must be finite, got \(beta)") }
        guard ridge > 0, ridge.isFinite else { throw ConfigurationError("--ridge must be positive, got \(ridge)") }
        guard covarianceBatches > 0 else { throw ConfigurationError("--covariance-batches must be at least 1, got \(covarianceBatches)") }
    }
}
